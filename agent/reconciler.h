// The reconcile loop: observe -> plan -> execute, level-triggered.
//
// A new desired state only wakes the loop (Wake()); a periodic pass
// guarantees convergence. What the last pass's status means for the next:
//   OK                 next pass after the interval (or a wake);
//   FailedPrecondition / InvalidArgument / PermissionDenied
//                      hold: nothing is executed again for this generation
//                      until the desired state changes or `hold_retry` passes;
//                      reported with error_blocks = true;
//   anything else      retry with exponential backoff (capped).
//
// Thread-safety: Pass()/Run() on one thread; Wake(), Stop() and
// LastObserved() from any thread.
#ifndef TANDEM_AGENT_RECONCILER_H_
#define TANDEM_AGENT_RECONCILER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "agent/clock.h"
#include "agent/desired_store.h"
#include "agent/executor.h"
#include "agent/host.h"
#include "agent/planner.h"
#include "engines/engine.h"

namespace tandem {

// Receives the observed state after each pass and during long steps.
class ObservedSink {
 public:
  virtual ~ObservedSink() = default;
  virtual void Publish(const ObservedState& observed, std::vector<StepEvent> events) = 0;
};

struct ReconcilerOptions {
  std::chrono::milliseconds interval{std::chrono::seconds(5)};
  std::chrono::milliseconds max_backoff{std::chrono::seconds(30)};
  std::chrono::milliseconds hold_retry{std::chrono::seconds(60)};
  ExecutorOptions executor;
  // Called by Run() after the first pass that finds the node converged
  // (nothing to do) following start-up or a pass that was not: the process
  // has settled into its idle loop.
  std::function<void()> settled;
};

// Whether an error needs a change of desired/observed state (not a retry).
bool ErrorBlocks(const absl::Status& status);

class Reconciler : private StepListener {
 public:
  // Pointers are not owned and must outlive the Reconciler. `sink` may be null.
  Reconciler(Peer self, Engine* engine, Host* host, Clock* clock, DesiredStateStore* desired,
             ObservedSink* sink, ReconcilerOptions options = {});

  // One pass. Returns the pass's status (OK when converged at the end).
  absl::Status Pass();

  // Passes until Stop(): waits `interval`, backoff or hold between passes,
  // cut short by Wake().
  void Run();
  void Wake();
  void Stop();

  ObservedState LastObserved() const;

 private:
  // StepListener: events and progress of the running plan.
  void StepStarted(StepKind kind) override;
  void StepFinished(StepKind kind, const absl::Status& status,
                    std::chrono::milliseconds duration) override;
  void Progress(uint64_t done_bytes, uint64_t total_bytes) override;

  // Observes engine and host; fills `observed_` from them.
  absl::StatusOr<Observation> Observe();
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Peer self_;
  Engine* const engine_;
  Host* const host_;
  Clock* const clock_;
  DesiredStateStore* const desired_;
  ObservedSink* const sink_;
  const ReconcilerOptions options_;
  Executor executor_;

  mutable absl::Mutex mu_;
  ObservedState observed_ ABSL_GUARDED_BY(mu_);
  std::vector<StepEvent> pending_events_ ABSL_GUARDED_BY(mu_);
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::chrono::steady_clock::time_point last_progress_publish_ ABSL_GUARDED_BY(mu_);

  // Loop-thread state.
  DesiredState running_desired_;
  std::string running_reason_;
  uint64_t held_generation_ = 0;  // generation whose plan hit a blocking error
  bool ran_steps_ = false;        // the last Pass() executed a plan
  std::chrono::steady_clock::time_point held_since_;
};

}  // namespace tandem

#endif  // TANDEM_AGENT_RECONCILER_H_

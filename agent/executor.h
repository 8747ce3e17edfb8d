// The executor: runs a plan's steps in order against the engine and the
// host, and stops at the first failure (the next pass observes and plans
// again). Each step is idempotent: it returns OK when its goal holds.
//
// Status codes: whatever the failing step returned, with context
// ("bootstrap: ..."). FailedPrecondition from the executor itself when a
// safety rule forbids the step (restore over a master, not enough disk).
#ifndef TANDEM_AGENT_EXECUTOR_H_
#define TANDEM_AGENT_EXECUTOR_H_

#include <chrono>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "agent/clock.h"
#include "agent/host.h"
#include "agent/planner.h"
#include "common/types.h"
#include "engines/engine.h"

namespace tandem {

// Told about each step as it starts and ends, and about bootstrap progress.
class StepListener {
 public:
  virtual ~StepListener() = default;
  virtual void StepStarted(StepKind kind) = 0;
  virtual void StepFinished(StepKind kind, const absl::Status& status,
                            std::chrono::milliseconds duration) = 0;
  virtual void Progress(uint64_t done_bytes, uint64_t total_bytes) = 0;
  // Whether a newer desired state has come since the plan was made: the
  // waits (wait-streaming, catch-up) give up at once with Unavailable, so
  // that the next pass acts on it (a slave waiting for a master that is
  // gone is promoted without waiting out the timeout).
  virtual bool TargetChanged() { return false; }
};

struct ExecutorOptions {
  // How long wait-streaming waits for the slave's link to come up.
  std::chrono::milliseconds streaming_timeout{std::chrono::seconds(120)};
  std::chrono::milliseconds poll_interval{std::chrono::milliseconds(100)};
};

class Executor {
 public:
  // `self` is this node as its peers know it. Not owned; must outlive this.
  Executor(Peer self, Engine* engine, Host* host, Clock* clock, ExecutorOptions options = {});

  // Runs plan.steps in order. Returns OK when every step succeeded.
  absl::Status Execute(const Plan& plan, const Observation& observed, const DesiredState& desired,
                       StepListener* listener);

 private:
  absl::Status RunStep(StepKind kind, const Observation& observed, const DesiredState& desired,
                       StepListener* listener);
  absl::Status Bootstrap(const Observation& observed, const DesiredState& desired,
                         StepListener* listener);
  absl::Status WaitStreaming(StepListener* listener);
  // Polls until the engine has replayed `position` (a promoted slave).
  absl::Status CatchUp(const std::string& position, StepListener* listener);

  const Peer self_;
  Engine* const engine_;
  Host* const host_;
  Clock* const clock_;
  const ExecutorOptions options_;
};

// "1.5 GB" style, for messages.
std::string HumanBytes(uint64_t bytes);

}  // namespace tandem

#endif  // TANDEM_AGENT_EXECUTOR_H_

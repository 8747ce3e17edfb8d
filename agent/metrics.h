// The agent's metrics for /metrics (Prometheus text format).
//
// Two kinds of values:
//   - counted as they happen, by MeteredSink, from what the reconcile loop
//     publishes: step durations (histogram per step), step failures per
//     step, reconcile passes by result, the time of the last successful
//     pass;
//   - read at scrape time from a HealthView (health_server.h): desired and
//     observed role, convergence, generations, replication lag, bootstrap
//     progress, engine and controller connection state.
//
// Names (all prefixed tandem_agent_) and units follow the Prometheus
// conventions: *_total counters, *_seconds and *_bytes units, roles and
// steps as labels. A value that is unknown (lag of a node that is not a
// streaming slave, no successful pass yet) is left out rather than faked.
//
// Thread-safety: every method may be called from any thread.
#ifndef TANDEM_AGENT_METRICS_H_
#define TANDEM_AGENT_METRICS_H_

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "agent/reconciler.h"
#include "common/prometheus_text.h"
#include "common/types.h"

namespace tandem {

struct HealthView;

class AgentMetrics {
 public:
  using SteadyNow = std::function<std::chrono::steady_clock::time_point()>;
  // `unix_now` gives the wall-clock time in seconds, `steady_now` the
  // monotonic time (null: the real clocks; tests pass fakes).
  explicit AgentMetrics(std::function<double()> unix_now = nullptr, SteadyNow steady_now = nullptr);

  // Records what the reconcile loop published: each step event, and, when
  // `observed` has no current step (the loop publishes exactly then at the
  // end of a pass), the pass and its result.
  void Record(const ObservedState& observed, const std::vector<StepEvent>& events);

  // The counted values and the values of `view`, then the process_* metrics.
  std::string Render(const HealthView& view) const;

  uint64_t passes(bool ok) const;

  // Time since the loop last published anything (a pass ended, a step
  // started or progressed), or since construction: the agent's watchdog
  // stops pinging systemd when this grows too long while no step runs.
  std::chrono::steady_clock::duration SinceLastPublish() const;

 private:
  struct StepStats {
    prom::Histogram duration{prom::DurationBuckets()};
    uint64_t failures = 0;
  };

  const std::function<double()> unix_now_;
  const SteadyNow steady_now_;
  mutable absl::Mutex mu_;
  std::map<std::string, StepStats> steps_ ABSL_GUARDED_BY(mu_);
  uint64_t passes_ok_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t passes_failed_ ABSL_GUARDED_BY(mu_) = 0;
  double last_success_unix_ ABSL_GUARDED_BY(mu_) = 0;  // 0: none yet
  std::chrono::steady_clock::time_point last_publish_ ABSL_GUARDED_BY(mu_);
};

// An ObservedSink that records into AgentMetrics and passes everything on
// to `next` (the controller link); `next` may be null.
class MeteredSink : public ObservedSink {
 public:
  MeteredSink(AgentMetrics* metrics, ObservedSink* next) : metrics_(metrics), next_(next) {}
  void Publish(const ObservedState& observed, std::vector<StepEvent> events) override;

 private:
  AgentMetrics* const metrics_;
  ObservedSink* const next_;
};

}  // namespace tandem

#endif  // TANDEM_AGENT_METRICS_H_

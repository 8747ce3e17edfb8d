#include "agent/metrics.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/health_server.h"
#include "agent/planner.h"

namespace tandem {
namespace {

using prom::MetricType;

constexpr Role kRoles[] = {Role::kMaster, Role::kSlave, Role::kStandalone};

std::string Str(std::string_view s) { return std::string(s); }

// Every step of the role table, so that each step's series exist (at 0)
// before it first runs.
std::set<std::string> KnownSteps() {
  std::set<std::string> steps;
  for (const RoleTableRow& row : RoleTable()) {
    for (StepKind kind : row.steps) steps.insert(Str(StepName(kind)));
  }
  return steps;
}

void RoleGauge(prom::TextWriter* w, std::string_view name, std::string_view help, Role role) {
  w->Family(name, MetricType::kGauge, help);
  for (Role r : kRoles) w->Sample({{"role", Str(RoleName(r))}}, r == role ? 1 : 0);
}

void Gauge(prom::TextWriter* w, std::string_view name, std::string_view help, double value) {
  w->Family(name, MetricType::kGauge, help);
  w->Sample({}, value);
}

}  // namespace

AgentMetrics::AgentMetrics(std::function<double()> unix_now, SteadyNow steady_now)
    : unix_now_(unix_now ? std::move(unix_now)
                         : [] { return absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()); }),
      steady_now_(steady_now ? std::move(steady_now)
                             : [] { return std::chrono::steady_clock::now(); }) {
  absl::MutexLock lock(&mu_);
  last_publish_ = steady_now_();
  for (const std::string& step : KnownSteps()) steps_[step];
}

void AgentMetrics::Record(const ObservedState& observed, const std::vector<StepEvent>& events) {
  absl::MutexLock lock(&mu_);
  last_publish_ = steady_now_();
  for (const StepEvent& event : events) {
    StepStats& stats = steps_[event.step];
    stats.duration.Observe(event.seconds);
    if (!event.ok) ++stats.failures;
  }
  if (!observed.current_step.empty()) return;  // mid-pass: a step started or progressed
  if (observed.last_error.empty()) {
    ++passes_ok_;
    last_success_unix_ = unix_now_();
  } else {
    ++passes_failed_;
  }
}

std::chrono::steady_clock::duration AgentMetrics::SinceLastPublish() const {
  absl::MutexLock lock(&mu_);
  return steady_now_() - last_publish_;
}

uint64_t AgentMetrics::passes(bool ok) const {
  absl::MutexLock lock(&mu_);
  return ok ? passes_ok_ : passes_failed_;
}

std::string AgentMetrics::Render(const HealthView& view) const {
  const ObservedState& o = view.observed;
  prom::TextWriter w;
  w.Family("tandem_agent_info", MetricType::kGauge,
           "Always 1; labels name the node this agent manages.");
  w.Sample({{"node", view.node.id},
            {"stack", view.node.stack},
            {"engine", Str(EngineName(view.node.engine))}},
           1);
  RoleGauge(&w, "tandem_agent_desired_role", "1 for the role the controller wants this node in.",
            view.desired.role);
  RoleGauge(&w, "tandem_agent_observed_role", "1 for the role the node was observed in.", o.role);
  Gauge(&w, "tandem_agent_converged",
        "1 when the node converged to the current desired generation.", Converged(view) ? 1 : 0);
  Gauge(&w, "tandem_agent_desired_generation", "Generation of the desired state held.",
        static_cast<double>(view.desired.generation));
  Gauge(&w, "tandem_agent_converged_generation", "Last desired generation the node converged to.",
        static_cast<double>(o.converged_generation));
  Gauge(&w, "tandem_agent_healthy",
        "1 when the engine is reachable and the last pass had no blocking error.",
        Healthy(view) ? 1 : 0);
  Gauge(&w, "tandem_agent_ready", "1 when converged and healthy (/readyz).", Ready(view) ? 1 : 0);
  Gauge(&w, "tandem_agent_engine_up", "1 when the engine answered on the last pass.",
        o.engine_reachable ? 1 : 0);
  Gauge(&w, "tandem_agent_writable", "1 when the engine accepts writes.", o.writable ? 1 : 0);
  Gauge(&w, "tandem_agent_error_blocking",
        "1 when the last pass ended with an error that needs an operator.",
        !o.last_error.empty() && o.error_blocks ? 1 : 0);
  Gauge(&w, "tandem_agent_controller_connected",
        "1 while the agent's watch stream to the controller is up.",
        view.controller_connected ? 1 : 0);
  Gauge(&w, "tandem_agent_replication_streaming",
        "1 when the node is a slave whose link to its upstream is up.", o.streaming ? 1 : 0);
  Gauge(&w, "tandem_agent_replication_out_of_sync",
        "1 when the node is a slave that can no longer follow its upstream by itself "
        "(reason in /status: observed.out_of_sync).",
        o.out_of_sync.empty() ? 0 : 1);
  w.Family("tandem_agent_replication_lag_bytes", MetricType::kGauge,
           "Replication lag of a slave in bytes (absent when unknown).");
  if (o.role == Role::kSlave && o.lag_bytes >= 0) w.Sample({}, static_cast<double>(o.lag_bytes));
  w.Family("tandem_agent_replication_lag_seconds", MetricType::kGauge,
           "Replication lag of a slave in seconds (absent when unknown).");
  if (o.role == Role::kSlave && o.lag_seconds >= 0) w.Sample({}, o.lag_seconds);
  Gauge(&w, "tandem_agent_data_bytes", "Size of the engine's data set in bytes.",
        static_cast<double>(o.data_bytes));
  Gauge(&w, "tandem_agent_bootstrap_copied_bytes",
        "Bytes copied so far by the running bootstrap (0 when none runs).",
        static_cast<double>(o.bootstrap.done_bytes));
  Gauge(&w, "tandem_agent_bootstrap_size_bytes",
        "Expected size of the running bootstrap in bytes (0 when none runs or unknown).",
        static_cast<double>(o.bootstrap.total_bytes));
  w.Family("tandem_agent_step_running", MetricType::kGauge,
           "1 for the step of a plan that is running (absent when idle).");
  if (!o.current_step.empty()) w.Sample({{"step", o.current_step}}, 1);

  w.Family("tandem_agent_certificate_expiry_seconds", MetricType::kGauge,
           "Seconds until this node's certificate expires (renew it before: tandemctl cert "
           "create-node, then SIGHUP); absent in insecure mode.");
  if (view.certificate_expiry_unix > 0) w.Sample({}, view.certificate_expiry_unix - unix_now_());

  absl::MutexLock lock(&mu_);
  w.Family("tandem_agent_step_duration_seconds", MetricType::kHistogram,
           "Duration of plan steps, successful or not.");
  for (const auto& [step, stats] : steps_) w.HistogramSample({{"step", step}}, stats.duration);
  w.Family("tandem_agent_step_failures_total", MetricType::kCounter, "Plan steps that failed.");
  for (const auto& [step, stats] : steps_) {
    w.Sample({{"step", step}}, static_cast<double>(stats.failures));
  }
  w.Family("tandem_agent_reconcile_passes_total", MetricType::kCounter,
           "Reconcile passes (observe, plan, execute) by result.");
  w.Sample({{"result", "ok"}}, static_cast<double>(passes_ok_));
  w.Sample({{"result", "error"}}, static_cast<double>(passes_failed_));
  w.Family("tandem_agent_last_successful_reconcile_timestamp_seconds", MetricType::kGauge,
           "Unix time of the end of the last pass that succeeded (absent before the first).");
  if (last_success_unix_ > 0) w.Sample({}, last_success_unix_);
  prom::AppendProcessMetrics(&w);
  return w.Take();
}

void MeteredSink::Publish(const ObservedState& observed, std::vector<StepEvent> events) {
  metrics_->Record(observed, events);
  if (next_ != nullptr) next_->Publish(observed, std::move(events));
}

}  // namespace tandem

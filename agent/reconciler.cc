#include "agent/reconciler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/log.h"

namespace tandem {
namespace {

std::string StepList(const Plan& plan) {
  std::vector<std::string> names;
  for (StepKind k : plan.steps) names.emplace_back(StepName(k));
  return absl::StrJoin(names, ", ");
}

}  // namespace

bool ErrorBlocks(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return true;
    default:
      return false;
  }
}

Reconciler::Reconciler(Peer self, Engine* engine, Host* host, Clock* clock,
                       DesiredStateStore* desired, ObservedSink* sink, ReconcilerOptions options)
    : self_(std::move(self)),
      engine_(engine),
      host_(host),
      clock_(clock),
      desired_(desired),
      sink_(sink),
      options_(options),
      executor_(self_, engine, host, clock, options.executor) {}

absl::StatusOr<Observation> Reconciler::Observe() {
  absl::StatusOr<EngineFacts> engine = engine_->Observe();
  absl::StatusOr<HostFacts> host = host_->Observe();
  if (!host.ok()) return host.status();
  absl::MutexLock lock(&mu_);
  observed_.engine_reachable = engine.ok() && engine->running;
  if (!engine.ok()) return engine.status();
  Observation o{*engine, *host};
  observed_.role = ObservedRole(o);
  observed_.upstream = o.engine.upstream;
  observed_.streaming = o.engine.streaming;
  observed_.writable = o.engine.writable;
  observed_.lag_bytes = o.engine.is_slave ? o.engine.lag_bytes : -1;
  observed_.lag_seconds = o.engine.is_slave ? o.engine.lag_seconds : -1;
  observed_.data_bytes = o.engine.data_bytes;
  observed_.position = o.engine.position;
  observed_.out_of_sync = o.engine.is_slave ? o.engine.out_of_sync : "";
  return o;
}

absl::Status Reconciler::Pass() {
  bool confirmed = false;
  DesiredState desired = desired_->Current(&confirmed);
  {
    absl::MutexLock lock(&mu_);
    // An error of an older target says nothing of this one (and must not
    // look like it: `tandemctl wait` stops on a blocking error of the
    // generation the agent holds).
    if (observed_.seen_generation != desired.generation) {
      observed_.last_error.clear();
      observed_.error_blocks = false;
    }
    observed_.seen_generation = desired.generation;
  }
  absl::Status status;
  bool unconfirmed_master = false;
  absl::StatusOr<Observation> observed = Observe();
  if (!observed.ok()) {
    status = absl::Status(observed.status().code(),
                          absl::StrCat("observing: ", observed.status().message()));
  } else {
    // A master the controller has not confirmed since this agent started
    // may have been replaced meanwhile (promote --force while it was away):
    // it is not made writable (nor started writable) until the controller
    // says it still is the master. One that is writable is left alone.
    unconfirmed_master = desired.role == Role::kMaster && !desired.fenced &&
                         !confirmed && !observed->engine.writable;
    if (unconfirmed_master) desired.fenced = true;
    Plan plan = PlanSteps(*observed, desired);
    const bool held = held_generation_ == desired.generation && desired.generation != 0 &&
                      clock_->Now() - held_since_ < options_.hold_retry;
    if (plan.Converged()) {
      status = absl::OkStatus();
    } else if (!plan.status.ok()) {
      status = plan.status;
    } else if (held) {
      // A blocking error on this generation: do not run the steps again
      // until the desired state changes (or the hold expires).
      absl::MutexLock lock(&mu_);
      status = absl::Status(absl::StatusCode::kFailedPrecondition, observed_.last_error);
    } else {
      running_desired_ = desired;
      running_reason_ = plan.reason;
      LogInfo(absl::StrCat("transition start: node=", self_.id, " ", std::string(RoleName(plan.from)), " -> ",
                           std::string(RoleName(plan.to)), " generation=", desired.generation, " reason=\"",
                           plan.reason, "\" steps=[", StepList(plan), "]"));
      const auto start = clock_->Now();
      ran_steps_ = true;
      status = executor_.Execute(plan, *observed, desired, this);
      const double seconds = absl::ToDoubleSeconds(absl::FromChrono(clock_->Now() - start));
      if (status.ok()) {
        // Converged only if a fresh look says so.
        absl::StatusOr<Observation> after = Observe();
        if (!after.ok()) {
          status = after.status();
        } else if (Plan again = PlanSteps(*after, desired); !again.Converged()) {
          status = absl::UnavailableError(absl::StrCat(
              "not converged after the plan ran; still to do: ", StepList(again)));
        }
      } else {
        // The report of a failed pass shows the state the failure left (an
        // out-of-sync reason found by a step, say), not the one before it.
        (void)Observe();
      }
      LogInfo(absl::StrCat("transition end: node=", self_.id, " ", std::string(RoleName(plan.from)), " -> ",
                           std::string(RoleName(plan.to)), " generation=", desired.generation,
                           " reason=\"", plan.reason, "\" result=",
                           status.ok() ? "ok" : std::string(status.message()),
                           " seconds=", absl::StrFormat("%.2f", seconds)));
    }
  }
  if (unconfirmed_master && status.ok()) {
    status = absl::UnavailableError(
        "a master restarted without word from the controller stays fenced until the "
        "controller confirms its role");
  }
  if (!status.ok() && ErrorBlocks(status) && held_generation_ != desired.generation) {
    held_generation_ = desired.generation;
    held_since_ = clock_->Now();
  } else if (status.ok() || held_generation_ != desired.generation) {
    held_generation_ = 0;
  }
  {
    absl::MutexLock lock(&mu_);
    observed_.current_step.clear();
    if (status.ok()) {
      observed_.converged_generation = desired.generation;
      observed_.last_error.clear();
      observed_.error_blocks = false;
      observed_.bootstrap = {};
    } else {
      observed_.last_error = std::string(status.message());
      observed_.error_blocks = ErrorBlocks(status);
    }
    PublishLocked();
  }
  return status;
}

void Reconciler::Run() {
  std::chrono::milliseconds backoff = std::chrono::milliseconds(500);
  bool settled = false;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      wake_ = false;
    }
    ran_steps_ = false;
    absl::Status status = Pass();
    const bool idle = status.ok() && !ran_steps_;
    if (idle && !settled && options_.settled) options_.settled();
    settled = idle;
    std::chrono::milliseconds wait = options_.interval;
    if (!status.ok() && !ErrorBlocks(status)) {
      wait = std::min(backoff, options_.max_backoff);
      backoff = std::min(backoff * 2, options_.max_backoff);
    } else {
      backoff = std::chrono::milliseconds(500);
    }
    absl::MutexLock lock(&mu_);
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return wake_ || stop_; };
    mu_.AwaitWithTimeout(absl::Condition(&woken), absl::FromChrono(wait));
    if (wake_) backoff = std::chrono::milliseconds(500);
  }
}

void Reconciler::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

void Reconciler::Stop() {
  absl::MutexLock lock(&mu_);
  stop_ = true;
}

ObservedState Reconciler::LastObserved() const {
  absl::MutexLock lock(&mu_);
  return observed_;
}

void Reconciler::StepStarted(StepKind kind) {
  absl::MutexLock lock(&mu_);
  observed_.current_step = std::string(StepName(kind));
  PublishLocked();
}

void Reconciler::StepFinished(StepKind kind, const absl::Status& status,
                              std::chrono::milliseconds duration) {
  absl::MutexLock lock(&mu_);
  pending_events_.push_back(StepEvent{running_desired_.generation, std::string(StepName(kind)),
                                      running_reason_, status.ok(), std::string(status.message()),
                                      static_cast<double>(duration.count()) / 1000.0});
  if (!status.ok()) {
    LogWarning(absl::StrCat("step failed: node=", self_.id, " step=", std::string(StepName(kind)),
                            " error=\"", status.message(), "\""));
  }
}

void Reconciler::Progress(uint64_t done_bytes, uint64_t total_bytes) {
  absl::MutexLock lock(&mu_);
  observed_.bootstrap = tandem::Progress{done_bytes, total_bytes};
  // Progress can come many times a second; the controller needs ~1/s.
  const auto now = clock_->Now();
  if (now - last_progress_publish_ >= std::chrono::seconds(1)) {
    last_progress_publish_ = now;
    PublishLocked();
  }
}

void Reconciler::PublishLocked() {
  if (sink_ == nullptr) return;
  sink_->Publish(observed_, std::move(pending_events_));
  pending_events_.clear();
}

}  // namespace tandem

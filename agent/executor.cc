#include "agent/executor.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/status_util.h"

namespace tandem {

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1000 && unit < 4) {
    value /= 1000;
    ++unit;
  }
  return unit == 0 ? absl::StrCat(bytes, " B") : absl::StrFormat("%.1f %s", value, units[unit]);
}

Executor::Executor(Peer self, Engine* engine, Host* host, Clock* clock, ExecutorOptions options)
    : self_(std::move(self)), engine_(engine), host_(host), clock_(clock), options_(options) {}

absl::Status Executor::Execute(const Plan& plan, const Observation& observed,
                               const DesiredState& desired, StepListener* listener) {
  if (!plan.status.ok()) return plan.status;
  for (StepKind kind : plan.steps) {
    if (listener != nullptr) listener->StepStarted(kind);
    const auto start = clock_->Now();
    absl::Status status = RunStep(kind, observed, desired, listener);
    if (!status.ok()) {
      status = absl::Status(status.code(), absl::StrCat(std::string(StepName(kind)), ": ", status.message()));
    }
    if (listener != nullptr) {
      listener->StepFinished(
          kind, status,
          std::chrono::duration_cast<std::chrono::milliseconds>(clock_->Now() - start));
    }
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status Executor::RunStep(StepKind kind, const Observation& observed,
                               const DesiredState& desired, StepListener* listener) {
  switch (kind) {
    case StepKind::kStartEngine: {
      // A master that must refuse writes comes up fenced (every engine's
      // Fence of a stopped server takes effect at its start), not writable
      // for the moment before the fence step. So does a server that is to
      // become a slave and is not one yet (a demoted master kept running
      // for its successor to catch up from).
      bool fence = desired.role == Role::kMaster && desired.fenced;
      if (desired.role == Role::kSlave) {
        absl::StatusOr<EngineFacts> now = engine_->Observe();
        fence = now.ok() && !now->running && !now->is_slave;
      }
      if (fence) TANDEM_RETURN_IF_ERROR(engine_->Fence());
      return engine_->Start();
    }
    case StepKind::kFence:
      return engine_->Fence();
    case StepKind::kBootstrap:
      return Bootstrap(observed, desired, listener);
    case StepKind::kFollowUpstream:
      return engine_->Follow(self_, desired.upstream);
    case StepKind::kWaitStreaming:
      return WaitStreaming(listener);
    case StepKind::kCatchUp:
      return CatchUp(desired.catch_up_position, listener);
    case StepKind::kServeSlaves:
      return engine_->ServeSlaves(desired.role == Role::kMaster ? desired.slaves
                                                                : std::vector<Peer>{});
    case StepKind::kMakeWritable:
      return engine_->MakeWritable();
    case StepKind::kRecordRole:
      return host_->RecordRole(desired.role);
    case StepKind::kWriteEnv:
      return host_->WriteEnv(desired.env);
  }
  return absl::InternalError("unknown step");
}

absl::Status Executor::Bootstrap(const Observation& observed, const DesiredState& desired,
                                 StepListener* listener) {
  // Never restore over a writable node: its data may hold acknowledged
  // writes no other node has. (A demoted master was fenced by the step
  // before; look again rather than trust the plan's snapshot.)
  absl::StatusOr<EngineFacts> now = engine_->Observe();
  if (!now.ok()) return now.status();
  if (now->writable) {
    return absl::FailedPreconditionError(absl::StrCat(
        "refusing to restore over a writable ", std::string(RoleName(ObservedRole(observed))),
        "; it must be fenced first"));
  }
  if (desired.upstream.id.empty()) {
    return absl::InvalidArgumentError("desired state has no upstream");
  }
  // The cheap path first where it was asked for (a follower after a
  // switchover, an automatic resync) and there is data to rejoin with. It
  // needs neither the master's size nor room for a copy.
  if (desired.rejoin_first && now->has_data) {
    absl::StatusOr<std::string> rejoined = engine_->Rejoin(self_, desired.upstream);
    if (rejoined.ok()) {
      return host_->RecordBootstrap(
          BootstrapRecord{desired.upstream.id, desired.resync_token, *rejoined});
    }
    // Not yet (the master does not serve this node yet, ...): try again.
    if (absl::IsUnavailable(rejoined.status())) return rejoined.status();
    LogWarning(absl::StrCat("rejoin with ", desired.upstream.id,
                            " not possible, making a full copy: ", rejoined.status().message()));
  }
  if (desired.upstream_data_bytes == 0) {
    return absl::UnavailableError(absl::StrCat("the size of ", desired.upstream.id,
                                               "'s data is not known yet (its agent has not "
                                               "reported); retrying"));
  }
  const std::string dir = engine_->DataParentDir();
  absl::StatusOr<uint64_t> free_bytes = host_->FreeDiskBytes(dir);
  if (!free_bytes.ok()) return free_bytes.status();
  const uint64_t needed = 2 * desired.upstream_data_bytes;
  if (*free_bytes < needed) {
    return absl::FailedPreconditionError(absl::StrCat(
        "not enough free disk on ", dir, ": ", HumanBytes(*free_bytes), " free, need ",
        HumanBytes(needed), " (twice the size of ", desired.upstream.id, "'s data, ",
        HumanBytes(desired.upstream_data_bytes), ")"));
  }
  ProgressFn progress = [listener](uint64_t done, uint64_t total) {
    if (listener != nullptr) listener->Progress(done, total);
  };
  absl::StatusOr<std::string> data_id = engine_->Bootstrap(self_, desired.upstream, progress);
  if (!data_id.ok()) return data_id.status();
  return host_->RecordBootstrap(
      BootstrapRecord{desired.upstream.id, desired.resync_token, *data_id});
}

namespace {

absl::Status Superseded() {
  return absl::UnavailableError("a newer desired state came: looking again");
}

}  // namespace

absl::Status Executor::CatchUp(const std::string& position, StepListener* listener) {
  if (position.empty()) return absl::OkStatus();  // nothing to wait for
  const auto deadline = clock_->Now() + options_.streaming_timeout;
  for (;;) {
    absl::StatusOr<bool> replayed = engine_->HasReplayed(position);
    if (!replayed.ok()) return replayed.status();
    if (*replayed) return absl::OkStatus();
    if (listener != nullptr && listener->TargetChanged()) return Superseded();
    if (clock_->Now() >= deadline) break;
    clock_->SleepFor(options_.poll_interval);
  }
  return absl::UnavailableError(absl::StrCat("has not replayed up to ", position, " after ",
                                             options_.streaming_timeout.count() / 1000, " s"));
}

absl::Status Executor::WaitStreaming(StepListener* listener) {
  const auto deadline = clock_->Now() + options_.streaming_timeout;
  std::string last;
  for (;;) {
    absl::StatusOr<EngineFacts> facts = engine_->Observe();
    if (facts.ok() && facts->streaming) return absl::OkStatus();
    if (!facts.ok()) {
      last = std::string(facts.status().message());
    } else {
      last = absl::StrCat("link to ", facts->upstream.empty() ? "upstream" : facts->upstream,
                          " is not up");
      // The engine's own reason, when it has one (e.g. a replication error).
      if (!facts->link_error.empty()) absl::StrAppend(&last, ": ", facts->link_error);
      // Waiting cannot help a copy that can no longer follow: say so now.
      if (!facts->out_of_sync.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "out of sync with ", facts->upstream.empty() ? "its upstream" : facts->upstream, ": ",
            facts->out_of_sync, "; it needs a resync (tandemctl resync, or auto_resync)"));
      }
    }
    if (listener != nullptr && listener->TargetChanged()) return Superseded();
    if (clock_->Now() >= deadline) break;
    clock_->SleepFor(options_.poll_interval);
  }
  return absl::UnavailableError(absl::StrCat("not streaming after ",
                                             options_.streaming_timeout.count() / 1000, " s: ", last));
}

}  // namespace tandem

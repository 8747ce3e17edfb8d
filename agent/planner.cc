#include "agent/planner.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace tandem {
namespace {

// Writable roles: the step that makes the node writable comes after every
// step that removes replication from it, and only the agent of a node the
// controller chose as the group's single writer runs it (the controller
// fences the others first). Bookkeeping (role record, env) comes last so
// that applications are pointed at a node only once it is verified.
const std::vector<StepKind> kWritableSteps = {
    StepKind::kStartEngine, StepKind::kCatchUp,    StepKind::kMakeWritable,
    StepKind::kServeSlaves, StepKind::kRecordRole, StepKind::kWriteEnv};

// A master fenced for a switchover: it stays a master (its slaves keep
// streaming what it has) but refuses writes, so that the slave being
// promoted can catch up with a position that no longer moves.
const std::vector<StepKind> kFencedMasterSteps = {
    StepKind::kStartEngine, StepKind::kFence, StepKind::kServeSlaves, StepKind::kRecordRole,
    StepKind::kWriteEnv};

// A slave whose copy waits its turn (the bootstrap queue): fenced, so that
// a node the queue holds back (an old master after promote --force) is
// never writable meanwhile. Its server keeps running (started fenced if it
// was down, when it has data): an old master is where the new one catches
// up from. Its env file changes only with its role (the new master may not
// be writable yet).
const std::vector<StepKind> kQueuedSlaveSteps = {StepKind::kFence, StepKind::kStartEngine};
const std::vector<StepKind> kQueuedSlaveWithoutDataSteps = {StepKind::kFence};

// A demoted master: fenced, and its server kept running (started fenced if
// it was down) until it rejoins or is rebuilt: the promoted slave may still
// have to replay what it holds before it can become writable.
const std::vector<StepKind> kDemotedMasterSteps = {
    StepKind::kFence,         StepKind::kStartEngine,   StepKind::kBootstrap,
    StepKind::kFollowUpstream, StepKind::kStartEngine,  StepKind::kWaitStreaming,
    StepKind::kRecordRole,    StepKind::kWriteEnv};

// Slave: fenced before anything else so that the group never has two
// writers, data replaced only when it is not already a copy of the upstream.
const std::vector<StepKind> kSlaveSteps = {
    StepKind::kFence,         StepKind::kBootstrap,  StepKind::kFollowUpstream,
    StepKind::kStartEngine,   StepKind::kWaitStreaming, StepKind::kRecordRole,
    StepKind::kWriteEnv};

std::vector<std::string> SortedIds(const std::vector<Peer>& peers) {
  std::vector<std::string> ids;
  for (const Peer& p : peers) ids.push_back(p.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::string HostPort(const Peer& peer) { return absl::StrCat(peer.host, ":", peer.port); }

// Whether the goal of `kind` already holds.
bool GoalHolds(StepKind kind, const Observation& o, const DesiredState& d) {
  const EngineFacts& e = o.engine;
  switch (kind) {
    case StepKind::kStartEngine:
      return e.running;
    case StepKind::kFence:
      return !e.writable;
    case StepKind::kBootstrap: {
      const BootstrapRecord& b = o.host.bootstrap;
      const bool same_data =
          b.data_id.empty() || e.data_id.empty() || b.data_id == e.data_id;
      return e.has_data && e.is_slave && b.upstream_id == d.upstream.id &&
             b.resync_token == d.resync_token && same_data;
    }
    case StepKind::kFollowUpstream:
      // Over TLS a slave may stream from its upstream's TLS port (Redis).
      return e.is_slave &&
             (e.upstream == HostPort(d.upstream) ||
              (d.upstream.tls_port != 0 &&
               e.upstream == absl::StrCat(d.upstream.host, ":", d.upstream.tls_port)));
    case StepKind::kWaitStreaming:
      return e.streaming;
    case StepKind::kCatchUp:
      // Only a slave that is still replicating has anything to catch up.
      return !e.is_slave || d.catch_up_position.empty();
    case StepKind::kServeSlaves: {
      std::vector<std::string> want =
          d.role == Role::kMaster ? SortedIds(d.slaves) : std::vector<std::string>{};
      std::vector<std::string> have = e.served_slaves;
      std::sort(have.begin(), have.end());
      return have == want;
    }
    case StepKind::kMakeWritable:
      return e.writable;
    case StepKind::kRecordRole:
      return o.host.recorded_role == d.role;
    case StepKind::kWriteEnv:
      return o.host.env_file_exists && o.host.env == d.env && !o.host.hook_pending;
  }
  return false;
}

const RoleTableRow* FindRow(Role from, Role to) {
  for (const RoleTableRow& row : RoleTable()) {
    if (row.from == from && row.to == to) return &row;
  }
  return nullptr;
}

}  // namespace

std::string_view StepName(StepKind kind) {
  switch (kind) {
    case StepKind::kStartEngine: return "start-engine";
    case StepKind::kFence: return "fence";
    case StepKind::kBootstrap: return "bootstrap";
    case StepKind::kFollowUpstream: return "follow-upstream";
    case StepKind::kWaitStreaming: return "wait-streaming";
    case StepKind::kCatchUp: return "catch-up";
    case StepKind::kServeSlaves: return "serve-slaves";
    case StepKind::kMakeWritable: return "make-writable";
    case StepKind::kRecordRole: return "record-role";
    case StepKind::kWriteEnv: return "write-env";
  }
  return "?";
}

const std::vector<RoleTableRow>& RoleTable() {
  static const std::vector<RoleTableRow>* const kTable = new std::vector<RoleTableRow>{
      {Role::kStandalone, Role::kStandalone, kWritableSteps,
       "stays standalone: writable, serves no slave"},
      {Role::kStandalone, Role::kMaster, kWritableSteps,
       "becomes master: keeps its data and starts serving its slaves"},
      {Role::kStandalone, Role::kSlave, kSlaveSteps,
       "becomes slave: fenced, data replaced by a copy of the master's (old data moved aside), "
       "streams from it"},
      {Role::kMaster, Role::kStandalone, kWritableSteps,
       "leaves replication: stops serving slaves, stays writable with its data"},
      {Role::kMaster, Role::kMaster, kWritableSteps,
       "stays master: serves exactly the slaves of its group"},
      {Role::kMaster, Role::kSlave, kDemotedMasterSteps,
       "demoted (another member was promoted): fenced, kept running for the new master to "
       "catch up from, then rejoins it or its data is replaced by a copy of the new master's "
       "(old data moved aside)"},
      {Role::kSlave, Role::kStandalone, kWritableSteps,
       "leaves replication: stops streaming, becomes writable with the data it has"},
      {Role::kSlave, Role::kMaster, kWritableSteps,
       "promoted: stops streaming and becomes the writable master of its group"},
      {Role::kSlave, Role::kSlave, kSlaveSteps,
       "stays slave: a copy of its master's data, streaming from it"},
  };
  return *kTable;
}

std::string FormatRoleTable() {
  std::string out =
      absl::StrFormat("%-10s  %-10s  %-s\n", "OBSERVED", "DESIRED", "STEPS / REASON");
  for (const RoleTableRow& row : RoleTable()) {
    std::vector<std::string> steps;
    for (StepKind k : row.steps) steps.emplace_back(StepName(k));
    absl::StrAppendFormat(&out, "%-10s  %-10s  %s\n", RoleName(row.from), RoleName(row.to),
                          absl::StrJoin(steps, ", "));
    absl::StrAppendFormat(&out, "%-10s  %-10s  # %s\n", "", "", row.reason);
  }
  std::vector<std::string> fenced;
  for (StepKind k : kFencedMasterSteps) fenced.emplace_back(StepName(k));
  absl::StrAppendFormat(&out, "%-10s  %-10s  %s\n", "(any)", "master*", absl::StrJoin(fenced, ", "));
  absl::StrAppendFormat(&out, "%-10s  %-10s  # %s\n", "", "",
                        "* fenced for a switchover: refuses writes while a slave catches up");
  std::vector<std::string> queued;
  for (StepKind k : kQueuedSlaveSteps) queued.emplace_back(StepName(k));
  absl::StrAppendFormat(&out, "%-10s  %-10s  %s\n", "(any)", "slave*", absl::StrJoin(queued, ", "));
  absl::StrAppendFormat(&out, "%-10s  %-10s  # %s\n", "", "",
                        "* queued: fenced while its copy waits its turn");
  return out;
}

Role ObservedRole(const Observation& observed) {
  if (observed.engine.is_slave) return Role::kSlave;
  return observed.host.recorded_role == Role::kMaster ? Role::kMaster : Role::kStandalone;
}

Plan PlanSteps(const Observation& observed, const DesiredState& desired) {
  Plan plan;
  plan.from = ObservedRole(observed);
  plan.to = desired.role;
  if (desired.role == Role::kUnspecified) {
    plan.reason = "no desired state yet: holding";
    return plan;
  }
  const RoleTableRow* row = FindRow(plan.from, plan.to);
  if (row == nullptr) {
    plan.status = absl::FailedPreconditionError(absl::StrCat(
        "no transition from ", std::string(RoleName(plan.from)), " to ", std::string(RoleName(plan.to))));
    return plan;
  }
  plan.reason = std::string(row->reason);
  const std::vector<StepKind>* steps = &row->steps;
  if (desired.role == Role::kMaster && desired.fenced) {
    steps = &kFencedMasterSteps;
    plan.reason = "fenced for a switchover: refuses writes while a slave catches up";
  } else if (desired.role == Role::kSlave && desired.queued) {
    steps = observed.engine.has_data ? &kQueuedSlaveSteps : &kQueuedSlaveWithoutDataSteps;
    plan.reason = absl::StrCat("waits its turn to become a slave of ", desired.upstream.id,
                               ": fenced meanwhile");
  }
  // Every step after the first unmet one runs too: it may depend on the
  // change that step makes (and each step is a no-op when its goal holds).
  auto first_unmet = std::find_if(steps->begin(), steps->end(), [&](StepKind kind) {
    return !GoalHolds(kind, observed, desired);
  });
  plan.steps.assign(first_unmet, steps->end());
  return plan;
}

}  // namespace tandem

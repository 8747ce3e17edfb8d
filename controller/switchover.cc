// The switchover (promote) part of the planner: phase 1 (fence the old
// master), phase 2 (the promoted slave takes over), the forced takeover,
// and what the passing of time decides (a silent agent under --force, the
// deadline of phase 1).
#include <utility>

#include "absl/strings/str_cat.h"
#include "controller/group_planner.h"
#include "controller/group_planner_impl.h"

namespace tandem {
namespace planner {

void SwitchMaster(ControllerState* next, const std::string& node, const std::string& position,
                  bool rejoin_first) {
  const std::string old_master = next->nodes.at(node).upstream_id;
  NodeRecord& promoted = next->nodes.at(node);
  // The group keeps its policy under its new master.
  promoted.auto_resync = next->nodes.at(old_master).auto_resync;
  next->nodes.at(old_master).auto_resync.reset();
  promoted.role = Role::kMaster;
  promoted.upstream_id.clear();
  promoted.resync_token.clear();
  promoted.catch_up_position = position;
  promoted.fenced = false;
  promoted.switchover_aborted.clear();
  // The other slaves first, then the old master, one at a time (the
  // bootstrap queue): the slaves leave the old master before it stops, so
  // they never replay anything of its past the point where `node` took
  // over (which would make them diverge too).
  std::vector<std::string> followers;
  for (const std::string& id : SlaveIds(*next, old_master)) {
    if (id != node) followers.push_back(id);
  }
  followers.push_back(old_master);
  for (const std::string& id : followers) {
    NodeRecord& record = next->nodes.at(id);
    record.role = Role::kSlave;
    record.upstream_id = node;
    record.fenced = false;
    record.catch_up_position.clear();
    record.switchover_aborted.clear();
    RequestCopy(next, id, rejoin_first);
  }
  next->switchovers.erase(old_master);
}

namespace {

// The forced takeover: no fence, no catch-up, and no rejoin in place
// either: the old master (and a slave that got more of its writes than
// `node`) may hold writes `node` lacks, which only a full copy keeps (the
// old data is moved aside).
void TakeOver(ControllerState* next, const std::string& node) {
  SwitchMaster(next, node, "", /*rejoin_first=*/false);
}

}  // namespace
}  // namespace planner

using namespace planner;  // NOLINT: the planner's own helpers

absl::StatusOr<Decision> PlanPromote(const ControllerState& state, const std::string& node,
                                     bool force, const PlanContext& context) {
  absl::StatusOr<const NodeRecord*> n = Named(state, "node", node);
  if (!n.ok()) return n.status();
  const NodeRecord& promoted = **n;
  if (promoted.role == Role::kMaster && !promoted.catch_up_position.empty()) {
    // Promoted already, still replaying its old master's last writes.
    if (!force) return CheckNoSwitchover(state, node, context.now);
    ControllerState next = state;
    next.nodes.at(node).catch_up_position.clear();
    return Finish(state, std::move(next),
                  absl::StrCat("promote --force ", node, ": ", node,
                               " takes over without replaying up to ",
                               promoted.catch_up_position,
                               " (writes of its old master it lacks are lost)"),
                  context);
  }
  if (promoted.info.engine == EngineType::kMongodb) {
    return absl::FailedPreconditionError(
        absl::StrCat("promote is not supported for mongodb (", node, ")"));
  }
  if (promoted.role != Role::kSlave) {
    return absl::FailedPreconditionError(
        absl::StrCat(node, " is not a slave: it is ", DescribeIntent(state, promoted),
                     "; only a slave can be promoted"));
  }
  if (!promoted.seeded) {
    return absl::FailedPreconditionError(absl::StrCat(
        node, " has not finished copying ", promoted.upstream_id,
        "'s data yet; promote it once it is converged (tandemctl wait ", node, ")"));
  }
  const std::string old_master = promoted.upstream_id;
  if (!force) {
    if (absl::Status st = CheckNoSwitchover(state, old_master, context.now); !st.ok()) return st;
  }
  ControllerState next = state;
  ClearAborted(&next, old_master);
  std::string overridden;
  if (auto it = next.switchovers.find(old_master); it != next.switchovers.end()) {
    overridden = absl::StrCat(" (overrides the switchover to ", it->second.promoted,
                              " in progress)");
    next.switchovers.erase(it);
  }
  const bool answers = AgentAnswers(context, old_master);
  // --force takes over at once only from an agent silent for agent_timeout
  // (counted from the controller's start at the earliest): one that
  // reported lately, even if not connected right now (it may be
  // reconnecting), could still make its server writable, so it is fenced
  // first, and taken over without the fence if it stays silent.
  if (force && AgentSilent(context, old_master)) {
    // The old master's published target revokes its writability at once
    // (a slave of `node`, fenced while its copy waits: desired.h), so its
    // agent, when it comes back, never takes it for a master.
    TakeOver(&next, node);
    return Finish(state, std::move(next),
                  absl::StrCat("promote --force ", node, overridden, ": ", old_master,
                               " not fenced (", DescribeAgent(context, old_master),
                               "); it is rebuilt as a slave when it returns"),
                  context);
  }
  if (!force && !answers) {
    return absl::FailedPreconditionError(absl::StrCat(
        old_master, "'s agent does not answer (", DescribeAgent(context, old_master),
        "), so it cannot be fenced first; promote --force ", node, " proceeds without it (",
        old_master, " is then rebuilt as a slave when it returns)"));
  }
  // Phase 1: fence the old master. Phase 2 (SwitchMaster) runs when its
  // agent reports the fence and the position it stopped at (PlanReport);
  // PlanTick ends phase 1 when that takes too long.
  // Already fenced when this overrides a switchover in progress: no new
  // generation, so the decision is an event of its own.
  const bool fenced_before = next.nodes.at(old_master).fenced;
  next.nodes.at(old_master).fenced = true;
  Switchover& switchover = next.switchovers[old_master];
  switchover.promoted = node;
  switchover.force = force;
  switchover.started = UnixSeconds(context.now);
  switchover.deadline = UnixSeconds(context.now + context.options.switchover_timeout);
  const std::string cause =
      force ? absl::StrCat("promote --force ", node, overridden, ": ", old_master,
                           answers ? "'s agent answers" : "'s agent was heard lately",
                           ", so it is fenced first (taken over without the fence if its agent "
                           "stays silent for ",
                           absl::FormatDuration(context.options.agent_timeout), ")")
            : absl::StrCat("promote ", node, ": fencing ", old_master);
  if (fenced_before) Note(&next, old_master, cause, context);
  return Finish(state, std::move(next), cause, context);
}

Decision PlanTick(const ControllerState& state, const PlanContext& context) {
  Decision decision{state, {}, false};
  const double now = UnixSeconds(context.now);
  for (const auto& [old_master, switchover] : state.switchovers) {
    ControllerState next = decision.state;
    std::string cause;
    if (switchover.force && AgentSilent(context, old_master)) {
      TakeOver(&next, switchover.promoted);
      cause = absl::StrCat("promote --force ", switchover.promoted, ": ", old_master,
                           " stopped answering before it was fenced (",
                           DescribeAgent(context, old_master), "); ", switchover.promoted,
                           " takes over without the fence");
    } else if (now >= switchover.deadline) {
      const std::string reason = absl::StrCat(
          "promote ", switchover.force ? "--force " : "", switchover.promoted, " aborted: ",
          old_master, " did not report its fence within ",
          absl::FormatDuration(context.options.switchover_timeout), " (",
          DescribeAgent(context, old_master), "); ", old_master,
          " is unfenced and stays the master");
      NodeRecord& master = next.nodes.at(old_master);
      master.fenced = false;
      master.switchover_aborted = reason;
      next.switchovers.erase(old_master);
      cause = reason;
    } else {
      continue;
    }
    Decision step = Finish(decision.state, std::move(next), cause, context);
    decision.changes.insert(decision.changes.end(), step.changes.begin(), step.changes.end());
    decision.state = std::move(step.state);
  }
  decision.changed = !(decision.state == state);
  return decision;
}

std::string DescribeSwitchover(const ControllerState& state, const NodeRecord& record,
                               absl::Time now) {
  const std::string master_id = GroupMasterId(record);
  auto it = state.switchovers.find(master_id);
  if (it == state.switchovers.end()) {
    auto master = state.nodes.find(master_id);
    if (master == state.nodes.end() || master->second.catch_up_position.empty()) return "";
    return absl::StrCat("promote ", master_id, ": ", master_id,
                        " replays its old master's writes up to ",
                        master->second.catch_up_position, " before it becomes writable");
  }
  const Switchover& s = it->second;
  const double elapsed = UnixSeconds(now) - s.started;
  return absl::StrCat("promote ", s.force ? "--force " : "", s.promoted, ": fencing ", it->first,
                      " for ", static_cast<int64_t>(elapsed < 0 ? 0 : elapsed), " s (aborted after ",
                      static_cast<int64_t>(s.deadline - s.started + 0.5), " s)");
}

std::string SwitchoverAborted(const ControllerState& state, const NodeRecord& record) {
  auto it = state.nodes.find(GroupMasterId(record));
  return it == state.nodes.end() ? "" : it->second.switchover_aborted;
}

}  // namespace tandem

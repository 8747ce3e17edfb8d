// The switchover (promote) part of the planner: the two phases of a fenced
// switchover and the forced takeover.
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
    RequestCopy(next, id, rejoin_first);
  }
  next->promoting.clear();
}

}  // namespace planner

using namespace planner;  // NOLINT: the planner's own helpers

absl::StatusOr<Decision> PlanPromote(const ControllerState& state, const std::string& node,
                                     bool force, const PlanContext& context) {
  if (absl::Status st = CheckRequestId("node", node); !st.ok()) return st;
  if (!state.promoting.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "a switchover (promote ", state.promoting, ") is in progress; try again when it is done"));
  }
  absl::StatusOr<const NodeRecord*> n = Find(state, node);
  if (!n.ok()) return n.status();
  const NodeRecord& promoted = **n;
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
  ControllerState next = state;
  if (force) {
    // No fence: the old master may be unreachable. It becomes a slave of
    // the new master with a fresh token, so when its agent comes back it is
    // fenced and rebuilt and can never be writable by itself again.
    // No rejoin in place either: the old master (and a slave that got more
    // of its writes than `node`) may hold writes `node` lacks, which only a
    // full copy keeps (the old data is moved aside).
    SwitchMaster(&next, node, "", /*rejoin_first=*/false);
    return Finish(state, std::move(next),
                  absl::StrCat("promote --force ", node, " (", old_master,
                               " not fenced: rebuilt when it returns)"),
                  context);
  }
  const AgentLiveness& agent = context.Agent(old_master);
  if (agent.watchers == 0 || !agent.observed) {
    return absl::FailedPreconditionError(absl::StrCat(
        old_master, "'s agent is not connected, so it cannot be fenced first; "
        "promote --force ", node, " proceeds without it (", old_master,
        " is then rebuilt as a slave when it returns)"));
  }
  // Phase 1: fence the old master. Phase 2 (SwitchMaster) runs when its
  // agent reports the fence and the position it stopped at.
  next.nodes.at(old_master).fenced = true;
  next.promoting = node;
  return Finish(state, std::move(next), absl::StrCat("promote ", node, ": fencing ", old_master),
                context);
}

}  // namespace tandem

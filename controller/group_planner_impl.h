// Helpers shared by the planner's files (group_planner.cc, switchover.cc,
// group_reports.cc). Internal to the planner; pure like it.
#ifndef TANDEM_CONTROLLER_GROUP_PLANNER_IMPL_H_
#define TANDEM_CONTROLLER_GROUP_PLANNER_IMPL_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "controller/group_planner.h"

namespace tandem::planner {

inline absl::string_view AV(std::string_view sv) { return absl::string_view(sv.data(), sv.size()); }

double UnixSeconds(absl::Time t);

// InvalidArgument "no <what> given" for an empty id.
absl::Status CheckRequestId(const char* what, const std::string& id);

// NotFound "unknown node X".
absl::StatusOr<const NodeRecord*> Find(const ControllerState& state, const std::string& node_id);
// CheckRequestId, then Find.
absl::StatusOr<const NodeRecord*> Named(const ControllerState& state, const char* what,
                                        const std::string& node_id);

// Named, then CheckNoSwitchover of the node's group: what a group change
// of an operator starts with.
absl::StatusOr<const NodeRecord*> NamedOutsideSwitchover(const ControllerState& state,
                                                         const char* what,
                                                         const std::string& node_id,
                                                         const PlanContext& context);

// The ids of the slaves of `master` by intent, sorted.
std::vector<std::string> SlaveIds(const ControllerState& state, const std::string& master);

// "standalone", "a slave of db1", "the master of db2,db3", "a master with
// no slaves".
std::string DescribeIntent(const ControllerState& state, const NodeRecord& record);

// The ids of the members of the node's group (master first), empty for a
// standalone node.
std::vector<std::string> GroupMembers(const ControllerState& state, const NodeRecord& record);

// The id of the master of the node's group ("" for a standalone node).
std::string GroupMasterId(const NodeRecord& record);

// A node that leaves its group: standalone, with nothing of its group role.
void LeaveGroup(NodeRecord* record);

// Asks for a fresh copy of its master's data on slave `node_id`: a new,
// never used resync token, a place at the end of the bootstrap queue, not
// seeded. `rejoin_first`: the engine may try its cheap path first.
void RequestCopy(ControllerState* next, const std::string& node_id, bool rejoin_first);

// Makes slave `node` the master of its group in `next`: the old master and
// the other slaves become its slaves (one at a time; with `rejoin_first`
// they try the engine's cheap path before a full copy); it replays
// `position` before becoming writable ("": no wait). switchover.cc.
void SwitchMaster(ControllerState* next, const std::string& node, const std::string& position,
                  bool rejoin_first);

// Whether `node_id`'s agent answers: its Watch stream is open and it
// reported within options.agent_timeout.
bool AgentAnswers(const PlanContext& context, const std::string& node_id);
// Whether it has been silent for agent_timeout (counted from the
// controller's start at the earliest), connected or not.
bool AgentSilent(const PlanContext& context, const std::string& node_id);
// "its agent is not connected", "its agent is connected but has not
// reported for 20 s", "its agent reported 2 s ago", with its last error.
std::string DescribeAgent(const PlanContext& context, const std::string& node_id);

// FailedPrecondition when a switchover is in progress in the group whose
// master is `master_id` ("" : no group, OK).
absl::Status CheckNoSwitchover(const ControllerState& state, const std::string& master_id,
                               absl::Time now);

// An operator change of the group of `master_id`: the note of its last
// aborted switchover goes.
void ClearAborted(ControllerState* next, const std::string& master_id);

// Records a "desired" event about `node` that no new generation carries
// (a policy change, a switchover decision that changes no target).
void Note(ControllerState* next, const std::string& node, const std::string& message,
          const PlanContext& context);

// Event text bounded for the history.
std::string Truncate(std::string text);

}  // namespace tandem::planner

#endif  // TANDEM_CONTROLLER_GROUP_PLANNER_IMPL_H_

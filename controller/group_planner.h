// The controller's planner: every group operation as a pure function from
// (state, request or agent report) to (new state, events).
//
// No I/O, no clock, no locking, no randomness; deterministic. The time and
// what the controller knows of the agents (in memory only: connections,
// last reports) come in a PlanContext. The registry (registry.h) locks,
// calls one of these, saves the result when it changed, installs it and
// wakes the streams; the simulation (tests/sim) calls them through the
// registry too.
//
// Every operation either refuses, with a precise status and nothing
// changed, or returns a Decision: the whole next state with the desired
// state of every node recomputed (desired.h: a node's generation bumped only
// when its target changed), one "desired" event per such node (cause
// attached), and the lines the operator sees.
//
// Status codes:
//   InvalidArgument    the request itself is malformed (empty id, a node as
//                      its own upstream, ...).
//   NotFound           a named node is not registered ("unknown node db9").
//   FailedPrecondition the request conflicts with the current state
//                      (engines differ, a slave of a slave, a switchover in
//                      progress in that group, ...).
#ifndef TANDEM_CONTROLLER_GROUP_PLANNER_H_
#define TANDEM_CONTROLLER_GROUP_PLANNER_H_

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/types.h"
#include "controller/desired.h"
#include "controller/state.h"

namespace tandem {

// One line per node whose desired state changed, in node id order:
// "db2: standalone -> slave of db1 (generation 4)". Empty: nothing to change.
using Changes = std::vector<std::string>;

// How the controller runs its groups (controller.yaml).
struct PlannerOptions {
  // How many events are kept (oldest dropped first). At least 1.
  size_t events_keep = 2000;
  // How group members are released (bootstraps per group at a time).
  DesiredPolicy policy;
  // Resync a slave whose agent reports it out of sync without waiting for
  // an operator (cheap path first), at most once per interval per node.
  bool auto_resync = false;
  absl::Duration auto_resync_interval = absl::Minutes(5);
  // Phase 1 of a switchover (the old master's fence) is aborted when its
  // agent has not reported the fence within this time (controller.yaml
  // switchover_timeout).
  absl::Duration switchover_timeout = absl::Seconds(30);
  // An agent answers while its Watch stream is open and it reported within
  // this time (agents report at least every 5 s).
  absl::Duration agent_timeout = absl::Seconds(15);
};

// What the controller knows of one node's agent beyond the persisted state:
// kept in memory only, lost (and rebuilt from the agents) on a restart.
struct AgentLiveness {
  int watchers = 0;  // open Watch streams of `instance`
  // The agent process the streams belong to (a random id it makes at
  // start; "" from an agent that sends none) and where it connects from.
  std::string instance;
  std::string peer;
  absl::Time connected = absl::InfinitePast();  // when `instance` connected last
  // The last agent refused because another one serves the node, and when.
  std::string refused_peer;
  absl::Time refused = absl::InfinitePast();
  std::optional<ObservedState> observed;  // nullopt: no report since start-up
  absl::Time last_report = absl::InfinitePast();
  // A report arrived since the agent last connected: an agent that just
  // restarted is not taken as converged on its predecessor's word.
  bool reported_since_connect = false;
};
using Liveness = std::map<std::string, AgentLiveness>;

struct PlanContext {
  absl::Time now;
  const PlannerOptions& options;
  const Liveness& agents;
  // When the controller started: an agent is not taken as silent before it
  // had agent_timeout to reconnect.
  absl::Time since = absl::InfinitePast();

  // The node's liveness (a default one when nothing is known).
  const AgentLiveness& Agent(const std::string& node_id) const;
};

// The outcome of an accepted operation.
struct Decision {
  ControllerState state;  // the next state (equal to the input when unchanged)
  Changes changes;
  bool changed = false;  // `state` differs from the input: save and install it
};

// Recomputes the desired states of `next` (a modified copy of `before`),
// records one "desired" event per node whose target changed, with `cause`,
// and compares: changed is false (and changes empty) when nothing differs
// from `before`.
Decision Finish(const ControllerState& before, ControllerState next, const std::string& cause,
                const PlanContext& context);

// Appends `event` to `state`'s history with the next sequence number,
// dropping the oldest beyond options.events_keep.
void AppendEvent(ControllerState* state, Event event, const PlannerOptions& options);

// ---- Operations.

// Registers a node or updates its registration (`info` already validated).
// A new node is standalone with generation 1. A different engine is refused
// while the node is in a group, and so is a stack change that would put a
// MongoDB group across stacks. The same info again changes nothing.
absl::StatusOr<Decision> PlanRegister(const ControllerState& state, const NodeInfo& info,
                                      const PlanContext& context);

// `replication enable --master M --slave S` and `slave add S --master M`.
absl::StatusOr<Decision> PlanEnable(const ControllerState& state, const std::string& master,
                                    const std::string& slave, std::optional<bool> auto_resync,
                                    const PlanContext& context);

// `replication disable --master M`: M and its slaves become standalone.
absl::StatusOr<Decision> PlanDisable(const ControllerState& state, const std::string& master,
                                     const PlanContext& context);

// `slave remove S`: S becomes standalone; its master stays a master.
absl::StatusOr<Decision> PlanRemoveSlave(const ControllerState& state, const std::string& slave,
                                         const PlanContext& context);

// `resync S`: S gets a new, never used resync token (a full copy).
absl::StatusOr<Decision> PlanResync(const ControllerState& state, const std::string& slave,
                                    const PlanContext& context);

// `promote N [--force]`. N must be a slave holding a full copy, M its
// master.
//  - plain: M's agent must answer (else FailedPrecondition, suggesting
//    --force). Phase 1 publishes M fenced and records the switchover with
//    a deadline (switchover_timeout); phase 2 (PlanReport) makes N the
//    master once M's agent reports the fence and its position (N replays
//    it before it becomes writable), and M and the other slaves its slaves,
//    rejoining in place first. PlanTick aborts phase 1 at the deadline.
//  - --force, M's agent silent for agent_timeout (counted from the
//    controller's start at the earliest): N takes over at once; M and the other
//    slaves become its slaves, rebuilt by full copies (they may hold writes
//    N lacks; the old data is kept aside). M's published target revokes
//    its writability at once (desired.h), whatever the bootstrap queue.
//  - --force, M's agent heard lately (answering, or reconnecting): M is
//    fenced first (phase 1, marked forced): the switchover completes as a
//    plain one when M reports the fence, or without the fence once M's
//    agent has been silent for agent_timeout.
// A switchover in progress in the group refuses a plain promote; --force
// overrides it. Switchovers of other groups never matter.
absl::StatusOr<Decision> PlanPromote(const ControllerState& state, const std::string& node,
                                     bool force, const PlanContext& context);

// The passing of time: a forced switchover whose old master's agent went
// silent takes over without the fence; a switchover whose fence was not
// reported by its deadline is aborted (the old master unfenced, the reason
// recorded on the group and in an event). Never an error.
Decision PlanTick(const ControllerState& state, const PlanContext& context);

// `adopt N`: N's agent holds its role against this controller (its last
// report says why: a state of another cluster id, or generations that went
// back). N's desired state, as this controller has it, gets a generation
// above the one the agent holds and is sent with `adopt` until the agent
// reports it took it. FailedPrecondition when N's agent has not reported a
// hold since the controller started.
absl::StatusOr<Decision> PlanAdopt(const ControllerState& state, const std::string& node,
                                   const PlanContext& context);

// An agent's report: records one "step" event per step outcome, and decides
// what the report allows: an event when the agent starts holding its role
// against the controller, the end of an adoption, the old master of a switchover reported its
// fence (phase 2), a slave converged on its copy (seeded: the next queued
// slave of its group may start), a slave out of sync under the auto_resync
// policy (an automatic resync). `context.agents` holds the liveness before
// this report. NotFound for an unknown node.
absl::StatusOr<Decision> PlanReport(const ControllerState& state, const std::string& node_id,
                                    const ObservedState& observed,
                                    const std::vector<StepEvent>& events,
                                    const PlanContext& context);

// ---- Queries shared by the registry's views.

// The auto_resync policy of `record`'s group in `state`.
bool GroupAutoResync(const ControllerState& state, const NodeRecord& record,
                     const PlannerOptions& options);

// The switchover in progress in `record`'s group, described
// ("promote db2: fencing db1 for 4 s (aborted after 30 s)"); "" when none.
std::string DescribeSwitchover(const ControllerState& state, const NodeRecord& record,
                               absl::Time now);

// Why the last switchover of `record`'s group was aborted ("" if it was
// not, or the group changed since).
std::string SwitchoverAborted(const ControllerState& state, const NodeRecord& record);

}  // namespace tandem

#endif  // TANDEM_CONTROLLER_GROUP_PLANNER_H_

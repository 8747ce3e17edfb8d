// Desired-state computation: pure functions of the controller's state.
//
// No I/O, no clock, no locking; deterministic. The registry calls
// RecomputeDesired() after every change of intent or registration.
#ifndef TANDEM_CONTROLLER_DESIRED_H_
#define TANDEM_CONTROLLER_DESIRED_H_

#include <cstddef>
#include <set>
#include <string>
#include <vector>

#include "common/types.h"
#include "controller/state.h"

namespace tandem {

// How the desired states of a group are released.
struct DesiredPolicy {
  // At most this many slaves of one master bootstrap (copy its data) at a
  // time; the others are queued. 0: no limit.
  size_t bootstraps_per_group = 1;
};

// The slaves whose new target is held back: per master, the unseeded slaves
// (NodeRecord::seeded false) in (queue_seq, id) order after the first
// `bootstraps_per_group`. A queued node that was already published as a
// slave of that master keeps that target (a queued resync keeps
// streaming); any other queued node (an old master after a switchover, a
// standalone being added) is published at once as a queued slave of its
// master (DesiredState::queued: only fenced, no token), so that nothing
// the queue holds back stays writable. The group's lists (the master's
// slaves, the env vars) leave queued nodes out unless they stream already.
std::set<std::string> QueuedSlaves(const ControllerState& state, const DesiredPolicy& policy);

// Whether a slave's published desired state already makes it a streaming
// slave of the master its record names (not a queued placeholder).
bool PublishedInGroup(const NodeRecord& record);

// Whether `record` is queued (`queued` from QueuedSlaves): its published
// target is not the controller's decision for it (sent as
// DesiredState::superseded).
bool Superseded(const NodeRecord& record, const std::set<std::string>& queued);

// The address of `target` as reachable from a node in `from_stack`: the
// internal address within a stack; between stacks the external one, or the
// internal one when the target has no external address.
std::string ReachableAddress(const NodeInfo& target, const std::string& from_stack);

// The env file of `node` (DESIGN.md "Environment variables"), E being
// EnvPrefix(engine). Every key is always present, possibly empty:
//   E_ADDRESS, E_ADDRESS_INT, E_ADDRESS_EXT, E_PORT,
//   E_SLAVE_ADDRESSES, E_SLAVE_ADDRESSES_INT, E_SLAVE_ADDRESSES_EXT,
//   TANDEM_ROLE.
// With a group master M (the node itself when it is a master, its upstream
// when it is a slave) the E_ADDRESS* and E_PORT keys describe M and the
// slave lists describe M's slaves, sorted by id. A slave whose port differs
// from M's is written "host:port" ("[v6]:port" for an IPv6 address). A slave
// without an external address contributes nothing to E_SLAVE_ADDRESSES_EXT
// (so that list only ever holds external addresses). A standalone node
// describes itself and has empty slave lists.
EnvMap ComputeEnv(const ControllerState& state, const NodeRecord& node,
                  const DesiredPolicy& policy = {});

// The desired state of `node` (generation 0; upstream_data_bytes 0: the
// service fills it when sending). A slave gets its upstream as a Peer whose
// host is the master's ReachableAddress from the slave's stack; a master
// gets one Peer per slave, sorted by id, with hosts as reachable from the
// master's stack.
DesiredState ComputeDesired(const ControllerState& state, const NodeRecord& node,
                            const DesiredPolicy& policy = {});

// Recomputes the desired state of every node but the queued ones. A node
// whose target changed (DesiredState::SameTarget) gets generation + 1 (1 for
// a node that had no desired state yet); the others keep theirs. Returns the
// ids of the nodes whose desired state changed, sorted.
std::vector<std::string> RecomputeDesired(ControllerState* state, const DesiredPolicy& policy = {});

// One-word-ish summary of a target: "standalone", "slave of db1",
// "master of db2,db3", "master (no slaves)".
std::string DescribeTarget(const DesiredState& desired);

// What changed from `before` (nullptr: a new node) to `after`:
// "standalone -> slave of db1", "new node -> standalone", or for a target
// whose summary is unchanged "slave of db1: resync requested",
// "master of db2: slave addresses changed", ...
std::string DescribeChange(const DesiredState* before, const DesiredState& after);

}  // namespace tandem

#endif  // TANDEM_CONTROLLER_DESIRED_H_

// The controller's state as plain values: what the store persists and what
// the registry mutates. No I/O, no locking; see registry.h for the
// thread-safe owner and store.h for persistence.
#ifndef TANDEM_CONTROLLER_STATE_H_
#define TANDEM_CONTROLLER_STATE_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>

#include "common/types.h"

namespace tandem {

// One entry of the controller's history (`tandemctl events`).
struct Event {
  uint64_t seq = 0;      // global, strictly increasing, never reused
  double unix_time = 0;  // seconds since the epoch
  std::string node;
  std::string kind;  // kEventDesired or kEventStep
  std::string message;
  bool ok = true;
  uint64_t generation = 0;  // the desired generation the event belongs to
  double seconds = 0;       // step duration (0 for desired events)

  bool operator==(const Event&) const = default;
};

inline constexpr char kEventDesired[] = "desired";
inline constexpr char kEventStep[] = "step";

// A node as the controller persists it.
struct NodeRecord {
  NodeInfo info;
  // The operator's intent: the role asked for, the master of a slave, and
  // the resync token of a slave (empty for masters and standalone nodes).
  Role role = Role::kStandalone;
  std::string upstream_id;
  std::string resync_token;
  // A slave's bootstrap order: the resync counter when its copy was asked
  // for (enable or resync). `seeded` once its agent converged on that copy;
  // unseeded slaves beyond the per-group limit are queued (desired.h).
  uint64_t queue_seq = 0;
  bool seeded = false;
  // Switchover (promote): a master fenced while its slave catches up, and
  // the position a promoted master replays before it becomes writable.
  bool fenced = false;
  std::string catch_up_position;
  // The copy asked for with resync_token may first try the engine's cheap
  // path (a follower of a fenced switchover, an automatic resync).
  bool rejoin_first = false;
  // The group's last switchover that was aborted, and why (on the group's
  // master; "" when none). Shown until the next operator change of the
  // group, so that `promote` and `wait` can say why.
  std::string switchover_aborted;
  // `tandemctl adopt`: the node's agent held its role against this
  // controller; the desired state is sent with `adopt` until the agent
  // reports it took it.
  bool adopting = false;
  // A master's group policy: resync out-of-sync slaves without an
  // operator (nullopt: the controller's default, controller.yaml
  // auto_resync).
  std::optional<bool> auto_resync;
  // When the controller last resynced this node by itself (Unix seconds; 0:
  // never), to space automatic resyncs out.
  double auto_resync_time = 0;
  // The desired state last published for the node, with its generation. It
  // is a function of every record's intent and info (see desired.h); it is
  // kept so that a generation is bumped only when the target really changes,
  // also across restarts and upgrades.
  DesiredState desired;

  bool operator==(const NodeRecord& other) const {
    return info == other.info && role == other.role && upstream_id == other.upstream_id &&
           resync_token == other.resync_token && queue_seq == other.queue_seq &&
           seeded == other.seeded && fenced == other.fenced &&
           catch_up_position == other.catch_up_position &&
           rejoin_first == other.rejoin_first && auto_resync_time == other.auto_resync_time &&
           auto_resync == other.auto_resync && switchover_aborted == other.switchover_aborted &&
           adopting == other.adopting &&
           desired.generation == other.desired.generation &&
           desired.SameTarget(other.desired);
  }
};

// A switchover in progress (`promote`), phase 1: the group's old master is
// being fenced.
struct Switchover {
  std::string promoted;  // the slave that takes over
  // promote --force while the old master's agent answered: it is fenced
  // first, and taken over without the fence if its agent stops answering.
  bool force = false;
  double started = 0;   // Unix seconds
  double deadline = 0;  // Unix seconds: aborted when not fenced by then

  bool operator==(const Switchover&) const = default;
};

// Everything that survives a restart of the controller.
struct ControllerState {
  // Made when the data dir is first used; sent with every desired state,
  // so that agents recognise a controller whose data dir was replaced.
  std::string cluster_id;
  std::map<std::string, NodeRecord> nodes;  // by node id
  std::deque<Event> events;                 // oldest first, bounded
  uint64_t next_event_seq = 1;
  uint64_t resync_counter = 0;  // makes every resync token unique
  // The switchovers in progress, by the id of the group's old master. Other
  // groups are never held up by them.
  std::map<std::string, Switchover> switchovers;

  bool operator==(const ControllerState&) const = default;
};

}  // namespace tandem

#endif  // TANDEM_CONTROLLER_STATE_H_

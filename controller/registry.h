// The registry: every node the controller knows, the operator's intent for
// it, its desired state (with generation) and its last observed state.
//
// Each change operation validates its request and either refuses it with a
// precise status, changing nothing, or applies it atomically: the desired
// state of every node is recomputed (desired.h), a node's generation is
// bumped only when its target changed, one "desired" event is recorded per
// such node, the whole state is saved to the store, and only then is the
// change visible to readers and waiters. If the save fails the operation
// returns that error and nothing changed.
//
// Status codes of the change operations:
//   InvalidArgument    the request itself is malformed (empty id, bad port,
//                      a node as its own upstream, ...).
//   NotFound           a named node is not registered ("unknown node db9").
//   FailedPrecondition the request conflicts with the current state (engines
//                      differ, a slave of a slave, a slave of another master...).
//   other              the store could not save; nothing changed.
//
// Thread-safety: every method may be called from any thread. One mutex
// guards the state; saves happen under it, so changes are saved in the order
// they are applied.
#ifndef TANDEM_CONTROLLER_REGISTRY_H_
#define TANDEM_CONTROLLER_REGISTRY_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/types.h"
#include "controller/desired.h"
#include "controller/state.h"
#include "controller/store.h"

namespace tandem {

struct RegistryOptions {
  // How many events are kept (oldest dropped first). At least 1.
  size_t events_keep = 2000;
  // How group members are released (bootstraps per group at a time).
  DesiredPolicy policy;
  // Resync a slave whose agent reports it out of sync without waiting for
  // an operator (cheap path first), at most once per interval per node.
  bool auto_resync = false;
  absl::Duration auto_resync_interval = absl::Minutes(5);
  // The clock for event times and report ages.
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

// A node as the operator sees it (ListNodes / GetNode).
struct NodeView {
  NodeInfo info;
  DesiredState desired;                   // upstream_data_bytes filled in
  std::optional<ObservedState> observed;  // nullopt: no report since start-up
  bool converged = false;  // agent connected and reporting, converged_generation == desired generation
  std::string upstream_id;                // desired upstream of a slave
  bool agent_connected = false;           // a Watch stream is open
  double seconds_since_report = -1;       // -1: never reported
  bool queued = false;                    // a slave waiting for its turn to bootstrap
  bool auto_resync = false;  // the policy of the node's group (its own as a master)
};

// One line per node whose desired state changed, in node id order:
// "db2: standalone -> slave of db1 (generation 4)". Empty: nothing to change.
using Changes = std::vector<std::string>;

class Registry {
 public:
  // Loads the state from `store` (an empty registry when it holds none, in
  // which case the empty state is saved at once, so an unwritable store is
  // a start-up error). If this build computes a different target for a
  // node than the one saved, that node's generation is bumped. Errors: the
  // store's (DataLoss for a corrupt state, naming where it lives).
  static absl::StatusOr<std::unique_ptr<Registry>> Open(std::unique_ptr<Store> store,
                                                        RegistryOptions options = {});

  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // ---- Changes (see the status codes above).

  // Registers a node, or updates its registration. A new node becomes
  // standalone with generation 1. Changed addresses, port or stack update
  // the node and every node whose desired state depends on it. A different
  // engine is refused while the node is in a group, and so is a stack
  // change that would put a MongoDB group across stacks. Registering the
  // same info again changes nothing (and saves nothing).
  // Validation: id and stack non-empty, of letters, digits, '.', '_', '-'
  // (at most 128); engine known; port 1..65535; the internal address (and
  // the external one when given) an IP literal or a DNS host name
  // (CheckHostAddress: never an access-rule keyword, wildcard or range):
  // they end up in access rules, env files and comma-separated lists.
  absl::StatusOr<Changes> Register(const NodeInfo& info);

  // `replication enable --master M --slave S` and `slave add S --master M`:
  // M becomes (or stays) a master, S its slave with a fresh resync token (so
  // its data is always rebuilt from M). S is queued while another slave of
  // M bootstraps (RegistryOptions::policy). Refused: M == S; an unknown node;
  // engines that differ; MongoDB across stacks; M a slave; S a master that
  // has slaves; S a slave of another master. S already a slave of M: OK,
  // nothing to change.
  // `auto_resync` sets the group's policy (nullopt keeps it); for S already
  // a slave of M it is the only change.
  absl::StatusOr<Changes> EnableReplication(const std::string& master, const std::string& slave,
                                            std::optional<bool> auto_resync = std::nullopt);

  // `replication disable --master M`: M and all its slaves become
  // standalone. Refused unless M is a master.
  absl::StatusOr<Changes> DisableReplication(const std::string& master);

  // `slave remove S`: S becomes standalone; its master stays a master, even
  // with no slaves left. Refused unless S is a slave.
  absl::StatusOr<Changes> RemoveSlave(const std::string& slave);

  // `resync S`: S gets a new, never used resync token, which asks its agent
  // to rebuild it from a fresh copy of its master. Refused unless S is a
  // slave.
  absl::StatusOr<Changes> Resync(const std::string& slave);

  // `promote N` (a fenced switchover; PostgreSQL groups only so far): N
  // must be a slave holding a full copy. Phase 1 fences its master M (desired fenced; writes refused);
  // when M's agent reports the fence and its last position, phase 2 makes N
  // the master (it replays that position before it becomes writable) and M
  // and the other slaves its slaves, rebuilt one at a time. Other group
  // changes are refused meanwhile. `force`: M's agent is unreachable; skip
  // phase 1 (M is rebuilt as a slave when it returns and never becomes
  // writable by itself). Without force, M's agent must be connected.
  absl::StatusOr<Changes> Promote(const std::string& node, bool force);

  // ---- Agents.

  // Stores the node's observed state and report time (in memory only) and
  // records one "step" event per step outcome (saved, bounded). A slave
  // that reports having converged on its copy of the master's data becomes
  // seeded, which releases the next queued slave of its group. NotFound
  // for an unknown node; with events, a save error changes nothing.
  absl::Status Report(const std::string& node_id, const ObservedState& observed,
                      const std::vector<StepEvent>& events);

  // Counts the node's open Watch streams (agent_connected while > 0).
  void AgentConnected(const std::string& node_id);
  void AgentDisconnected(const std::string& node_id);

  // ---- Reads.

  absl::StatusOr<NodeView> GetNode(const std::string& node_id) const;
  std::vector<NodeView> ListNodes() const;  // sorted by id

  // The node's current desired state (upstream_data_bytes filled in from
  // the master's last report). NotFound for an unknown node.
  absl::StatusOr<DesiredState> Desired(const std::string& node_id) const;

  // Blocks until the node's generation exceeds `known_generation` or
  // `deadline` passes, then returns its current desired state (compare the
  // generation to tell which). NotFound for an unknown node; Unavailable
  // once Shutdown() was called.
  absl::StatusOr<DesiredState> WaitForDesired(const std::string& node_id, uint64_t known_generation,
                                              absl::Time deadline);

  // Events with seq > after_seq, oldest first, of `node` ("" for all).
  std::vector<Event> Events(uint64_t after_seq, const std::string& node) const;
  // Like Events(), but blocks until there is at least one, `deadline`
  // passes or Shutdown() is called (then possibly empty).
  std::vector<Event> WaitForEvents(uint64_t after_seq, const std::string& node,
                                   absl::Time deadline);

  // Wakes every waiter; later waits return at once. Changes still work.
  void Shutdown();
  bool IsShutdown() const;

  // A copy of the persisted part of the state (for tests and diagnostics).
  ControllerState Snapshot() const;

 private:
  struct Live {
    std::optional<ObservedState> observed;
    absl::Time last_report = absl::InfinitePast();
    int watchers = 0;
    // A report arrived since the agent last connected: an agent that just
    // restarted is not taken as converged on its predecessor's word.
    bool reported_since_connect = false;
  };

  Registry(std::unique_ptr<Store> store, RegistryOptions options);

  // Recomputes `next`, records events for the nodes whose desired state
  // changed, saves and installs it. No-op (and no save) when `next` equals
  // the current state after recomputation.
  absl::StatusOr<Changes> CommitLocked(ControllerState next, const std::string& cause)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AppendEventLocked(ControllerState* state, Event event) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<const NodeRecord*> FindLocked(const std::string& node_id) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  DesiredState DesiredLocked(const NodeRecord& record) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  NodeView ViewLocked(const NodeRecord& record, const std::set<std::string>& queued) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The auto_resync policy of `record`'s group in `state`.
  bool AutoResyncLocked(const ControllerState& state, const NodeRecord& record) const;
  std::vector<Event> EventsLocked(uint64_t after_seq, const std::string& node) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Asks for a fresh copy of its master's data on slave `node_id` in `next`:
  // a new, never used resync token, a place at the end of the bootstrap
  // queue, not seeded.
  // `rejoin_first`: the engine may try its cheap path before a full copy.
  void RequestCopyLocked(ControllerState* next, const std::string& node_id,
                         bool rejoin_first = false) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes slave `node` the master of its group in `next`: the old master
  // and the other slaves become its slaves (one at a time; with
  // `rejoin_first` they try the engine's cheap path before a full copy); it
  // replays `position` before becoming writable ("" : no wait).
  void SwitchMasterLocked(ControllerState* next, const std::string& node,
                          const std::string& position, bool rejoin_first) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RegistryOptions options_;
  mutable absl::Mutex mu_;
  absl::CondVar changed_;  // signalled on every installed change and on Shutdown
  std::unique_ptr<Store> store_ ABSL_GUARDED_BY(mu_);
  ControllerState state_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Live> live_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tandem

#endif  // TANDEM_CONTROLLER_REGISTRY_H_

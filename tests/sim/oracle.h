// The simulation's safety invariants, checked after every event:
//
//  1. Never two writable nodes in a group. A group is followed through its
//     masters (a lineage): a promoted slave continues its old master's
//     lineage. A node counts as a writer of the lineage it last mastered
//     while its server accepts writes and its agent holds a master target.
//     One exception, which is what --force means: an old master forced out
//     while its server still accepted writes (its agent hung or dead) is
//     excused until its agent has taken the desired state that revoked its
//     role (or a newer one) and then finished a pass. Desired states sent
//     before the takeover may still reach it first (read from its stream
//     when a hung agent resumes): they name it the master, and cannot be
//     told from fresh ones.
//  2. Without --force no write acknowledged by a group's master is lost:
//     whenever a node becomes writable as the master of a lineage, and once
//     the run has converged, it holds every write the lineage's masters
//     acknowledged. A forced takeover (or promote --force of a master still
//     replaying its old master's writes) starts the count again.
//  3. No agent holds its role against the controller (the simulation never
//     loses the controller's data dir: a hold would be a bug).
//
// Pure bookkeeping: the simulation tells it what happens.
#ifndef TANDEM_TESTS_SIM_ORACLE_H_
#define TANDEM_TESTS_SIM_ORACLE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "controller/state.h"
#include "tests/sim/sim_engine.h"

namespace tandem::sim {

using Millis = int64_t;

// What the oracle needs of one node besides its server.
struct NodeSight {
  Role held_role = Role::kUnspecified;  // the role its agent holds (persisted)
  std::string hold_reason;              // its agent's, "" when it follows
};

class Oracle {
 public:
  // The controller's state after a change (intents only are read).
  void OnControllerState(const ControllerState& state, const SimServers& servers, Millis now);
  // A write acknowledged by `node`'s server.
  void OnWrite(const std::string& node, uint64_t id);
  // `node`'s server became writable (MakeWritable). Returns a violation.
  std::optional<std::string> OnWritable(const std::string& node, const SimServers& servers);
  // `node`'s agent took a desired state of `generation` from the controller.
  void OnDelivered(const std::string& node, uint64_t generation);
  void OnPassStart(const std::string& node);
  void OnPassEnd(const std::string& node);
  void OnAgentRestart(const std::string& node);

  // Invariants 1 and 3 now. Returns the first violation.
  std::optional<std::string> Check(const SimServers& servers,
                                   const std::map<std::string, NodeSight>& nodes) const;
  // Invariant 2 for every lineage with a master, at the end.
  std::optional<std::string> CheckNoWriteLost(const SimServers& servers) const;

  // How many forced takeovers and acknowledged writes were seen.
  int forced_takeovers() const { return forced_takeovers_; }
  uint64_t acknowledged() const { return acknowledged_; }

 private:
  struct Lineage {
    std::vector<uint64_t> acked;  // since the last forced takeover
  };
  struct Excuse {
    uint64_t revoked = 0;     // the generation that revoked its role
    bool heard = false;       // its agent took that one (or a newer one)
    bool passing = false;     // a pass started after that
  };
  std::optional<std::string> MissingWrites(const std::string& node, int lineage,
                                           const SimServers& servers) const;

  std::map<std::string, Role> intent_;         // node -> role by the controller's intent
  std::map<std::string, std::string> upstream_;  // slave -> master by intent
  std::map<std::string, int> lineage_of_;      // node -> lineage it last mastered
  std::map<int, Lineage> lineages_;
  std::map<std::string, Excuse> excused_;
  std::set<std::string> catching_up_;  // masters still replaying their old master's writes
  int next_lineage_ = 1;
  int forced_takeovers_ = 0;
  uint64_t acknowledged_ = 0;
};

}  // namespace tandem::sim

#endif  // TANDEM_TESTS_SIM_ORACLE_H_

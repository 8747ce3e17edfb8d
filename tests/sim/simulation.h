// Deterministic simulation of a Tandem cluster (after FoundationDB's
// simulation testing and TigerBeetle's VOPR).
//
// What runs is the real code: the controller's Registry with its pure
// planner (controller/group_planner.h) on an in-memory store whose restarts
// go through the JSON format, and per node the agent's real Reconciler,
// planner, executor and DesiredStateStore, on a simulated server
// (tests/sim/sim_engine.h: writability, a write log with positions,
// replication with lag, fencing). One seeded scheduler drives everything
// in simulated time: the agents' passes, the Watch streams and Report
// calls between them and the controller, replication, a writer on every
// writable server, and, for the first part of the run, random faults (an
// agent killed at any step of a pass and restarted, a host crash, an agent
// hung with its connection open, Watch/Report messages lost, delayed or
// reordered, the controller killed and restarted from its persisted state,
// its clock jumping, replication lag) and random operator commands (enable,
// slave add/remove, promote, promote --force, disable, resync). Then the
// faults stop and every group must converge within a bounded simulated
// time. The invariants (tests/sim/oracle.h) are checked after every event.
//
// A run is a pure function of its seed (and of the build): the same seed
// replays the same run exactly.
#ifndef TANDEM_TESTS_SIM_SIMULATION_H_
#define TANDEM_TESTS_SIM_SIMULATION_H_

#include <cstdint>
#include <ostream>
#include <string>

namespace tandem::sim {

struct SimOptions {
  uint64_t seed = 1;
  // Every event, one line each (the replay of a failing seed).
  std::ostream* trace = nullptr;
};

struct SimResult {
  bool ok = true;
  std::string failure;      // the invariant broken, with what broke it
  int64_t failed_at_ms = 0; // simulated time of the failure
  uint64_t events = 0;      // events processed
  uint64_t digest = 0;      // of the run's events (same seed, same digest)
  int64_t end_ms = 0;       // simulated time when the run ended
  int nodes = 0;
  int operator_commands = 0;
  int faults = 0;
  int forced_takeovers = 0;
  uint64_t acknowledged_writes = 0;
};

SimResult Simulate(const SimOptions& options);

// The command line that replays `seed` exactly (with the trace).
std::string ReplayCommand(uint64_t seed);

}  // namespace tandem::sim

#endif  // TANDEM_TESTS_SIM_SIMULATION_H_

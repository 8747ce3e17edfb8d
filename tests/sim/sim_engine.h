// The simulated world's database servers and the agent's outside worlds on
// them: SimServers (every server: writability, a write log with positions,
// replication with lag, fencing), SimEngine (the Engine interface on one of
// them) and SimHost (the agent's records and env file), both behind a
// CrashGate that kills the agent process at any mutating call.
//
// Deterministic; no I/O, no clock. Used by the simulation only.
#ifndef TANDEM_TESTS_SIM_SIM_ENGINE_H_
#define TANDEM_TESTS_SIM_SIM_ENGINE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "agent/fakes.h"
#include "agent/host.h"
#include "engines/engine.h"

namespace tandem::sim {

// One database server.
struct SimServer {
  std::string id;
  bool running = true;
  bool is_slave = false;
  std::string upstream;    // the node id it replicates from ("" : none)
  bool fenced = false;     // refuses writes; kept across restarts (ALTER SYSTEM)
  std::vector<uint64_t> log;  // write ids in order; the position is its size
  std::string data_id;     // identity of the data set (a copy keeps its source's)
  std::vector<std::string> served;  // slave ids it serves, sorted
  int moved_aside = 0;     // data sets kept aside by full copies

  bool Writable() const { return running && !is_slave && !fenced; }
};

// Every server of the world, by node id.
class SimServers {
 public:
  std::map<std::string, SimServer> servers;
  std::set<std::string> paused;  // slaves whose replication is held back (lag)

  SimServer& at(const std::string& id) { return servers.at(id); }
  const SimServer* Find(const std::string& id) const;

  // A running slave streams when its upstream runs, is not itself a slave,
  // serves it, and its log is a prefix of the upstream's.
  bool Streaming(const SimServer& server) const;
  // Why a slave can no longer follow by itself ("" : it can).
  std::string OutOfSync(const SimServer& server) const;
  // One replication round: every streaming slave that is not paused applies
  // up to `max_entries` more of its upstream's log.
  void Replicate(size_t max_entries);
};

// The agent process dies at its `ArmAt`-th mutating call (0: the next one):
// that call and every later one do nothing and fail.
class CrashGate {
 public:
  void ArmAt(int call) { countdown_ = call; }
  void Reset() {
    countdown_ = -1;
    dead_ = false;
  }
  // Called before each mutating call: true when the process is dead.
  bool Dead() {
    if (dead_) return true;
    if (countdown_ == 0) {
      dead_ = true;
      return true;
    }
    if (countdown_ > 0) --countdown_;
    return false;
  }
  bool dead() const { return dead_; }

 private:
  int countdown_ = -1;
  bool dead_ = false;
};

// The Engine on server `id`. `on_writable` is told when a server becomes
// writable through MakeWritable (the simulation checks what it holds).
class SimEngine : public Engine {
 public:
  SimEngine(SimServers* world, std::string id, CrashGate* gate,
            std::function<void(const std::string&)> on_writable)
      : world_(world), id_(std::move(id)), gate_(gate), on_writable_(std::move(on_writable)) {}

  EngineType type() const override { return EngineType::kPostgresql; }
  absl::StatusOr<EngineFacts> Observe() override;
  absl::Status Start() override;
  absl::Status Stop() override;
  absl::Status Fence() override;
  absl::Status ServeSlaves(const std::vector<Peer>& slaves) override;
  absl::StatusOr<std::string> Bootstrap(const Peer& self, const Peer& upstream,
                                        const ProgressFn& progress) override;
  absl::Status Follow(const Peer& self, const Peer& upstream) override;
  absl::Status MakeWritable() override;
  std::string DataParentDir() const override { return "/data"; }
  absl::StatusOr<std::string> Rejoin(const Peer& self, const Peer& upstream) override;
  absl::StatusOr<bool> HasReplayed(const std::string& position) override;

 private:
  SimServer& self() { return world_->at(id_); }
  // Unavailable when the process died at this call.
  absl::Status Gate();
  // Unavailable unless `upstream` runs and serves this node.
  absl::Status UpstreamServesMe(const Peer& upstream) const;

  SimServers* world_;
  std::string id_;
  CrashGate* gate_;
  std::function<void(const std::string&)> on_writable_;
};

// The agent's host: its records and env file survive the agent (the facts
// live in the simulation's node); mutations go through the gate.
class SimHost : public Host {
 public:
  SimHost(FakeHost* disk, CrashGate* gate) : disk_(disk), gate_(gate) {}

  absl::StatusOr<HostFacts> Observe() override { return disk_->Observe(); }
  absl::Status RecordRole(Role role) override;
  absl::Status RecordBootstrap(const BootstrapRecord& record) override;
  absl::Status WriteEnv(const EnvMap& env) override;
  absl::StatusOr<uint64_t> FreeDiskBytes(const std::string& dir) override {
    return disk_->FreeDiskBytes(dir);
  }

 private:
  FakeHost* disk_;
  CrashGate* gate_;
};

}  // namespace tandem::sim

#endif  // TANDEM_TESTS_SIM_SIM_ENGINE_H_

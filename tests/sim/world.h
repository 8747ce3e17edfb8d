// The simulation's world: the scheduler, the controller and the agents
// (world.cc), the links between them (links.cc), and what perturbs them:
// faults and the operator (chaos.cc). Internal to tests/sim; see
// simulation.h.
#ifndef TANDEM_TESTS_SIM_WORLD_H_
#define TANDEM_TESTS_SIM_WORLD_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/clock.h"
#include "agent/desired_store.h"
#include "agent/fakes.h"
#include "agent/reconciler.h"
#include "controller/registry.h"
#include "controller/store.h"
#include "tests/sim/oracle.h"
#include "tests/sim/sim_engine.h"
#include "tests/sim/simulation.h"

namespace tandem::sim {

inline constexpr Millis kPassInterval = 2000;
inline constexpr Millis kMaxPassBackoff = 30000;
inline constexpr Millis kHeartbeat = 5000;       // reports at least this often
inline constexpr Millis kReportDeadline = 5000;  // a Report call gives up then
inline constexpr Millis kTick = 1000;            // the controller's clock
inline constexpr Millis kReplicationEvery = 200;
inline constexpr Millis kWriteEvery = 300;
inline constexpr Millis kConvergenceBound = 600000;  // after the faults stop

// "master", "slave", "standalone", "-".
inline const char* RoleWord(Role role) {
  switch (role) {
    case Role::kMaster: return "master";
    case Role::kSlave: return "slave";
    case Role::kStandalone: return "standalone";
    default: return "-";
  }
}

// The agent's clock: simulated time, plus what the running pass has slept.
class SimClock : public Clock {
 public:
  explicit SimClock(const Millis* now) : now_(now) {}
  std::chrono::steady_clock::time_point Now() override {
    return std::chrono::steady_clock::time_point(std::chrono::milliseconds(*now_ + slept_));
  }
  void SleepFor(std::chrono::milliseconds d) override { slept_ += d.count(); }
  Millis slept() const { return slept_; }
  void NewPass() { slept_ = 0; }

 private:
  const Millis* now_;
  Millis slept_ = 0;
};

// The controller's store: the last saved state in memory; a restart reads
// it back through the JSON format (so that what is not persisted is lost,
// as it would be).
class SimStore : public Store {
 public:
  explicit SimStore(std::shared_ptr<std::optional<ControllerState>> saved)
      : saved_(std::move(saved)) {}
  absl::StatusOr<std::optional<ControllerState>> Load() override;
  absl::Status Save(const ControllerState& state) override {
    *saved_ = state;
    return absl::OkStatus();
  }
  std::string Location() const override { return "simulated data dir"; }

 private:
  std::shared_ptr<std::optional<ControllerState>> saved_;
};

class World {
 public:
  explicit World(const SimOptions& options);
  SimResult Run();

 private:
  // ---- One agent process (a new one after each restart).
  struct Process : public ObservedSink {
    World* world = nullptr;
    std::string node;
    int incarnation = 0;
    std::string instance;
    CrashGate gate;
    std::unique_ptr<SimClock> clock;
    std::unique_ptr<SimEngine> engine;
    std::unique_ptr<SimHost> host;
    std::unique_ptr<DesiredStateStore> store;
    std::unique_ptr<Reconciler> reconciler;
    void Publish(const ObservedState& observed, std::vector<StepEvent> events) override;
  };
  struct Node {
    std::string id;
    NodeInfo info;
    FakeHost disk;               // the agent's records and env file
    DesiredState persisted;      // the agent's desired.pb
    bool host_up = true;
    std::unique_ptr<Process> agent;  // null: not running
    bool hung = false;
    std::vector<DesiredState> buffered;  // stream messages a hung agent will read
    // The link to the controller.
    bool connected = false;
    uint64_t stream_epoch = 0;  // the agent reads only its current stream
    Millis backoff = 250;
    // Reports, one call at a time like the agent's report loop.
    std::optional<ObservedState> observed;
    std::vector<StepEvent> events;
    bool report_due = false;
    bool in_flight = false;
    Millis last_sent = -100000;
    // Passes.
    uint64_t pass_token = 0;
    Millis busy_until = 0;
    Millis pass_backoff = 500;
  };
  // A Watch stream as the controller holds it.
  struct Stream {
    std::string instance;
    int incarnation = 0;
    uint64_t epoch = 0;
    uint64_t sent = 0;
    Millis last_delivery = 0;
    bool orphan = false;  // its host died: nobody reads it, nobody closes it
  };
  struct Item {
    Millis at;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Item& other) const {
      return at != other.at ? at > other.at : seq > other.seq;
    }
  };

  // ---- Scheduling, randomness, tracing (world.cc).
  void At(Millis at, std::function<void()> fn);
  void After(Millis delay, std::function<void()> fn) { At(now_ + delay, std::move(fn)); }
  int64_t Uniform(int64_t lo, int64_t hi);  // inclusive
  bool Chance(double p);
  template <typename... Args>
  void Trace(const Args&... args) {
    if (options_.trace != nullptr) TraceLine(absl::StrCat(args...));
  }
  void TraceLine(const std::string& line);
  void Mix(uint64_t value);  // into the digest
  void Fail(const std::string& why);
  bool faults_on() const { return now_ < fault_end_; }
  Millis NetDelay();
  bool Lost(bool report);

  // ---- The controller (world.cc).
  absl::Time ControllerTime() const;
  void StartController();
  void CrashController();
  void ControllerChanged();  // the oracle sees it; streams push what is new
  void Push(const std::string& node);
  void Tick();

  // ---- The agents (world.cc) and their links (links.cc).
  void StartAgent(Node& node);
  void KillAgent(Node& node, bool host_crash);
  void SchedulePass(Node& node, Millis at);
  void RunPass(Node& node, uint64_t token);
  void Connect(Node& node, int incarnation);
  void Deliver(Node& node, int incarnation, uint64_t epoch, const DesiredState& desired);
  void StreamBroken(const std::string& node, const std::string& instance, int incarnation);
  void SendReport(Node& node, int incarnation);
  void Heartbeat(Node& node);
  void Unhang(Node& node);
  void OnWritable(const std::string& node);

  // ---- Faults and the operator (chaos.cc).
  void ScheduleFault();
  void InjectFault();
  void ScheduleOperator();
  void Operate();
  void Heal();  // the faults stop
  std::vector<std::string> Intent(Role role) const;  // node ids by intent

  // ---- Invariants (world.cc).
  void Check();
  bool Converged(std::string* why);

  const SimOptions options_;
  std::mt19937_64 rng_;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue_;
  Millis now_ = 0;
  uint64_t seq_ = 0;
  SimResult result_;
  bool failed_ = false;
  Millis fault_end_ = 0;
  Millis deadline_ = 0;

  // The world.
  SimServers servers_;
  std::map<std::string, Node> nodes_;
  uint64_t next_write_ = 1;
  int next_incarnation_ = 1;
  int storm_until_ = 0;  // network storm until (ms)

  // The controller.
  RegistryOptions registry_options_;
  std::shared_ptr<std::optional<ControllerState>> saved_;
  std::unique_ptr<Registry> registry_;
  Millis clock_offset_ = 0;
  std::map<std::string, Stream> streams_;
  uint64_t last_event_seq_ = 0;
  int next_cluster_ = 1;

  Oracle oracle_;
};

}  // namespace tandem::sim

#endif  // TANDEM_TESTS_SIM_WORLD_H_

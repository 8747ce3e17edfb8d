// In-memory fakes of the agent's outside worlds, for the planner, executor
// and reconciler tests: FakeEngine (a small model of a database server),
// FaultInjectingEngine (fails the Nth mutating call), FakeHost, FakeClock.
#ifndef TANDEM_AGENT_FAKES_H_
#define TANDEM_AGENT_FAKES_H_

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/clock.h"
#include "agent/host.h"
#include "engines/engine.h"

namespace tandem {

// A database server model. Writable = running, not a slave, not fenced.
class FakeEngine : public Engine {
 public:
  bool running = true;
  bool has_data = true;
  bool is_slave = false;
  bool fenced = false;
  bool link_up = true;  // a slave's link comes up when it runs
  std::string upstream;
  std::string data_id = "own-data";
  std::vector<std::string> served;
  uint64_t replayed = 100;  // position applied so far (positions are numbers here)
  int moved_aside = 0;    // old data directories kept by Bootstrap
  int bootstraps = 0;
  bool can_rejoin = false;   // Rejoin succeeds (else FailedPrecondition)
  int rejoins = 0;
  std::string out_of_sync;   // reported while a slave
  std::vector<std::string> calls;

  EngineType type() const override { return EngineType::kPostgresql; }

  absl::StatusOr<EngineFacts> Observe() override {
    EngineFacts f;
    f.running = running;
    f.has_data = has_data;
    f.is_slave = is_slave;
    f.writable = running && !is_slave && !fenced;
    f.upstream = upstream;
    f.streaming = running && is_slave && link_up && !upstream.empty();
    f.lag_bytes = f.streaming ? 0 : -1;
    f.data_bytes = 1000;
    f.data_id = data_id;
    if (is_slave) f.out_of_sync = out_of_sync;
    if (running) f.served_slaves = served;
    return f;
  }
  absl::Status Start() override {
    calls.push_back("start");
    running = true;
    return absl::OkStatus();
  }
  absl::Status Stop() override {
    calls.push_back("stop");
    running = false;
    return absl::OkStatus();
  }
  absl::Status Fence() override {
    calls.push_back("fence");
    if (!is_slave) fenced = true;  // a stopped server comes up fenced
    return absl::OkStatus();
  }
  absl::Status ServeSlaves(const std::vector<Peer>& slaves) override {
    calls.push_back("serve-slaves");
    if (!running) return absl::UnavailableError("not running");
    served.clear();
    for (const Peer& p : slaves) served.push_back(p.id);
    std::sort(served.begin(), served.end());
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Bootstrap(const Peer& /*self*/, const Peer& up,
                                        const ProgressFn& progress) override {
    calls.push_back("bootstrap");
    ++bootstraps;
    if (has_data) ++moved_aside;
    progress(500, 1000);
    progress(1000, 1000);
    running = false;
    has_data = true;
    is_slave = true;
    fenced = false;
    served.clear();
    upstream = absl::StrCat(up.host, ":", up.port);
    data_id = "data-of-" + up.id;
    return data_id;
  }
  absl::StatusOr<std::string> Rejoin(const Peer& /*self*/, const Peer& up) override {
    calls.push_back("rejoin");
    if (!can_rejoin) return absl::FailedPreconditionError("diverged too far");
    ++rejoins;
    is_slave = true;
    fenced = false;
    served.clear();
    out_of_sync.clear();
    upstream = absl::StrCat(up.host, ":", up.port);
    return data_id;
  }
  absl::Status Follow(const Peer& /*self*/, const Peer& up) override {
    calls.push_back("follow");
    if (!is_slave) return absl::FailedPreconditionError("writable server cannot follow");
    upstream = absl::StrCat(up.host, ":", up.port);
    return absl::OkStatus();
  }
  absl::Status MakeWritable() override {
    calls.push_back("make-writable");
    if (!running) return absl::UnavailableError("not running");
    is_slave = false;
    fenced = false;
    upstream.clear();
    return absl::OkStatus();
  }
  std::string DataParentDir() const override { return "/data"; }
  absl::StatusOr<bool> HasReplayed(const std::string& position) override {
    calls.push_back("has-replayed");
    return replayed >= std::stoull(position);
  }
};

// Fails the Nth (0-based) mutating call with `status`, once.
class FaultInjectingEngine : public Engine {
 public:
  FaultInjectingEngine(Engine* inner, int fail_at, absl::Status status)
      : inner_(inner), fail_at_(fail_at), status_(std::move(status)) {}

  EngineType type() const override { return inner_->type(); }
  absl::StatusOr<EngineFacts> Observe() override { return inner_->Observe(); }
  absl::Status Start() override { return Gate() ? status_ : inner_->Start(); }
  absl::Status Stop() override { return Gate() ? status_ : inner_->Stop(); }
  absl::Status Fence() override { return Gate() ? status_ : inner_->Fence(); }
  absl::Status ServeSlaves(const std::vector<Peer>& s) override {
    return Gate() ? status_ : inner_->ServeSlaves(s);
  }
  absl::StatusOr<std::string> Bootstrap(const Peer& self, const Peer& up,
                                        const ProgressFn& p) override {
    if (Gate()) return status_;
    return inner_->Bootstrap(self, up, p);
  }
  absl::StatusOr<std::string> Rejoin(const Peer& self, const Peer& up) override {
    if (Gate()) return status_;
    return inner_->Rejoin(self, up);
  }
  absl::Status Follow(const Peer& self, const Peer& up) override {
    return Gate() ? status_ : inner_->Follow(self, up);
  }
  absl::Status MakeWritable() override { return Gate() ? status_ : inner_->MakeWritable(); }
  std::string DataParentDir() const override { return inner_->DataParentDir(); }
  absl::StatusOr<bool> HasReplayed(const std::string& position) override {
    return inner_->HasReplayed(position);
  }

  bool fired() const { return calls_ > fail_at_; }

 private:
  bool Gate() { return calls_++ == fail_at_; }

  Engine* inner_;
  int fail_at_;
  int calls_ = 0;
  absl::Status status_;
};

class FakeHost : public Host {
 public:
  HostFacts facts;
  uint64_t free_bytes = 1ull << 40;
  int hook_runs = 0;
  bool hook_fails = false;

  absl::StatusOr<HostFacts> Observe() override { return facts; }
  absl::Status RecordRole(Role role) override {
    facts.recorded_role = role;
    return absl::OkStatus();
  }
  absl::Status RecordBootstrap(const BootstrapRecord& record) override {
    facts.bootstrap = record;
    return absl::OkStatus();
  }
  absl::Status WriteEnv(const EnvMap& env) override {
    if (facts.env_file_exists && facts.env == env && !facts.hook_pending) return absl::OkStatus();
    facts.env = env;
    facts.env_file_exists = true;
    facts.hook_pending = true;
    ++hook_runs;
    if (hook_fails) return absl::InternalError("env hook exited with 1");
    facts.hook_pending = false;
    return absl::OkStatus();
  }
  absl::StatusOr<uint64_t> FreeDiskBytes(const std::string&) override { return free_bytes; }
};

// Time moves only when someone sleeps.
class FakeClock : public Clock {
 public:
  std::chrono::steady_clock::time_point now{};
  std::chrono::steady_clock::time_point Now() override { return now; }
  void SleepFor(std::chrono::milliseconds d) override { now += d; }
};

}  // namespace tandem

#endif  // TANDEM_AGENT_FAKES_H_

#include "tests/sim/world.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/test_hooks.h"

namespace tandem::sim {

absl::StatusOr<std::optional<ControllerState>> SimStore::Load() {
  if (!saved_->has_value()) return std::nullopt;
  absl::StatusOr<ControllerState> state = ParseState(SerializeState(**saved_));
  if (!state.ok()) return state.status();
  return std::optional<ControllerState>(*std::move(state));
}

World::World(const SimOptions& options)
    : options_(options), rng_(options.seed), saved_(std::make_shared<std::optional<ControllerState>>()) {}

// ------------------------------------------------------------- scheduling

void World::At(Millis at, std::function<void()> fn) {
  queue_.push(Item{std::max(at, now_), seq_++, std::move(fn)});
}

int64_t World::Uniform(int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(rng_() % static_cast<uint64_t>(hi - lo + 1));
}

bool World::Chance(double p) { return static_cast<double>(rng_() % 1000000) < p * 1000000; }

void World::TraceLine(const std::string& line) {
  *options_.trace << absl::StrFormat("%9.3f ", static_cast<double>(now_) / 1000) << line << "\n";
}

void World::Mix(uint64_t value) {
  result_.digest = (result_.digest ^ value) * 1099511628211ull;
}

void World::Fail(const std::string& why) {
  if (failed_) return;
  failed_ = true;
  result_.ok = false;
  result_.failure = why;
  result_.failed_at_ms = now_;
  Trace("INVARIANT BROKEN: ", why);
}

Millis World::NetDelay() {
  if (now_ < storm_until_) return Uniform(1, Chance(0.3) ? 8000 : 500);
  return Uniform(1, 30);
}

bool World::Lost(bool report) {
  if (now_ >= storm_until_) return false;
  return Chance(report ? 0.2 : 0.1);
}

// ------------------------------------------------------------------- run

SimResult World::Run() {
  SetLogQuiet(true);
  const int count = static_cast<int>(Uniform(3, 5));
  result_.nodes = count;
  registry_options_.events_keep = 64;
  const int per_group = static_cast<int>(Uniform(0, 3));
  registry_options_.policy.bootstraps_per_group = per_group == 3 ? 1 : per_group;
  registry_options_.auto_resync = true;
  registry_options_.auto_resync_interval = absl::Seconds(20);
  registry_options_.switchover_timeout = absl::Seconds(Uniform(5, 30));
  registry_options_.agent_timeout = absl::Seconds(15);
  registry_options_.now = [this] { return ControllerTime(); };
  registry_options_.new_cluster_id = [this] { return absl::StrCat("c-sim-", next_cluster_++); };
  fault_end_ = Uniform(60, 150) * 1000;
  deadline_ = fault_end_ + kConvergenceBound;
  Trace("seed ", options_.seed, ": ", count, " nodes, bootstraps_per_group ",
        registry_options_.policy.bootstraps_per_group, ", switchover_timeout ",
        absl::FormatDuration(registry_options_.switchover_timeout), ", faults until ",
        fault_end_ / 1000, " s");

  for (int i = 1; i <= count; ++i) {
    const std::string id = absl::StrCat("n", i);
    Node& node = nodes_[id];
    node.id = id;
    node.info.id = id;
    node.info.stack = "main";
    node.info.engine = EngineType::kPostgresql;
    node.info.addresses.internal = id;
    node.info.port = 5432;
    node.disk.facts.recorded_role = Role::kStandalone;
    SimServer& server = servers_.servers[id];
    server.id = id;
    server.data_id = absl::StrCat("sys-", id);
  }
  StartController();
  for (auto& [id, node] : nodes_) {
    Node* n = &node;
    After(Uniform(0, 200), [this, n] { StartAgent(*n); });
  }
  After(kTick, [this] { Tick(); });
  // Replication, writes and the controller's tick run for the whole run.
  std::function<void()> replicate;
  replicate = [this, &replicate] {
    servers_.Replicate(static_cast<size_t>(Uniform(1, 20)));
    Mix(7);
    After(kReplicationEvery, replicate);
  };
  After(kReplicationEvery, replicate);
  std::function<void()> write;
  write = [this, &write] {
    for (auto& [id, server] : servers_.servers) {
      if (!server.Writable()) continue;
      const uint64_t w = next_write_++;
      server.log.push_back(w);
      oracle_.OnWrite(id, w);
    }
    After(kWriteEvery, write);
  };
  After(kWriteEvery, write);
  ScheduleFault();
  ScheduleOperator();
  At(fault_end_, [this] { Heal(); });

  Millis next_convergence_check = fault_end_;
  while (!queue_.empty() && !failed_) {
    Item item = queue_.top();
    queue_.pop();
    now_ = item.at;
    Mix(static_cast<uint64_t>(now_));
    item.fn();
    ++result_.events;
    if (!failed_) Check();
    if (failed_) break;
    if (now_ >= next_convergence_check) {
      next_convergence_check = now_ + 1000;
      std::string why;
      if (Converged(&why)) {
        if (auto lost = oracle_.CheckNoWriteLost(servers_)) {
          Fail(*lost);
        } else {
          Trace("converged");
        }
        break;
      }
      if (now_ >= deadline_) {
        Fail(absl::StrCat("not converged ", kConvergenceBound / 1000,
                          " s after the faults stopped: ", why));
      }
    }
  }
  result_.end_ms = now_;
  result_.forced_takeovers = oracle_.forced_takeovers();
  result_.acknowledged_writes = oracle_.acknowledged();
  // Nothing of this run may outlive it (the scheduled closures hold `this`).
  while (!queue_.empty()) queue_.pop();
  registry_.reset();
  for (auto& [id, node] : nodes_) node.agent.reset();
  return result_;
}

// ------------------------------------------------------------- controller

absl::Time World::ControllerTime() const {
  return absl::FromUnixMillis(1700000000000 + now_ + clock_offset_);
}

void World::StartController() {
  absl::StatusOr<std::unique_ptr<Registry>> opened =
      Registry::Open(std::make_unique<SimStore>(saved_), registry_options_);
  if (!opened.ok()) {
    Fail(absl::StrCat("the controller cannot restart from its data dir: ", opened.status().message()));
    return;
  }
  registry_ = *std::move(opened);
  const ControllerState state = registry_->Snapshot();
  last_event_seq_ = state.next_event_seq - 1;  // the history is not news
  Trace("controller: started (cluster ", registry_->ClusterId(), ")");
  oracle_.OnControllerState(state, servers_, now_);
  ControllerChanged();
}

void World::CrashController() {
  if (!registry_) return;
  Trace("FAULT controller: killed");
  registry_.reset();
  // Every agent sees its stream end.
  for (auto& [id, stream] : streams_) {
    const std::string node = id;
    const int incarnation = stream.incarnation;
    After(NetDelay(), [this, node, incarnation] {
      Node& n = nodes_.at(node);
      if (n.agent && n.agent->incarnation == incarnation) {
        n.connected = false;
        ++n.stream_epoch;
        After(n.backoff, [this, node, incarnation] { Connect(nodes_.at(node), incarnation); });
      }
    });
  }
  streams_.clear();
}

void World::ControllerChanged() {
  if (!registry_) return;
  std::vector<Event> fresh = registry_->Events(last_event_seq_, "");
  if (!fresh.empty()) {
    last_event_seq_ = fresh.back().seq;
    for (const Event& e : fresh) Trace("controller: ", e.node, ": ", e.message);
    oracle_.OnControllerState(registry_->Snapshot(), servers_, now_);
  }
  std::vector<std::string> ids;
  for (const auto& [id, stream] : streams_) ids.push_back(id);
  for (const std::string& id : ids) Push(id);
}


void World::Tick() {
  if (registry_) {
    absl::StatusOr<Changes> changes = registry_->Tick();
    if (!changes.ok()) Fail(absl::StrCat("the controller's tick failed: ", changes.status().message()));
    ControllerChanged();
  }
  After(kTick, [this] { Tick(); });
}

// ----------------------------------------------------------------- agents

void World::Process::Publish(const ObservedState& observed, std::vector<StepEvent> events) {
  if (gate.dead()) return;  // a killed process says nothing more
  Node& n = world->nodes_.at(node);
  n.observed = observed;
  for (StepEvent& e : events) n.events.push_back(std::move(e));
  n.report_due = true;
  if (!n.in_flight) {
    World* w = world;
    const std::string id = node;
    const int inc = incarnation;
    w->After(1, [w, id, inc] { w->SendReport(w->nodes_.at(id), inc); });
  }
}

void World::StartAgent(Node& node) {
  if (node.agent || !node.host_up) return;
  auto p = std::make_unique<Process>();
  p->world = this;
  p->node = node.id;
  p->incarnation = next_incarnation_++;
  p->instance = absl::StrCat(node.id, "#", p->incarnation);
  p->clock = std::make_unique<SimClock>(&now_);
  p->engine = std::make_unique<SimEngine>(&servers_, node.id, &p->gate,
                                          [this](const std::string& id) { OnWritable(id); });
  p->host = std::make_unique<SimHost>(&node.disk, &p->gate);
  p->store = std::make_unique<DesiredStateStore>("");
  if (node.persisted.generation != 0 || !node.persisted.cluster_id.empty()) {
    p->store->LoadFrom(node.persisted);
  }
  ReconcilerOptions options;
  options.interval = std::chrono::milliseconds(kPassInterval);
  options.hold_retry = std::chrono::seconds(60);
  options.executor.streaming_timeout = std::chrono::seconds(2);
  options.executor.poll_interval = std::chrono::milliseconds(200);
  // Nothing arrives while a simulated pass runs: the answer a new master
  // waits for comes between passes (and schedules one).
  options.word_wait = std::chrono::milliseconds(0);
  p->reconciler = std::make_unique<Reconciler>(Peer{node.id, "main", node.id, 5432}, p->engine.get(),
                                               p->host.get(), p->clock.get(), p->store.get(),
                                               p.get(), options);
  const int incarnation = p->incarnation;
  node.agent = std::move(p);
  node.hung = false;
  node.buffered.clear();
  node.connected = false;
  node.backoff = 250;
  node.observed.reset();
  node.events.clear();
  node.report_due = false;
  node.in_flight = false;
  node.pass_backoff = 500;
  oracle_.OnAgentRestart(node.id);
  Trace(node.id, ": agent started (", node.agent->instance, ", holds generation ",
        node.persisted.generation, " ", RoleWord(node.persisted.role), ")");
  SchedulePass(node, now_ + Uniform(1, 100));
  Connect(node, incarnation);
  Node* n = &node;
  After(kHeartbeat, [this, n, incarnation] {
    if (n->agent && n->agent->incarnation == incarnation) Heartbeat(*n);
  });
}

void World::KillAgent(Node& node, bool host_crash) {
  if (!node.agent) return;
  const std::string instance = node.agent->instance;
  const int incarnation = node.agent->incarnation;
  node.agent.reset();
  node.connected = false;
  node.hung = false;
  node.buffered.clear();
  auto stream = streams_.find(node.id);
  if (stream != streams_.end() && stream->second.incarnation == incarnation) {
    if (host_crash) {
      // No FIN from a dead host: the controller keeps the stream open.
      stream->second.orphan = true;
    } else {
      const std::string id = node.id;
      After(NetDelay(), [this, id, instance] {
        auto s = streams_.find(id);
        if (s == streams_.end() || s->second.instance != instance || !registry_) return;
        registry_->AgentDisconnected(id, instance);
        streams_.erase(s);
      });
    }
  }
}

void World::SchedulePass(Node& node, Millis at) {
  const uint64_t token = ++node.pass_token;
  Node* n = &node;
  At(std::max(at, node.busy_until), [this, n, token] { RunPass(*n, token); });
}

void World::RunPass(Node& node, uint64_t token) {
  if (!node.agent || token != node.pass_token) return;
  if (node.hung) return;  // Unhang schedules the next one
  Process& p = *node.agent;
  p.clock->NewPass();
  oracle_.OnPassStart(node.id);
  const absl::Status status = p.reconciler->Pass();
  node.persisted = p.store->Current();
  const Millis took = p.clock->slept() + 5;
  Trace(node.id, ": pass ", status.ok() ? "ok" : std::string(status.message()), " (",
        took, " ms)");
  Mix(std::hash<std::string>{}(node.id) ^ (status.ok() ? 1 : 2));
  if (p.gate.dead()) {
    Trace("FAULT ", node.id, ": agent killed during its pass");
    KillAgent(node, false);
    Node* n = &node;
    After(Uniform(1000, 20000), [this, n] { StartAgent(*n); });
    return;
  }
  oracle_.OnPassEnd(node.id);
  node.busy_until = now_ + took;
  Millis wait = kPassInterval;
  if (!status.ok() && !ErrorBlocks(status)) {
    wait = node.pass_backoff;
    node.pass_backoff = std::min(node.pass_backoff * 2, kMaxPassBackoff);
  } else {
    node.pass_backoff = 500;
  }
  SchedulePass(node, now_ + took + wait);
}







void World::OnWritable(const std::string& id) {
  Trace(id, ": server becomes writable");
  if (auto lost = oracle_.OnWritable(id, servers_)) Fail(*lost);
}

// ------------------------------------------------------------- invariants

void World::Check() {
  std::map<std::string, NodeSight> sights;
  for (const auto& [id, node] : nodes_) {
    NodeSight& sight = sights[id];
    sight.held_role = node.persisted.role;
    if (node.agent) sight.hold_reason = node.agent->store->HoldReason();
  }
  if (auto broken = oracle_.Check(servers_, sights)) Fail(*broken);
}

bool World::Converged(std::string* why) {
  if (!registry_) {
    *why = "the controller is down";
    return false;
  }
  const ControllerState state = registry_->Snapshot();
  if (!state.switchovers.empty()) {
    *why = absl::StrCat("a switchover runs (", state.switchovers.begin()->second.promoted, ")");
    return false;
  }
  for (const NodeView& view : registry_->ListNodes()) {
    const std::string& id = view.info.id;
    const SimServer& server = servers_.at(id);
    const NodeRecord& record = state.nodes.at(id);
    auto pending = [&](const std::string& what) {
      *why = absl::StrCat(id, ": ", what, " (desired ", RoleWord(record.role), ", generation ",
                          view.desired.generation, "/",
                          view.observed ? view.observed->converged_generation : 0,
                          view.observed && !view.observed->last_error.empty()
                              ? absl::StrCat(", last error: ", view.observed->last_error)
                              : "",
                          ")");
      return false;
    };
    if (!view.converged) return pending("not converged");
    switch (record.role) {
      case Role::kMaster: {
        std::vector<std::string> slaves;
        for (const auto& [other, r] : state.nodes) {
          if (r.role == Role::kSlave && r.upstream_id == id) slaves.push_back(other);
        }
        if (!server.Writable()) return pending("master not writable");
        if (server.served != slaves) return pending("master does not serve its slaves");
        break;
      }
      case Role::kSlave:
        if (server.upstream != record.upstream_id || !servers_.Streaming(server)) {
          return pending("slave not streaming from its master");
        }
        break;
      default:
        if (!server.Writable()) return pending("standalone not writable");
    }
  }
  return true;
}

// ------------------------------------------------------------------ public

SimResult Simulate(const SimOptions& options) {
  World world(options);
  return world.Run();
}

std::string ReplayCommand(uint64_t seed) {
  std::string command = absl::StrCat(TANDEM_SIMULATE_BIN, " --seed ", seed);
#ifdef TANDEM_TEST_HOOKS
  if (test_hooks::revert_queued_revocation) absl::StrAppend(&command, " --revert-fix queued-revocation");
#endif
  return command;
}

}  // namespace tandem::sim

#include "controller/registry.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/address.h"
#include "controller/desired.h"
#include "controller/group_planner.h"

namespace tandem {
namespace {

constexpr size_t kMaxNameLength = 128;
// How long a refused second agent is shown in the node's view.
constexpr absl::Duration kDuplicateShown = absl::Minutes(1);

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

// A printable form of a character for error messages.
std::string Printable(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  if (u < 0x20 || u >= 0x7f) return absl::StrCat("byte 0x", absl::Hex(u, absl::kZeroPad2));
  return absl::StrCat("'", std::string(1, c), "'");
}

absl::Status CheckName(const char* what, const std::string& value) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat("the ", what, " is empty"));
  if (value.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ", what, " is longer than ", kMaxNameLength, " characters"));
  }
  for (char c : value) {
    if (!IsNameChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat("the ", what, " \"", value, "\" contains ",
                                                     Printable(c),
                                                     ": use letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateInfo(const NodeInfo& info) {
  if (absl::Status st = CheckName("node id", info.id); !st.ok()) return st;
  auto context = [&](const absl::Status& st) {
    return absl::Status(st.code(), absl::StrCat("node ", info.id, ": ", st.message()));
  };
  if (absl::Status st = CheckName("stack", info.stack); !st.ok()) return context(st);
  if (EngineName(info.engine).empty()) {
    return context(absl::InvalidArgumentError(
        "the engine is not given (postgresql, mysql, redis or mongodb)"));
  }
  if (info.port < 1 || info.port > 65535) {
    return context(
        absl::InvalidArgumentError(absl::StrCat("port ", info.port, " is not in 1..65535")));
  }
  if (info.tls_port > 65535) {
    return context(
        absl::InvalidArgumentError(absl::StrCat("TLS port ", info.tls_port, " is not in 0..65535")));
  }
  // Addresses reach access rules (pg_hba.conf, MariaDB account hosts) and
  // env files: one host each, never a keyword, wildcard or range.
  if (absl::Status st = CheckHostAddress("internal address", info.addresses.internal); !st.ok()) {
    return context(st);
  }
  if (!info.addresses.external.empty()) {
    if (absl::Status st = CheckHostAddress("external address", info.addresses.external);
        !st.ok()) {
      return context(st);
    }
  }
  return absl::OkStatus();
}

std::string RandomClusterId() {
  std::random_device random;
  std::string id = "c-";
  for (int i = 0; i < 4; ++i) absl::StrAppend(&id, absl::Hex(random(), absl::kZeroPad8));
  return id;
}

}  // namespace

Registry::Registry(std::unique_ptr<Store> store, RegistryOptions options)
    : options_(std::move(options)), store_(std::move(store)), since_(options_.now()) {}

Registry::~Registry() {
  Shutdown();
  if (ticker_.joinable()) ticker_.join();
}

absl::StatusOr<std::unique_ptr<Registry>> Registry::Open(std::unique_ptr<Store> store,
                                                         RegistryOptions options) {
  if (options.events_keep < 1) options.events_keep = 1;
  if (!options.now) options.now = [] { return absl::Now(); };
  if (!options.new_cluster_id) options.new_cluster_id = RandomClusterId;
  absl::StatusOr<std::optional<ControllerState>> loaded = store->Load();
  if (!loaded.ok()) return loaded.status();
  std::unique_ptr<Registry> registry(new Registry(std::move(store), std::move(options)));
  {
    absl::MutexLock lock(&registry->mu_);
    if (loaded->has_value()) {
      ControllerState state = **std::move(loaded);
      while (state.events.size() > registry->options_.events_keep) state.events.pop_front();
      // A switchover saved without a deadline (an older format) gets one.
      for (auto& [old_master, switchover] : state.switchovers) {
        if (switchover.deadline == 0) {
          switchover.started = absl::ToDoubleSeconds(registry->since_ - absl::UnixEpoch());
          switchover.deadline = switchover.started +
                                absl::ToDoubleSeconds(registry->options_.switchover_timeout);
        }
      }
      registry->state_ = state;
      // A build whose desired-state computation differs from the one that
      // saved the state publishes the new targets under new generations.
      ControllerState next = state;
      if (next.cluster_id.empty()) next.cluster_id = registry->options_.new_cluster_id();
      absl::StatusOr<Changes> changes = registry->ApplyLocked(Finish(
          state, std::move(next), "recomputed at controller start-up", registry->ContextLocked()));
      if (!changes.ok()) return changes.status();
    } else {
      registry->state_.cluster_id = registry->options_.new_cluster_id();
      if (absl::Status st = registry->store_->Save(registry->state_); !st.ok()) return st;
    }
  }
  if (registry->options_.tick_interval > absl::ZeroDuration()) {
    Registry* self = registry.get();
    registry->ticker_ = std::thread([self] {
      absl::MutexLock lock(&self->mu_);
      while (!self->shutdown_) {
        self->changed_.WaitWithTimeout(&self->mu_, self->options_.tick_interval);
        if (self->shutdown_) break;
        if (self->state_.switchovers.empty()) continue;  // nothing has a deadline
        // A failed save is tried again at the next tick.
        (void)self->ApplyLocked(PlanTick(self->state_, self->ContextLocked()));
      }
    });
  }
  return registry;
}

// ------------------------------------------------------------------ changes

PlanContext Registry::ContextLocked() const {
  return PlanContext{options_.now(), options_, live_, since_};
}

absl::StatusOr<Changes> Registry::ApplyLocked(absl::StatusOr<Decision> decision) {
  if (!decision.ok()) return decision.status();
  if (decision->changed) {
    if (absl::Status st = store_->Save(decision->state); !st.ok()) return st;
    state_ = std::move(decision->state);
    changed_.SignalAll();
  }
  return std::move(decision->changes);
}

absl::StatusOr<const NodeRecord*> Registry::FindLocked(const std::string& node_id) const {
  auto it = state_.nodes.find(node_id);
  if (it == state_.nodes.end()) return absl::NotFoundError(absl::StrCat("unknown node ", node_id));
  return &it->second;
}

absl::StatusOr<Changes> Registry::Register(const NodeInfo& info) {
  if (absl::Status st = ValidateInfo(info); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  return ApplyLocked(PlanRegister(state_, info, ContextLocked()));
}

absl::StatusOr<Changes> Registry::EnableReplication(const std::string& master,
                                                    const std::string& slave,
                                                    std::optional<bool> auto_resync) {
  absl::MutexLock lock(&mu_);
  return ApplyLocked(PlanEnable(state_, master, slave, auto_resync, ContextLocked()));
}

absl::StatusOr<Changes> Registry::DisableReplication(const std::string& master) {
  absl::MutexLock lock(&mu_);
  return ApplyLocked(PlanDisable(state_, master, ContextLocked()));
}

absl::StatusOr<Changes> Registry::RemoveSlave(const std::string& slave) {
  absl::MutexLock lock(&mu_);
  return ApplyLocked(PlanRemoveSlave(state_, slave, ContextLocked()));
}

absl::StatusOr<Changes> Registry::Resync(const std::string& slave) {
  absl::MutexLock lock(&mu_);
  return ApplyLocked(PlanResync(state_, slave, ContextLocked()));
}

absl::StatusOr<Changes> Registry::Promote(const std::string& node, bool force) {
  absl::MutexLock lock(&mu_);
  return ApplyLocked(PlanPromote(state_, node, force, ContextLocked()));
}

absl::StatusOr<Changes> Registry::Adopt(const std::string& node) {
  absl::MutexLock lock(&mu_);
  return ApplyLocked(PlanAdopt(state_, node, ContextLocked()));
}

absl::StatusOr<Changes> Registry::Tick() {
  absl::MutexLock lock(&mu_);
  if (state_.switchovers.empty()) return Changes{};  // nothing has a deadline
  return ApplyLocked(PlanTick(state_, ContextLocked()));
}

// ------------------------------------------------------------------- agents

absl::Status Registry::Report(const std::string& node_id, const ObservedState& observed,
                              const std::vector<StepEvent>& events) {
  return Report(node_id, "", observed, events);
}

absl::Status Registry::Report(const std::string& node_id, const std::string& instance,
                              const ObservedState& observed,
                              const std::vector<StepEvent>& events) {
  absl::MutexLock lock(&mu_);
  if (absl::Status st = CheckAgentLocked(node_id, instance, ""); !st.ok()) return st;
  absl::StatusOr<Changes> applied =
      ApplyLocked(PlanReport(state_, node_id, observed, events, ContextLocked()));
  if (!applied.ok()) return applied.status();
  AgentLiveness& live = live_[node_id];
  if (!instance.empty() && live.instance != instance) {
    // The process the node's streams belong to stopped answering (or there
    // is none): this one takes its place, or its reports would make that
    // one look alive and keep this one's Watch refused.
    live.instance = instance;
    live.watchers = 0;
    live.peer.clear();
  }
  live.observed = observed;
  live.last_report = options_.now();
  live.reported_since_connect = true;
  changed_.SignalAll();
  return absl::OkStatus();
}

absl::Status Registry::CheckAgent(const std::string& node_id, const std::string& instance,
                                  const std::string& peer) {
  absl::MutexLock lock(&mu_);
  return CheckAgentLocked(node_id, instance, peer);
}

absl::Status Registry::CheckAgentLocked(const std::string& node_id, const std::string& instance,
                                        const std::string& peer) {
  auto it = live_.find(node_id);
  if (instance.empty() || it == live_.end()) return absl::OkStatus();
  AgentLiveness& live = it->second;
  if (live.watchers == 0 || live.instance.empty() || live.instance == instance) {
    return absl::OkStatus();
  }
  const absl::Time now = options_.now();
  const absl::Time seen = std::max(live.last_report, live.connected);
  if (now - seen >= options_.agent_timeout) return absl::OkStatus();  // it stopped answering
  if (!peer.empty()) {
    live.refused_peer = peer;
    live.refused = now;
  }
  return absl::AlreadyExistsError(absl::StrCat(
      "node ", node_id, " is already served by an agent connected from ",
      live.peer.empty() ? "an unknown address" : live.peer, " (last heard ",
      static_cast<int64_t>(absl::ToDoubleSeconds(now - seen)), " s ago); is a second agent "
      "running with node: ", node_id, "? This one", peer.empty() ? "" : absl::StrCat(" (", peer, ")"),
      " is refused"));
}

absl::Status Registry::AgentConnected(const std::string& node_id, const std::string& instance,
                                      const std::string& peer) {
  absl::MutexLock lock(&mu_);
  if (node_id.empty()) return absl::OkStatus();  // registration says what is wrong
  if (absl::Status st = CheckAgentLocked(node_id, instance, peer); !st.ok()) return st;
  AgentLiveness& live = live_[node_id];
  if (live.instance != instance) {
    // A new agent process: the streams of the one before no longer count.
    live.instance = instance;
    live.watchers = 0;
  }
  ++live.watchers;
  live.peer = peer;
  live.connected = options_.now();
  live.reported_since_connect = false;
  return absl::OkStatus();
}

absl::Status Registry::CheckCurrentAgent(const std::string& node_id,
                                         const std::string& instance) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = live_.find(node_id);
  if (it == live_.end() || it->second.instance == instance) return absl::OkStatus();
  return absl::AlreadyExistsError(absl::StrCat("another agent process of node ", node_id,
                                               " took over (connected from ", it->second.peer,
                                               ") while this one did not answer"));
}

void Registry::AgentDisconnected(const std::string& node_id, const std::string& instance) {
  absl::MutexLock lock(&mu_);
  auto it = live_.find(node_id);
  if (it == live_.end() || it->second.instance != instance) return;
  if (it->second.watchers > 0) --it->second.watchers;
}

// -------------------------------------------------------------------- reads

DesiredState Registry::DesiredLocked(const NodeRecord& record) const {
  DesiredState desired = record.desired;
  desired.cluster_id = state_.cluster_id;
  desired.adopt = record.adopting;
  if (record.role == Role::kSlave) {
    auto it = live_.find(record.upstream_id);
    if (it != live_.end() && it->second.observed) {
      desired.upstream_data_bytes = it->second.observed->data_bytes;
    }
    // Only an unseeded slave can be queued.
    if (!record.seeded) {
      desired.superseded = Superseded(record, QueuedSlaves(state_, options_.policy));
    }
  }
  return desired;
}

NodeView Registry::ViewLocked(const NodeRecord& record,
                              const std::set<std::string>& queued) const {
  NodeView view;
  view.info = record.info;
  view.desired = DesiredLocked(record);
  if (record.role == Role::kSlave) view.upstream_id = record.upstream_id;
  auto it = live_.find(record.info.id);
  if (it != live_.end()) {
    const AgentLiveness& live = it->second;
    view.observed = live.observed;
    view.agent_connected = live.watchers > 0;
    if (view.agent_connected) view.agent_address = live.peer;
    if (options_.now() - live.refused < kDuplicateShown) {
      view.duplicate_agent = absl::StrCat(
          "a second agent tried to connect as ", record.info.id, " from ", live.refused_peer, " ",
          static_cast<int64_t>(absl::ToDoubleSeconds(options_.now() - live.refused)),
          " s ago and was refused");
    }
    if (live.last_report != absl::InfinitePast()) {
      view.seconds_since_report =
          std::max(0.0, absl::ToDoubleSeconds(options_.now() - live.last_report));
    }
  }
  // A queued slave is not converged: its new target is not published yet.
  view.queued = queued.count(record.info.id) != 0;
  view.auto_resync = GroupAutoResync(state_, record, options_);
  view.switchover = DescribeSwitchover(state_, record, options_.now());
  view.switchover_aborted = SwitchoverAborted(state_, record);
  const bool live_agent = it != live_.end() && it->second.watchers > 0 &&
                          it->second.reported_since_connect;
  view.converged = !view.queued && live_agent && view.observed.has_value() &&
                   view.observed->converged_generation == view.desired.generation;
  return view;
}

absl::StatusOr<NodeView> Registry::GetNode(const std::string& node_id) const {
  absl::ReaderMutexLock lock(&mu_);
  absl::StatusOr<const NodeRecord*> n = FindLocked(node_id);
  if (!n.ok()) return n.status();
  return ViewLocked(**n, QueuedSlaves(state_, options_.policy));
}

std::vector<NodeView> Registry::ListNodes() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<NodeView> views;
  views.reserve(state_.nodes.size());
  const std::set<std::string> queued = QueuedSlaves(state_, options_.policy);
  for (const auto& [id, record] : state_.nodes) views.push_back(ViewLocked(record, queued));
  return views;
}

absl::StatusOr<DesiredState> Registry::Desired(const std::string& node_id) const {
  absl::ReaderMutexLock lock(&mu_);
  absl::StatusOr<const NodeRecord*> n = FindLocked(node_id);
  if (!n.ok()) return n.status();
  return DesiredLocked(**n);
}

absl::StatusOr<DesiredState> Registry::WaitForDesired(const std::string& node_id,
                                                      uint64_t known_generation,
                                                      absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  while (true) {
    if (shutdown_) return absl::UnavailableError("the controller is shutting down");
    absl::StatusOr<const NodeRecord*> n = FindLocked(node_id);
    if (!n.ok()) return n.status();
    if ((*n)->desired.generation > known_generation) return DesiredLocked(**n);
    if (changed_.WaitWithDeadline(&mu_, deadline)) {
      // Timed out: the current state, whatever its generation.
      if (shutdown_) return absl::UnavailableError("the controller is shutting down");
      absl::StatusOr<const NodeRecord*> again = FindLocked(node_id);
      if (!again.ok()) return again.status();
      return DesiredLocked(**again);
    }
  }
}

std::vector<Event> Registry::EventsLocked(uint64_t after_seq, const std::string& node) const {
  std::vector<Event> out;
  // Events are in seq order: skip the old ones from the back.
  auto it = std::partition_point(state_.events.begin(), state_.events.end(),
                                 [&](const Event& e) { return e.seq <= after_seq; });
  for (; it != state_.events.end(); ++it) {
    if (node.empty() || it->node == node) out.push_back(*it);
  }
  return out;
}

std::vector<Event> Registry::Events(uint64_t after_seq, const std::string& node) const {
  absl::ReaderMutexLock lock(&mu_);
  return EventsLocked(after_seq, node);
}

std::vector<Event> Registry::WaitForEvents(uint64_t after_seq, const std::string& node,
                                           absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  while (true) {
    std::vector<Event> events = EventsLocked(after_seq, node);
    if (!events.empty() || shutdown_) return events;
    if (changed_.WaitWithDeadline(&mu_, deadline)) return EventsLocked(after_seq, node);
  }
}

void Registry::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
  changed_.SignalAll();
}

bool Registry::IsShutdown() const {
  absl::ReaderMutexLock lock(&mu_);
  return shutdown_;
}

std::string Registry::ClusterId() const {
  absl::ReaderMutexLock lock(&mu_);
  return state_.cluster_id;
}

ControllerState Registry::Snapshot() const {
  absl::ReaderMutexLock lock(&mu_);
  return state_;
}

}  // namespace tandem

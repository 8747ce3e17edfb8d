#include "controller/registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/address.h"
#include "controller/desired.h"

namespace tandem {
namespace {

constexpr size_t kMaxNameLength = 128;
constexpr size_t kMaxEventText = 1000;

absl::string_view AV(std::string_view sv) { return absl::string_view(sv.data(), sv.size()); }

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

// Group changes wait while a switchover runs: its two phases must see the
// group they started with.
absl::Status CheckNoSwitchover(const ControllerState& state) {
  if (state.promoting.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "a switchover (promote ", state.promoting, ") is in progress; try again when it is done"));
}

absl::Status CheckRequestId(const char* what, const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat("no ", what, " given"));
  return absl::OkStatus();
}

std::string HostPort(const std::string& host, uint32_t port) {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

std::vector<std::string> SlaveIds(const ControllerState& state, const std::string& master) {
  std::vector<std::string> ids;
  for (const auto& [id, record] : state.nodes) {
    if (record.role == Role::kSlave && record.upstream_id == master) ids.push_back(id);
  }
  return ids;
}

// "standalone", "a slave of db1", "the master of db2,db3", "a master with no slaves".
std::string DescribeIntent(const ControllerState& state, const NodeRecord& record) {
  switch (record.role) {
    case Role::kSlave:
      return absl::StrCat("a slave of ", record.upstream_id);
    case Role::kMaster: {
      std::vector<std::string> slaves = SlaveIds(state, record.info.id);
      if (slaves.empty()) return "a master with no slaves";
      return absl::StrCat("the master of ", absl::StrJoin(slaves, ","));
    }
    default:
      return "standalone";
  }
}

// The ids of the members of the node's group (master first), empty for a
// standalone node.
std::vector<std::string> GroupMembers(const ControllerState& state, const NodeRecord& record) {
  std::string master;
  if (record.role == Role::kMaster) master = record.info.id;
  if (record.role == Role::kSlave) master = record.upstream_id;
  if (master.empty()) return {};
  std::vector<std::string> members{master};
  for (std::string& id : SlaveIds(state, master)) members.push_back(std::move(id));
  return members;
}

// A node that leaves its group: standalone, with nothing of its group role.
void LeaveGroup(NodeRecord* record) {
  record->auto_resync.reset();  // the group's policy goes with the group
  record->role = Role::kStandalone;
  record->upstream_id.clear();
  record->resync_token.clear();
  record->fenced = false;
  record->catch_up_position.clear();
}

std::string Truncate(std::string text) {
  if (text.size() > kMaxEventText) {
    text.resize(kMaxEventText);
    text += "...";
  }
  return text;
}

double UnixSeconds(absl::Time t) { return absl::ToDoubleSeconds(t - absl::UnixEpoch()); }

}  // namespace

Registry::Registry(std::unique_ptr<Store> store, RegistryOptions options)
    : options_(std::move(options)), store_(std::move(store)) {}

absl::StatusOr<std::unique_ptr<Registry>> Registry::Open(std::unique_ptr<Store> store,
                                                         RegistryOptions options) {
  if (options.events_keep < 1) options.events_keep = 1;
  if (!options.now) options.now = [] { return absl::Now(); };
  absl::StatusOr<std::optional<ControllerState>> loaded = store->Load();
  if (!loaded.ok()) return loaded.status();
  std::unique_ptr<Registry> registry(new Registry(std::move(store), std::move(options)));
  {
    absl::MutexLock lock(&registry->mu_);
    if (loaded->has_value()) {
      ControllerState state = **std::move(loaded);
      while (state.events.size() > registry->options_.events_keep) state.events.pop_front();
      registry->state_ = state;
      // A build whose desired-state computation differs from the one that
      // saved the state publishes the new targets under new generations.
      absl::StatusOr<Changes> changes =
          registry->CommitLocked(std::move(state), "recomputed at controller start-up");
      if (!changes.ok()) return changes.status();
    } else if (absl::Status st = registry->store_->Save(registry->state_); !st.ok()) {
      return st;
    }
  }
  return registry;
}

// ------------------------------------------------------------------ changes

absl::StatusOr<Changes> Registry::CommitLocked(ControllerState next, const std::string& cause) {
  const std::vector<std::string> changed = RecomputeDesired(&next, options_.policy);
  if (changed.empty() && next.nodes == state_.nodes &&
      next.resync_counter == state_.resync_counter && next.promoting == state_.promoting) {
    return Changes{};
  }
  Changes lines;
  const double now = UnixSeconds(options_.now());
  for (const std::string& id : changed) {
    const NodeRecord& after = next.nodes.at(id);
    auto before = state_.nodes.find(id);
    const std::string what = absl::StrCat(
        DescribeChange(before == state_.nodes.end() ? nullptr : &before->second.desired,
                       after.desired),
        " (generation ", after.desired.generation, ")");
    lines.push_back(absl::StrCat(id, ": ", what));
    Event event;
    event.unix_time = now;
    event.node = id;
    event.kind = kEventDesired;
    event.message = Truncate(absl::StrCat(what, ": ", cause));
    event.generation = after.desired.generation;
    AppendEventLocked(&next, std::move(event));
  }
  if (absl::Status st = store_->Save(next); !st.ok()) return st;
  state_ = std::move(next);
  changed_.SignalAll();
  return lines;
}

void Registry::AppendEventLocked(ControllerState* state, Event event) const {
  event.seq = state->next_event_seq++;
  state->events.push_back(std::move(event));
  while (state->events.size() > options_.events_keep) state->events.pop_front();
}

absl::StatusOr<const NodeRecord*> Registry::FindLocked(const std::string& node_id) const {
  auto it = state_.nodes.find(node_id);
  if (it == state_.nodes.end()) return absl::NotFoundError(absl::StrCat("unknown node ", node_id));
  return &it->second;
}

void Registry::RequestCopyLocked(ControllerState* next, const std::string& node_id,
                                 bool rejoin_first) const {
  // The token: the node's next generation (its target changes with it) and
  // a counter saved with the state, so a token is never reused. The counter
  // also orders the bootstrap queue.
  NodeRecord& record = next->nodes.at(node_id);
  record.resync_token =
      absl::StrCat("r", record.desired.generation + 1, "-", ++next->resync_counter);
  record.queue_seq = next->resync_counter;
  record.seeded = false;
  record.rejoin_first = rejoin_first;
}

absl::StatusOr<Changes> Registry::Register(const NodeInfo& info) {
  if (absl::Status st = ValidateInfo(info); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  ControllerState next = state_;
  std::string cause;
  auto it = state_.nodes.find(info.id);
  if (it == state_.nodes.end()) {
    NodeRecord record;
    record.info = info;
    record.role = Role::kStandalone;
    next.nodes.emplace(info.id, std::move(record));
    cause =
        absl::StrCat(info.id, " registered (stack ", info.stack, ", ", AV(EngineName(info.engine)),
                     " at ", HostPort(info.addresses.internal, info.port), ")");
  } else {
    const NodeRecord& current = it->second;
    const NodeInfo& old = current.info;
    if (old == info) return Changes{};
    if (info.engine != old.engine && current.role != Role::kStandalone) {
      return absl::FailedPreconditionError(absl::StrCat(
          info.id, " is ", DescribeIntent(state_, current), " as ", AV(EngineName(old.engine)),
          " and cannot re-register as ", AV(EngineName(info.engine)),
          ": disable replication or remove it from its group first"));
    }
    if (info.stack != old.stack && info.engine == EngineType::kMongodb) {
      for (const std::string& member : GroupMembers(state_, current)) {
        const NodeInfo& other = state_.nodes.at(member).info;
        if (member != info.id && other.stack != info.stack) {
          return absl::FailedPreconditionError(absl::StrCat(
              "MongoDB replication between stacks is not supported: ", info.id,
              " cannot move to stack ", info.stack, " while it is ",
              DescribeIntent(state_, current), " (", member, " is in stack ", other.stack, ")"));
        }
      }
    }
    std::vector<std::string> diffs;
    auto diff = [&](const char* field, const std::string& a, const std::string& b) {
      if (a != b)
        diffs.push_back(
            absl::StrCat(field, " ", a.empty() ? "\"\"" : a, " -> ", b.empty() ? "\"\"" : b));
    };
    diff("stack", old.stack, info.stack);
    diff("engine", std::string(EngineName(old.engine)), std::string(EngineName(info.engine)));
    diff("internal address", old.addresses.internal, info.addresses.internal);
    diff("external address", old.addresses.external, info.addresses.external);
    diff("port", absl::StrCat(old.port), absl::StrCat(info.port));
    next.nodes.at(info.id).info = info;
    cause = absl::StrCat(info.id, " re-registered: ", absl::StrJoin(diffs, ", "));
  }
  return CommitLocked(std::move(next), cause);
}

bool Registry::AutoResyncLocked(const ControllerState& state, const NodeRecord& record) const {
  const NodeRecord* master = &record;
  if (record.role == Role::kSlave) {
    auto it = state.nodes.find(record.upstream_id);
    if (it == state.nodes.end()) return options_.auto_resync;
    master = &it->second;
  }
  return master->auto_resync.value_or(options_.auto_resync);
}

absl::StatusOr<Changes> Registry::EnableReplication(const std::string& master,
                                                    const std::string& slave,
                                                    std::optional<bool> auto_resync) {
  if (absl::Status st = CheckRequestId("master node", master); !st.ok()) return st;
  if (absl::Status st = CheckRequestId("slave node", slave); !st.ok()) return st;
  if (master == slave) {
    return absl::InvalidArgumentError(
        absl::StrCat("a node cannot be its own upstream (", master, ")"));
  }
  absl::MutexLock lock(&mu_);
  if (absl::Status st = CheckNoSwitchover(state_); !st.ok()) return st;
  absl::StatusOr<const NodeRecord*> m = FindLocked(master);
  if (!m.ok()) return m.status();
  absl::StatusOr<const NodeRecord*> s = FindLocked(slave);
  if (!s.ok()) return s.status();
  const NodeInfo& mi = (*m)->info;
  const NodeInfo& si = (*s)->info;
  if (mi.engine != si.engine) {
    return absl::FailedPreconditionError(absl::StrCat("engines differ: ", master, " is ",
                                                      AV(EngineName(mi.engine)), ", ", slave,
                                                      " is ", AV(EngineName(si.engine))));
  }
  if (mi.engine == EngineType::kMongodb && mi.stack != si.stack) {
    return absl::FailedPreconditionError(
        absl::StrCat("MongoDB replication between stacks is not supported (", master,
                     " is in stack ", mi.stack, ", ", slave, " in stack ", si.stack, ")"));
  }
  if ((*m)->role == Role::kSlave) {
    return absl::FailedPreconditionError(absl::StrCat(master, " is a slave of ", (*m)->upstream_id,
                                                      "; a slave cannot serve slaves"));
  }
  const std::string cause = absl::StrCat(
      "replication enable --master ", master, " --slave ", slave,
      auto_resync.has_value() ? (*auto_resync ? " --auto-resync on" : " --auto-resync off") : "");
  // The group policy, when asked for: a line of its own when it changes.
  auto set_policy = [&](ControllerState* next, Changes* lines) {
    if (!auto_resync.has_value() || next->nodes.at(master).auto_resync == auto_resync) return;
    next->nodes.at(master).auto_resync = *auto_resync;
    lines->push_back(absl::StrCat(master, ": group policy auto_resync ",
                                  *auto_resync ? "on" : "off"));
    Event event;
    event.unix_time = UnixSeconds(options_.now());
    event.node = master;
    event.kind = kEventDesired;
    event.message = absl::StrCat("group policy auto_resync ", *auto_resync ? "on" : "off", ": ",
                                 cause);
    AppendEventLocked(next, std::move(event));
  };
  if ((*s)->role == Role::kSlave) {
    if ((*s)->upstream_id == master) {
      ControllerState next = state_;
      Changes policy;
      set_policy(&next, &policy);
      if (policy.empty()) return Changes{};  // nothing to change
      absl::StatusOr<Changes> saved = CommitLocked(std::move(next), cause);
      if (!saved.ok()) return saved.status();
      return policy;
    }
    return absl::FailedPreconditionError(
        absl::StrCat(slave, " is already a slave of ", (*s)->upstream_id,
                     "; remove it first (slave remove ", slave, ")"));
  }
  if ((*s)->role == Role::kMaster && !SlaveIds(state_, slave).empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(slave, " is the master of a group (", DescribeIntent(state_, **s),
                     "); disable replication or remove its slaves first"));
  }
  ControllerState next = state_;
  NodeRecord& new_master = next.nodes.at(master);
  new_master.role = Role::kMaster;
  NodeRecord& new_slave = next.nodes.at(slave);
  new_slave.role = Role::kSlave;
  new_slave.fenced = false;
  new_slave.catch_up_position.clear();
  new_slave.upstream_id = master;
  RequestCopyLocked(&next, slave);
  Changes policy;
  set_policy(&next, &policy);
  absl::StatusOr<Changes> changes = CommitLocked(std::move(next), cause);
  if (!changes.ok()) return changes.status();
  changes->insert(changes->end(), policy.begin(), policy.end());
  return changes;
}

absl::StatusOr<Changes> Registry::DisableReplication(const std::string& master) {
  if (absl::Status st = CheckRequestId("master node", master); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  if (absl::Status st = CheckNoSwitchover(state_); !st.ok()) return st;
  absl::StatusOr<const NodeRecord*> m = FindLocked(master);
  if (!m.ok()) return m.status();
  if ((*m)->role != Role::kMaster) {
    std::string hint;
    if ((*m)->role == Role::kSlave) {
      hint = absl::StrCat(" (replication disable --master ", (*m)->upstream_id, ")");
    }
    return absl::FailedPreconditionError(
        absl::StrCat(master, " is not a master: it is ", DescribeIntent(state_, **m), hint));
  }
  ControllerState next = state_;
  for (const std::string& id : SlaveIds(state_, master)) LeaveGroup(&next.nodes.at(id));
  LeaveGroup(&next.nodes.at(master));
  return CommitLocked(std::move(next), absl::StrCat("replication disable --master ", master));
}

absl::StatusOr<Changes> Registry::RemoveSlave(const std::string& slave) {
  if (absl::Status st = CheckRequestId("slave node", slave); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  if (absl::Status st = CheckNoSwitchover(state_); !st.ok()) return st;
  absl::StatusOr<const NodeRecord*> s = FindLocked(slave);
  if (!s.ok()) return s.status();
  if ((*s)->role != Role::kSlave) {
    return absl::FailedPreconditionError(
        absl::StrCat(slave, " is not a slave: it is ", DescribeIntent(state_, **s)));
  }
  ControllerState next = state_;
  LeaveGroup(&next.nodes.at(slave));
  return CommitLocked(std::move(next), absl::StrCat("slave remove ", slave));
}

absl::StatusOr<Changes> Registry::Resync(const std::string& slave) {
  if (absl::Status st = CheckRequestId("slave node", slave); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  if (absl::Status st = CheckNoSwitchover(state_); !st.ok()) return st;
  absl::StatusOr<const NodeRecord*> s = FindLocked(slave);
  if (!s.ok()) return s.status();
  if ((*s)->role != Role::kSlave) {
    return absl::FailedPreconditionError(absl::StrCat(slave, " is not a slave: it is ",
                                                      DescribeIntent(state_, **s),
                                                      "; only a slave can be resynchronised"));
  }
  ControllerState next = state_;
  RequestCopyLocked(&next, slave);
  return CommitLocked(std::move(next), absl::StrCat("resync ", slave));
}

absl::StatusOr<Changes> Registry::Promote(const std::string& node, bool force) {
  if (absl::Status st = CheckRequestId("node", node); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  if (absl::Status st = CheckNoSwitchover(state_); !st.ok()) return st;
  absl::StatusOr<const NodeRecord*> n = FindLocked(node);
  if (!n.ok()) return n.status();
  const NodeRecord& promoted = **n;
  if (promoted.info.engine == EngineType::kMongodb) {
    return absl::FailedPreconditionError(
        absl::StrCat("promote is not supported for mongodb (", node, ")"));
  }
  if (promoted.role != Role::kSlave) {
    return absl::FailedPreconditionError(absl::StrCat(
        node, " is not a slave: it is ", DescribeIntent(state_, promoted), "; only a slave can be promoted"));
  }
  if (!promoted.seeded) {
    return absl::FailedPreconditionError(absl::StrCat(
        node, " has not finished copying ", promoted.upstream_id,
        "'s data yet; promote it once it is converged (tandemctl wait ", node, ")"));
  }
  const std::string old_master = promoted.upstream_id;
  ControllerState next = state_;
  if (force) {
    // No fence: the old master may be unreachable. It becomes a slave of
    // the new master with a fresh token, so when its agent comes back it is
    // fenced and rebuilt and can never be writable by itself again.
    // No rejoin in place either: the old master (and a slave that got more
    // of its writes than `node`) may hold writes `node` lacks, which only a
    // full copy keeps (the old data is moved aside).
    SwitchMasterLocked(&next, node, "", /*rejoin_first=*/false);
    return CommitLocked(std::move(next), absl::StrCat("promote --force ", node, " (", old_master,
                                                      " not fenced: rebuilt when it returns)"));
  }
  auto live = live_.find(old_master);
  if (live == live_.end() || live->second.watchers == 0 || !live->second.observed) {
    return absl::FailedPreconditionError(absl::StrCat(
        old_master, "'s agent is not connected, so it cannot be fenced first; "
        "promote --force ", node, " proceeds without it (", old_master,
        " is then rebuilt as a slave when it returns)"));
  }
  // Phase 1: fence the old master. Phase 2 (SwitchMasterLocked) runs when
  // its agent reports the fence and the position it stopped at.
  next.nodes.at(old_master).fenced = true;
  next.promoting = node;
  return CommitLocked(std::move(next), absl::StrCat("promote ", node, ": fencing ", old_master));
}

void Registry::SwitchMasterLocked(ControllerState* next, const std::string& node,
                                  const std::string& position, bool rejoin_first) const {
  const std::string old_master = next->nodes.at(node).upstream_id;
  NodeRecord& promoted = next->nodes.at(node);
  // The group keeps its policy under its new master.
  promoted.auto_resync = next->nodes.at(old_master).auto_resync;
  next->nodes.at(old_master).auto_resync.reset();
  promoted.role = Role::kMaster;
  promoted.upstream_id.clear();
  promoted.resync_token.clear();
  promoted.catch_up_position = position;
  promoted.fenced = false;
  // The other slaves first, then the old master, one at a time (the
  // bootstrap queue): the slaves leave the old master before it stops, so
  // they never replay anything of its past the point where `node` took
  // over (which would make them diverge too).
  std::vector<std::string> followers;
  for (const std::string& id : SlaveIds(*next, old_master)) {
    if (id != node) followers.push_back(id);
  }
  followers.push_back(old_master);
  for (const std::string& id : followers) {
    NodeRecord& record = next->nodes.at(id);
    record.role = Role::kSlave;
    record.upstream_id = node;
    record.fenced = false;
    record.catch_up_position.clear();
    RequestCopyLocked(next, id, rejoin_first);
  }
  next->promoting.clear();
}

// ------------------------------------------------------------------- agents

absl::Status Registry::Report(const std::string& node_id, const ObservedState& observed,
                              const std::vector<StepEvent>& events) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<const NodeRecord*> n = FindLocked(node_id);
  if (!n.ok()) return n.status();
  // A slave that converged on the copy it was asked for is seeded: the next
  // queued slave of its group may start its bootstrap.
  const NodeRecord& record = **n;
  const bool seeded_now = record.role == Role::kSlave && !record.seeded &&
                          PublishedInGroup(record) &&
                          record.desired.resync_token == record.resync_token &&
                          observed.converged_generation == record.desired.generation;
  // The old master of a switchover reports the fence and its position:
  // the promoted slave may now catch up with it and take over.
  const bool fenced_now = !state_.promoting.empty() && record.fenced &&
                          record.desired.fenced && !observed.writable &&
                          !observed.position.empty() &&
                          observed.converged_generation == record.desired.generation;
  // A slave whose agent says it can no longer follow its master: with the
  // auto_resync policy the controller asks for a copy itself (cheap path
  // first), once per interval, never in the middle of a copy or a
  // switchover.
  const double now = UnixSeconds(options_.now());
  const bool resync_now =
      !observed.out_of_sync.empty() && record.role == Role::kSlave &&
      AutoResyncLocked(state_, record) &&
      record.seeded && state_.promoting.empty() && PublishedInGroup(record) &&
      record.desired.resync_token == record.resync_token &&
      (record.auto_resync_time == 0 ||
       now - record.auto_resync_time >= absl::ToDoubleSeconds(options_.auto_resync_interval));
  if (!events.empty() || seeded_now || fenced_now || resync_now) {
    ControllerState next = state_;
    for (const StepEvent& step : events) {
      Event event;
      event.unix_time = now;
      event.node = node_id;
      event.kind = kEventStep;
      if (step.ok) {
        event.message =
            step.reason.empty() ? step.step : absl::StrCat(step.step, ": ", step.reason);
      } else {
        event.message = absl::StrCat(step.step, " failed: ", step.error);
        if (!step.reason.empty()) absl::StrAppend(&event.message, " (", step.reason, ")");
      }
      event.message = Truncate(std::move(event.message));
      event.ok = step.ok;
      event.generation = step.generation;
      event.seconds = step.seconds;
      AppendEventLocked(&next, std::move(event));
    }
    if (fenced_now) {
      const std::string promoted = state_.promoting;
      // The old master was fenced before the promoted slave caught up, so
      // every follower may rejoin in place: none holds a write the new
      // master lacks.
      SwitchMasterLocked(&next, promoted, observed.position, /*rejoin_first=*/true);
      absl::StatusOr<Changes> switched = CommitLocked(
          std::move(next), absl::StrCat("promote ", promoted, ": ", node_id, " fenced at ",
                                        observed.position, "; ", promoted, " takes over"));
      if (!switched.ok()) return switched.status();
    } else if (resync_now) {
      RequestCopyLocked(&next, node_id, /*rejoin_first=*/true);
      next.nodes.at(node_id).auto_resync_time = now;
      absl::StatusOr<Changes> resynced = CommitLocked(
          std::move(next), absl::StrCat("auto-resync ", node_id, ": ", observed.out_of_sync));
      if (!resynced.ok()) return resynced.status();
    } else if (seeded_now) {
      next.nodes.at(node_id).seeded = true;
      absl::StatusOr<Changes> released = CommitLocked(
          std::move(next), absl::StrCat(node_id, " holds a copy of ", record.upstream_id));
      if (!released.ok()) return released.status();
    } else {
      if (absl::Status st = store_->Save(next); !st.ok()) return st;
      state_ = std::move(next);
    }
  }
  Live& live = live_[node_id];
  live.observed = observed;
  live.last_report = options_.now();
  live.reported_since_connect = true;
  changed_.SignalAll();
  return absl::OkStatus();
}

void Registry::AgentConnected(const std::string& node_id) {
  absl::MutexLock lock(&mu_);
  Live& live = live_[node_id];
  ++live.watchers;
  live.reported_since_connect = false;
}

void Registry::AgentDisconnected(const std::string& node_id) {
  absl::MutexLock lock(&mu_);
  Live& live = live_[node_id];
  if (live.watchers > 0) --live.watchers;
}

// -------------------------------------------------------------------- reads

DesiredState Registry::DesiredLocked(const NodeRecord& record) const {
  DesiredState desired = record.desired;
  if (record.role == Role::kSlave) {
    auto it = live_.find(record.upstream_id);
    if (it != live_.end() && it->second.observed) {
      desired.upstream_data_bytes = it->second.observed->data_bytes;
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
    const Live& live = it->second;
    view.observed = live.observed;
    view.agent_connected = live.watchers > 0;
    if (live.last_report != absl::InfinitePast()) {
      view.seconds_since_report =
          std::max(0.0, absl::ToDoubleSeconds(options_.now() - live.last_report));
    }
  }
  // A queued slave is not converged: its new target is not published yet.
  view.queued = queued.count(record.info.id) != 0;
  view.auto_resync = AutoResyncLocked(state_, record);
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

ControllerState Registry::Snapshot() const {
  absl::ReaderMutexLock lock(&mu_);
  return state_;
}

}  // namespace tandem

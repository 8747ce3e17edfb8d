#include "controller/group_planner.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "controller/group_planner_impl.h"

namespace tandem {
namespace planner {

constexpr size_t kMaxEventText = 1000;

double UnixSeconds(absl::Time t) { return absl::ToDoubleSeconds(t - absl::UnixEpoch()); }

absl::Status CheckRequestId(const char* what, const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat("no ", what, " given"));
  return absl::OkStatus();
}

absl::StatusOr<const NodeRecord*> Named(const ControllerState& state, const char* what,
                                        const std::string& node_id) {
  if (absl::Status st = CheckRequestId(what, node_id); !st.ok()) return st;
  return Find(state, node_id);
}

absl::StatusOr<const NodeRecord*> NamedOutsideSwitchover(const ControllerState& state,
                                                         const char* what,
                                                         const std::string& node_id,
                                                         const PlanContext& context) {
  absl::StatusOr<const NodeRecord*> n = Named(state, what, node_id);
  if (!n.ok()) return n.status();
  if (absl::Status st = CheckNoSwitchover(state, GroupMasterId(**n), context.now); !st.ok()) {
    return st;
  }
  return n;
}

absl::StatusOr<const NodeRecord*> Find(const ControllerState& state, const std::string& node_id) {
  auto it = state.nodes.find(node_id);
  if (it == state.nodes.end()) return absl::NotFoundError(absl::StrCat("unknown node ", node_id));
  return &it->second;
}

std::vector<std::string> SlaveIds(const ControllerState& state, const std::string& master) {
  std::vector<std::string> ids;
  for (const auto& [id, record] : state.nodes) {
    if (record.role == Role::kSlave && record.upstream_id == master) ids.push_back(id);
  }
  return ids;
}

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

std::string GroupMasterId(const NodeRecord& record) {
  if (record.role == Role::kMaster) return record.info.id;
  if (record.role == Role::kSlave) return record.upstream_id;
  return "";
}

std::vector<std::string> GroupMembers(const ControllerState& state, const NodeRecord& record) {
  const std::string master = GroupMasterId(record);
  if (master.empty()) return {};
  std::vector<std::string> members{master};
  for (std::string& id : SlaveIds(state, master)) members.push_back(std::move(id));
  return members;
}

void LeaveGroup(NodeRecord* record) {
  record->auto_resync.reset();  // the group's policy goes with the group
  record->role = Role::kStandalone;
  record->upstream_id.clear();
  record->resync_token.clear();
  record->fenced = false;
  record->catch_up_position.clear();
}

void RequestCopy(ControllerState* next, const std::string& node_id, bool rejoin_first) {
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

std::string Truncate(std::string text) {
  if (text.size() > kMaxEventText) {
    text.resize(kMaxEventText);
    text += "...";
  }
  return text;
}

std::string CompactSeconds(absl::Duration d) {
  return absl::StrCat(static_cast<int64_t>(absl::ToDoubleSeconds(d) + 0.5), " s");
}

bool AgentAnswers(const PlanContext& context, const std::string& node_id) {
  const AgentLiveness& agent = context.Agent(node_id);
  return agent.watchers > 0 && agent.observed.has_value() &&
         context.now - agent.last_report < context.options.agent_timeout;
}

bool AgentSilent(const PlanContext& context, const std::string& node_id) {
  const AgentLiveness& agent = context.Agent(node_id);
  return context.now - std::max(agent.last_report, context.since) >=
         context.options.agent_timeout;
}

std::string DescribeAgent(const PlanContext& context, const std::string& node_id) {
  const AgentLiveness& agent = context.Agent(node_id);
  std::string text;
  if (agent.watchers == 0) {
    text = "its agent is not connected";
  } else if (!agent.observed.has_value()) {
    text = "its agent is connected but has not reported since the controller started";
  } else if (context.now - agent.last_report >= context.options.agent_timeout) {
    text = absl::StrCat("its agent is connected but has not reported for ",
                        CompactSeconds(context.now - agent.last_report));
  } else {
    text = absl::StrCat("its agent reported ", CompactSeconds(context.now - agent.last_report),
                        " ago");
  }
  if (agent.observed.has_value() && !agent.observed->last_error.empty()) {
    absl::StrAppend(&text, "; its last error: ", agent.observed->last_error);
  }
  return text;
}

absl::Status CheckNoSwitchover(const ControllerState& state, const std::string& master_id,
                               absl::Time now) {
  if (master_id.empty()) return absl::OkStatus();
  auto it = state.switchovers.find(master_id);
  if (it == state.switchovers.end()) {
    auto master = state.nodes.find(master_id);
    if (master == state.nodes.end() || master->second.catch_up_position.empty()) {
      return absl::OkStatus();
    }
    // Phase 2: the new master must still replay what the old one holds;
    // taking the old master away now would leave it nothing to catch up
    // from.
    return absl::FailedPreconditionError(absl::StrCat(
        "a switchover is in progress in ", master_id, "'s group: ",
        DescribeSwitchover(state, master->second, now),
        "; try again when it is done, or promote --force ", master_id,
        " to take over without waiting (writes it has not replayed are then lost)"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "a switchover (promote ", it->second.promoted, ") is in progress in ", master_id,
      "'s group: ", DescribeSwitchover(state, state.nodes.at(master_id), now),
      "; try again when it is done, or promote --force ", it->second.promoted,
      " to take over without waiting"));
}

void ClearAborted(ControllerState* next, const std::string& master_id) {
  auto it = next->nodes.find(master_id);
  if (it != next->nodes.end()) it->second.switchover_aborted.clear();
}

void Note(ControllerState* next, const std::string& node, const std::string& message,
          const PlanContext& context) {
  Event event;
  event.unix_time = UnixSeconds(context.now);
  event.node = node;
  event.kind = kEventDesired;
  event.message = Truncate(message);
  AppendEvent(next, std::move(event), context.options);
}

namespace {

std::string HostPort(const std::string& host, uint32_t port) {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

}  // namespace
}  // namespace planner

using namespace planner;  // NOLINT: the planner's own helpers

const AgentLiveness& PlanContext::Agent(const std::string& node_id) const {
  static const AgentLiveness* const kNone = new AgentLiveness();
  auto it = agents.find(node_id);
  return it == agents.end() ? *kNone : it->second;
}

void AppendEvent(ControllerState* state, Event event, const PlannerOptions& options) {
  event.seq = state->next_event_seq++;
  state->events.push_back(std::move(event));
  const size_t keep = options.events_keep < 1 ? 1 : options.events_keep;
  while (state->events.size() > keep) state->events.pop_front();
}

Decision Finish(const ControllerState& before, ControllerState next, const std::string& cause,
                const PlanContext& context) {
  Decision decision;
  const std::vector<std::string> changed = RecomputeDesired(&next, context.options.policy);
  const double now = UnixSeconds(context.now);
  for (const std::string& id : changed) {
    const NodeRecord& after = next.nodes.at(id);
    auto prior = before.nodes.find(id);
    const std::string what = absl::StrCat(
        DescribeChange(prior == before.nodes.end() ? nullptr : &prior->second.desired,
                       after.desired),
        " (generation ", after.desired.generation, ")");
    decision.changes.push_back(absl::StrCat(id, ": ", what));
    Event event;
    event.unix_time = now;
    event.node = id;
    event.kind = kEventDesired;
    event.message = Truncate(absl::StrCat(what, ": ", cause));
    event.generation = after.desired.generation;
    AppendEvent(&next, std::move(event), context.options);
  }
  decision.changed = !(next == before);
  decision.state = std::move(next);
  return decision;
}

bool GroupAutoResync(const ControllerState& state, const NodeRecord& record,
                     const PlannerOptions& options) {
  const NodeRecord* master = &record;
  if (record.role == Role::kSlave) {
    auto it = state.nodes.find(record.upstream_id);
    if (it == state.nodes.end()) return options.auto_resync;
    master = &it->second;
  }
  return master->auto_resync.value_or(options.auto_resync);
}

absl::StatusOr<Decision> PlanRegister(const ControllerState& state, const NodeInfo& info,
                                      const PlanContext& context) {
  ControllerState next = state;
  std::string cause;
  auto it = state.nodes.find(info.id);
  if (it == state.nodes.end()) {
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
    if (old == info) return Decision{state, {}, false};
    if (info.engine != old.engine && current.role != Role::kStandalone) {
      return absl::FailedPreconditionError(absl::StrCat(
          info.id, " is ", DescribeIntent(state, current), " as ", AV(EngineName(old.engine)),
          " and cannot re-register as ", AV(EngineName(info.engine)),
          ": disable replication or remove it from its group first"));
    }
    if (info.stack != old.stack && info.engine == EngineType::kMongodb) {
      for (const std::string& member : GroupMembers(state, current)) {
        const NodeInfo& other = state.nodes.at(member).info;
        if (member != info.id && other.stack != info.stack) {
          return absl::FailedPreconditionError(absl::StrCat(
              "MongoDB replication between stacks is not supported: ", info.id,
              " cannot move to stack ", info.stack, " while it is ",
              DescribeIntent(state, current), " (", member, " is in stack ", other.stack, ")"));
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
  return Finish(state, std::move(next), cause, context);
}

absl::StatusOr<Decision> PlanEnable(const ControllerState& state, const std::string& master,
                                    const std::string& slave, std::optional<bool> auto_resync,
                                    const PlanContext& context) {
  if (absl::Status st = CheckRequestId("master node", master); !st.ok()) return st;
  if (absl::Status st = CheckRequestId("slave node", slave); !st.ok()) return st;
  if (master == slave) {
    return absl::InvalidArgumentError(
        absl::StrCat("a node cannot be its own upstream (", master, ")"));
  }
  absl::StatusOr<const NodeRecord*> m = Find(state, master);
  if (!m.ok()) return m.status();
  absl::StatusOr<const NodeRecord*> s = Find(state, slave);
  if (!s.ok()) return s.status();
  for (const NodeRecord* record : {*m, *s}) {
    if (absl::Status st = CheckNoSwitchover(state, GroupMasterId(*record), context.now); !st.ok()) {
      return st;
    }
  }
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
    Note(next, master,
         absl::StrCat("group policy auto_resync ", *auto_resync ? "on" : "off", ": ", cause),
         context);
  };
  if ((*s)->role == Role::kSlave) {
    if ((*s)->upstream_id == master) {
      ControllerState next = state;
      Changes policy;
      set_policy(&next, &policy);
      if (policy.empty()) return Decision{state, {}, false};  // nothing to change
      Decision decision = Finish(state, std::move(next), cause, context);
      decision.changes = policy;
      return decision;
    }
    return absl::FailedPreconditionError(
        absl::StrCat(slave, " is already a slave of ", (*s)->upstream_id,
                     "; remove it first (slave remove ", slave, ")"));
  }
  if ((*s)->role == Role::kMaster && !SlaveIds(state, slave).empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(slave, " is the master of a group (", DescribeIntent(state, **s),
                     "); disable replication or remove its slaves first"));
  }
  ControllerState next = state;
  NodeRecord& new_master = next.nodes.at(master);
  new_master.role = Role::kMaster;
  NodeRecord& new_slave = next.nodes.at(slave);
  new_slave.role = Role::kSlave;
  new_slave.fenced = false;
  new_slave.catch_up_position.clear();
  new_slave.upstream_id = master;
  RequestCopy(&next, slave, /*rejoin_first=*/false);
  ClearAborted(&next, master);
  Changes policy;
  set_policy(&next, &policy);
  Decision decision = Finish(state, std::move(next), cause, context);
  decision.changes.insert(decision.changes.end(), policy.begin(), policy.end());
  return decision;
}

absl::StatusOr<Decision> PlanDisable(const ControllerState& state, const std::string& master,
                                     const PlanContext& context) {
  absl::StatusOr<const NodeRecord*> m =
      NamedOutsideSwitchover(state, "master node", master, context);
  if (!m.ok()) return m.status();
  if ((*m)->role != Role::kMaster) {
    std::string hint;
    if ((*m)->role == Role::kSlave) {
      hint = absl::StrCat(" (replication disable --master ", (*m)->upstream_id, ")");
    }
    return absl::FailedPreconditionError(
        absl::StrCat(master, " is not a master: it is ", DescribeIntent(state, **m), hint));
  }
  ControllerState next = state;
  for (const std::string& id : SlaveIds(state, master)) LeaveGroup(&next.nodes.at(id));
  LeaveGroup(&next.nodes.at(master));
  ClearAborted(&next, master);
  return Finish(state, std::move(next), absl::StrCat("replication disable --master ", master),
                context);
}

absl::StatusOr<Decision> PlanRemoveSlave(const ControllerState& state, const std::string& slave,
                                         const PlanContext& context) {
  absl::StatusOr<const NodeRecord*> s =
      NamedOutsideSwitchover(state, "slave node", slave, context);
  if (!s.ok()) return s.status();
  if ((*s)->role != Role::kSlave) {
    return absl::FailedPreconditionError(
        absl::StrCat(slave, " is not a slave: it is ", DescribeIntent(state, **s)));
  }
  ControllerState next = state;
  LeaveGroup(&next.nodes.at(slave));
  ClearAborted(&next, (*s)->upstream_id);
  return Finish(state, std::move(next), absl::StrCat("slave remove ", slave), context);
}

absl::StatusOr<Decision> PlanResync(const ControllerState& state, const std::string& slave,
                                    const PlanContext& context) {
  absl::StatusOr<const NodeRecord*> s =
      NamedOutsideSwitchover(state, "slave node", slave, context);
  if (!s.ok()) return s.status();
  if ((*s)->role != Role::kSlave) {
    return absl::FailedPreconditionError(absl::StrCat(slave, " is not a slave: it is ",
                                                      DescribeIntent(state, **s),
                                                      "; only a slave can be resynchronised"));
  }
  ControllerState next = state;
  RequestCopy(&next, slave, /*rejoin_first=*/false);
  ClearAborted(&next, (*s)->upstream_id);
  return Finish(state, std::move(next), absl::StrCat("resync ", slave), context);
}

}  // namespace tandem

namespace tandem {

absl::StatusOr<Decision> PlanAdopt(const ControllerState& state, const std::string& node,
                                   const PlanContext& context) {
  absl::StatusOr<const NodeRecord*> n = planner::Named(state, "node", node);
  if (!n.ok()) return n.status();
  const AgentLiveness& agent = context.Agent(node);
  if (!agent.observed.has_value() || agent.observed->hold_reason.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        node, "'s agent does not hold its role against this controller",
        agent.observed.has_value() ? "" : " (no report from it since the controller started)",
        ": there is nothing to adopt"));
  }
  ControllerState next = state;
  NodeRecord& record = next.nodes.at(node);
  record.desired.generation =
      std::max(record.desired.generation, agent.observed->seen_generation) + 1;
  record.adopting = true;
  const std::string cause = absl::StrCat(
      "adopt ", node, ": its agent held its role (", agent.observed->hold_reason,
      "); it takes this controller's desired state, ", DescribeTarget(record.desired),
      " (generation ", record.desired.generation, ")");
  planner::Note(&next, node, cause, context);
  Decision decision = Finish(state, std::move(next), cause, context);
  decision.changes.push_back(absl::StrCat(node, ": adopted: ", DescribeTarget(decision.state.nodes.at(node).desired),
                                          " (generation ",
                                          decision.state.nodes.at(node).desired.generation, ")"));
  return decision;
}

}  // namespace tandem

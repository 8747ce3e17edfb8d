#include "controller/desired.h"

#include <algorithm>
#include <map>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tandem {
namespace {

// Master id -> its slaves, sorted by id (std::map iteration order).
using GroupIndex = std::map<std::string, std::vector<const NodeRecord*>>;

GroupIndex IndexGroups(const ControllerState& state, const std::set<std::string>& queued) {
  GroupIndex index;
  for (const auto& [id, record] : state.nodes) {
    if (record.role != Role::kSlave) continue;
    if (queued.count(id) != 0 && !PublishedInGroup(record)) continue;
    index[record.upstream_id].push_back(&record);
  }
  return index;
}

const NodeRecord* GroupMaster(const ControllerState& state, const NodeRecord& node) {
  if (node.role == Role::kMaster) return &node;
  if (node.role == Role::kSlave) {
    auto it = state.nodes.find(node.upstream_id);
    if (it != state.nodes.end()) return &it->second;
  }
  return nullptr;
}

std::string WithPort(const std::string& host, uint32_t port, uint32_t group_port) {
  if (port == group_port) return host;
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

std::string Key(std::string_view prefix, std::string_view suffix) {
  return absl::StrCat(absl::string_view(prefix.data(), prefix.size()), "_",
                      absl::string_view(suffix.data(), suffix.size()));
}

EnvMap EnvFor(const ControllerState& state, const NodeRecord& node, const GroupIndex& groups) {
  const std::string_view prefix = EnvPrefix(node.info.engine);
  EnvMap env;
  const NodeRecord* master = GroupMaster(state, node);
  std::vector<std::string> reach, internal, external;
  if (master == nullptr) {
    const NodeInfo& self = node.info;
    env[Key(prefix, "ADDRESS")] = self.addresses.internal;
    env[Key(prefix, "ADDRESS_INT")] = self.addresses.internal;
    env[Key(prefix, "ADDRESS_EXT")] = self.addresses.external;
    env[Key(prefix, "PORT")] = absl::StrCat(self.port);
  } else {
    const NodeInfo& m = master->info;
    env[Key(prefix, "ADDRESS")] = ReachableAddress(m, node.info.stack);
    env[Key(prefix, "ADDRESS_INT")] = m.addresses.internal;
    env[Key(prefix, "ADDRESS_EXT")] = m.addresses.external;
    env[Key(prefix, "PORT")] = absl::StrCat(m.port);
    auto it = groups.find(m.id);
    if (it != groups.end()) {
      for (const NodeRecord* slave : it->second) {
        const NodeInfo& s = slave->info;
        reach.push_back(WithPort(ReachableAddress(s, node.info.stack), s.port, m.port));
        internal.push_back(WithPort(s.addresses.internal, s.port, m.port));
        if (!s.addresses.external.empty()) {
          external.push_back(WithPort(s.addresses.external, s.port, m.port));
        }
      }
    }
  }
  env[Key(prefix, "SLAVE_ADDRESSES")] = absl::StrJoin(reach, ",");
  env[Key(prefix, "SLAVE_ADDRESSES_INT")] = absl::StrJoin(internal, ",");
  env[Key(prefix, "SLAVE_ADDRESSES_EXT")] = absl::StrJoin(external, ",");
  env["TANDEM_ROLE"] = std::string(RoleName(node.role));
  return env;
}

DesiredState DesiredFor(const ControllerState& state, const NodeRecord& node,
                        const GroupIndex& groups, const std::set<std::string>& queued) {
  DesiredState desired;
  desired.role = node.role;
  desired.env = EnvFor(state, node, groups);
  if (node.role == Role::kMaster) {
    desired.fenced = node.fenced;
    desired.catch_up_position = node.catch_up_position;
  }
  if (node.role == Role::kSlave) {
    desired.resync_token = node.resync_token;
    desired.rejoin_first = node.rejoin_first;
    auto it = state.nodes.find(node.upstream_id);
    if (it != state.nodes.end()) {
      const NodeInfo& m = it->second.info;
      desired.upstream =
          Peer{m.id, m.stack, ReachableAddress(m, node.info.stack), m.port, m.transfer_port,
               m.tls_port};
    }
  } else if (node.role == Role::kMaster) {
    auto it = groups.find(node.info.id);
    if (it != groups.end()) {
      for (const NodeRecord* slave : it->second) {
        const NodeInfo& s = slave->info;
        Peer peer{s.id, s.stack, ReachableAddress(s, node.info.stack), s.port};
        // Its copy is under way: the one slave the master's agent streams a
        // backup to (a queued one waits, a seeded one has its copy).
        peer.bootstrapping = !slave->seeded && queued.count(s.id) == 0;
        desired.slaves.push_back(std::move(peer));
      }
    }
  }
  return desired;
}

}  // namespace

bool PublishedInGroup(const NodeRecord& record) {
  return record.desired.role == Role::kSlave && record.desired.upstream.id == record.upstream_id;
}

std::set<std::string> QueuedSlaves(const ControllerState& state, const DesiredPolicy& policy) {
  std::set<std::string> queued;
  if (policy.bootstraps_per_group == 0) return queued;
  // Unseeded slaves per master, in bootstrap order.
  std::map<std::string, std::vector<std::pair<uint64_t, std::string>>> waiting;
  for (const auto& [id, record] : state.nodes) {
    if (record.role == Role::kSlave && !record.seeded) {
      waiting[record.upstream_id].emplace_back(record.queue_seq, id);
    }
  }
  for (auto& [master, slaves] : waiting) {
    std::sort(slaves.begin(), slaves.end());
    for (size_t i = policy.bootstraps_per_group; i < slaves.size(); ++i) {
      queued.insert(slaves[i].second);
    }
  }
  return queued;
}

std::string ReachableAddress(const NodeInfo& target, const std::string& from_stack) {
  if (target.stack == from_stack || target.addresses.external.empty()) {
    return target.addresses.internal;
  }
  return target.addresses.external;
}

EnvMap ComputeEnv(const ControllerState& state, const NodeRecord& node,
                  const DesiredPolicy& policy) {
  return EnvFor(state, node, IndexGroups(state, QueuedSlaves(state, policy)));
}

DesiredState ComputeDesired(const ControllerState& state, const NodeRecord& node,
                            const DesiredPolicy& policy) {
  const std::set<std::string> queued = QueuedSlaves(state, policy);
  return DesiredFor(state, node, IndexGroups(state, queued), queued);
}

std::vector<std::string> RecomputeDesired(ControllerState* state, const DesiredPolicy& policy) {
  const std::set<std::string> queued = QueuedSlaves(*state, policy);
  const GroupIndex groups = IndexGroups(*state, queued);
  // Compute everything first: the index points into state->nodes, whose
  // desired states must not change while others are being computed.
  std::map<std::string, DesiredState> fresh;
  for (const auto& [id, record] : state->nodes) {
    if (queued.count(id) == 0 || record.desired.generation == 0) {
      fresh[id] = DesiredFor(*state, record, groups, queued);
    }
  }
  std::vector<std::string> changed;
  for (auto& [id, record] : state->nodes) {
    if (fresh.count(id) == 0) continue;  // queued: keeps what was published
    DesiredState& next = fresh[id];
    const bool is_new = record.desired.generation == 0;
    if (!is_new && record.desired.SameTarget(next)) continue;
    next.generation = record.desired.generation + 1;
    record.desired = std::move(next);
    changed.push_back(id);
  }
  return changed;  // std::map order: sorted
}

std::string DescribeTarget(const DesiredState& desired) {
  switch (desired.role) {
    case Role::kSlave:
      return absl::StrCat("slave of ", desired.upstream.id);
    case Role::kMaster: {
      if (desired.fenced) return "fenced master";
      if (desired.slaves.empty()) return "master (no slaves)";
      std::vector<std::string> ids;
      for (const Peer& slave : desired.slaves) ids.push_back(slave.id);
      return absl::StrCat("master of ", absl::StrJoin(ids, ","));
    }
    case Role::kStandalone:
      return "standalone";
    case Role::kUnspecified:
      break;
  }
  return "unspecified";
}

std::string DescribeChange(const DesiredState* before, const DesiredState& after) {
  const std::string to = DescribeTarget(after);
  if (before == nullptr || before->generation == 0) return absl::StrCat("new node -> ", to);
  const std::string from = DescribeTarget(*before);
  if (from != to) return absl::StrCat(from, " -> ", to);
  std::vector<std::string> what;
  if (before->resync_token != after.resync_token) what.push_back("resync requested");
  if (!(before->upstream == after.upstream)) what.push_back("upstream address changed");
  if (before->slaves != after.slaves) {
    // Only whose copy is under way changed, or the slaves themselves.
    bool only_bootstrap = before->slaves.size() == after.slaves.size();
    for (size_t i = 0; only_bootstrap && i < after.slaves.size(); ++i) {
      Peer a = before->slaves[i];
      a.bootstrapping = after.slaves[i].bootstrapping;
      only_bootstrap = a == after.slaves[i];
    }
    std::vector<std::string> copying;
    for (const Peer& slave : after.slaves) {
      if (slave.bootstrapping) copying.push_back(slave.id);
    }
    if (!only_bootstrap) {
      what.push_back("slave addresses changed");
    } else if (copying.empty()) {
      what.push_back("no slave copying");
    } else {
      what.push_back(absl::StrCat(absl::StrJoin(copying, ","), " copying"));
    }
  }
  if (before->env != after.env) what.push_back("env changed");
  if (what.empty()) what.push_back("unchanged");
  return absl::StrCat(to, ": ", absl::StrJoin(what, ", "));
}

}  // namespace tandem

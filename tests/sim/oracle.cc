#include "tests/sim/oracle.h"

#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tandem::sim {

void Oracle::OnControllerState(const ControllerState& state, const SimServers& servers,
                               Millis /*now*/) {
  std::map<std::string, Role> intent;
  std::map<std::string, std::string> upstream;
  for (const auto& [id, record] : state.nodes) {
    intent[id] = record.role;
    if (record.role == Role::kSlave) upstream[id] = record.upstream_id;
  }
  for (const auto& [id, record] : state.nodes) {
    if (record.role != Role::kMaster) continue;
    const Role before = intent_.count(id) ? intent_.at(id) : Role::kUnspecified;
    if (before == Role::kMaster) {
      // promote --force of a master still replaying its old master's
      // writes: it takes over without them.
      auto waiting = catching_up_.find(id);
      const SimServer* server = servers.Find(id);
      if (waiting != catching_up_.end() && record.catch_up_position.empty() && server != nullptr &&
          !server->Writable() && lineage_of_.count(id) != 0) {
        ++forced_takeovers_;
        lineages_[lineage_of_.at(id)].acked.clear();
      }
      continue;
    }
    // A slave that took its master's place continues that master's lineage.
    const std::string old_master = before == Role::kSlave ? upstream_.at(id) : "";
    const bool takeover = !old_master.empty() && intent_.count(old_master) != 0 &&
                          intent_.at(old_master) == Role::kMaster &&
                          intent[old_master] != Role::kMaster &&
                          lineage_of_.count(old_master) != 0;
    if (!takeover) {
      lineage_of_[id] = next_lineage_++;
      continue;
    }
    const int lineage = lineage_of_.at(old_master);
    lineage_of_[id] = lineage;
    if (record.catch_up_position.empty()) {
      // promote --force: what the old master acknowledged may be lost, and
      // its server may still accept writes until its agent hears of it.
      ++forced_takeovers_;
      lineages_[lineage].acked.clear();
      const SimServer* old = servers.Find(old_master);
      if (old != nullptr && old->Writable()) {
        excused_[old_master] = Excuse{state.nodes.at(old_master).desired.generation};
      }
    }
  }
  intent_ = std::move(intent);
  upstream_ = std::move(upstream);
  catching_up_.clear();
  for (const auto& [id, record] : state.nodes) {
    if (record.role == Role::kMaster && !record.catch_up_position.empty()) catching_up_.insert(id);
  }
}

void Oracle::OnWrite(const std::string& node, uint64_t id) {
  auto role = intent_.find(node);
  auto lineage = lineage_of_.find(node);
  if (role == intent_.end() || role->second != Role::kMaster || lineage == lineage_of_.end()) {
    return;
  }
  lineages_[lineage->second].acked.push_back(id);
  ++acknowledged_;
}

std::optional<std::string> Oracle::MissingWrites(const std::string& node, int lineage,
                                                 const SimServers& servers) const {
  auto it = lineages_.find(lineage);
  const SimServer* server = servers.Find(node);
  if (it == lineages_.end() || server == nullptr) return std::nullopt;
  const std::unordered_set<uint64_t> held(server->log.begin(), server->log.end());
  std::vector<std::string> missing;
  for (uint64_t id : it->second.acked) {
    if (held.count(id) == 0) missing.push_back(absl::StrCat("#", id));
    if (missing.size() >= 5) break;
  }
  if (missing.empty()) return std::nullopt;
  return absl::StrCat("acknowledged write lost: ", node, ", master of group #", lineage,
                      ", lacks ", absl::StrJoin(missing, " "), " (", it->second.acked.size(),
                      " acknowledged, no --force since)");
}

std::optional<std::string> Oracle::OnWritable(const std::string& node, const SimServers& servers) {
  auto role = intent_.find(node);
  auto lineage = lineage_of_.find(node);
  if (role == intent_.end() || role->second != Role::kMaster || lineage == lineage_of_.end()) {
    return std::nullopt;
  }
  return MissingWrites(node, lineage->second, servers);
}

void Oracle::OnDelivered(const std::string& node, uint64_t generation) {
  if (auto it = excused_.find(node); it != excused_.end() && generation >= it->second.revoked) {
    it->second.heard = true;
  }
}

void Oracle::OnPassStart(const std::string& node) {
  if (auto it = excused_.find(node); it != excused_.end() && it->second.heard) {
    it->second.passing = true;
  }
}

void Oracle::OnPassEnd(const std::string& node) {
  if (auto it = excused_.find(node); it != excused_.end() && it->second.passing) {
    excused_.erase(it);
  }
}

void Oracle::OnAgentRestart(const std::string& node) {
  if (auto it = excused_.find(node); it != excused_.end()) {
    it->second.heard = false;
    it->second.passing = false;
  }
}

std::optional<std::string> Oracle::Check(const SimServers& servers,
                                         const std::map<std::string, NodeSight>& nodes) const {
  std::map<int, std::vector<std::string>> writers;
  for (const auto& [id, server] : servers.servers) {
    if (!server.Writable() || excused_.count(id) != 0) continue;
    auto sight = nodes.find(id);
    if (sight == nodes.end() || sight->second.held_role != Role::kMaster) continue;
    auto lineage = lineage_of_.find(id);
    if (lineage == lineage_of_.end()) continue;
    writers[lineage->second].push_back(id);
  }
  for (const auto& [lineage, ids] : writers) {
    if (ids.size() > 1) {
      return absl::StrCat("two writable nodes in a group: ", absl::StrJoin(ids, " and "),
                          " accept writes as masters of group #", lineage);
    }
  }
  for (const auto& [id, sight] : nodes) {
    if (!sight.hold_reason.empty()) {
      return absl::StrCat(id, "'s agent holds its role against the controller: ",
                          sight.hold_reason);
    }
  }
  return std::nullopt;
}

std::optional<std::string> Oracle::CheckNoWriteLost(const SimServers& servers) const {
  for (const auto& [id, role] : intent_) {
    if (role != Role::kMaster) continue;
    auto lineage = lineage_of_.find(id);
    if (lineage == lineage_of_.end()) continue;
    if (auto missing = MissingWrites(id, lineage->second, servers)) return missing;
  }
  return std::nullopt;
}

}  // namespace tandem::sim

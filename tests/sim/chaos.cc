// What perturbs the simulated cluster while the faults last: faults of
// agents, hosts, the network, the controller and its clock, replication
// lag, and an operator issuing commands at random.
#include "tests/sim/world.h"

namespace tandem::sim {

std::vector<std::string> World::Intent(Role role) const {
  std::vector<std::string> ids;
  if (!registry_) return ids;
  for (const NodeView& view : registry_->ListNodes()) {
    if (view.desired.role == role || (role == Role::kSlave && !view.upstream_id.empty())) {
      if (role != Role::kMaster || view.upstream_id.empty()) ids.push_back(view.info.id);
    }
  }
  return ids;
}

// ------------------------------------------------------------------ faults

void World::ScheduleFault() {
  After(Uniform(1500, 6000), [this] {
    if (!faults_on()) return;
    InjectFault();
    ScheduleFault();
  });
}

void World::InjectFault() {
  ++result_.faults;
  std::vector<std::string> ids;
  for (const auto& [id, node] : nodes_) ids.push_back(id);
  // Masters are the interesting targets half of the time.
  std::vector<std::string> masters = Intent(Role::kMaster);
  const std::string& target = !masters.empty() && Chance(0.5)
                                  ? masters[static_cast<size_t>(Uniform(0, masters.size() - 1))]
                                  : ids[static_cast<size_t>(Uniform(0, ids.size() - 1))];
  Node& node = nodes_.at(target);
  Node* n = &node;
  const int kind = static_cast<int>(Uniform(0, 99));
  Mix(static_cast<uint64_t>(kind) * 31 + target.size());
  if (kind < 15) {
    if (!node.agent) return;
    Trace("FAULT ", target, ": agent killed");
    KillAgent(node, false);
    After(Uniform(1000, 20000), [this, n] { StartAgent(*n); });
  } else if (kind < 27) {
    if (!node.agent) return;
    // Killed at a step of its next pass.
    const int at = static_cast<int>(Uniform(0, 5));
    Trace("FAULT ", target, ": agent will be killed at mutating call ", at, " of its next pass");
    node.agent->gate.ArmAt(at);
  } else if (kind < 40) {
    if (!node.host_up) return;
    Trace("FAULT ", target, ": host crashes (server and agent down)");
    KillAgent(node, true);
    servers_.at(target).running = false;
    node.host_up = false;
    After(Uniform(2000, 30000), [this, n] {
      if (n->host_up) return;
      Trace(n->id, ": host is back");
      n->host_up = true;
      StartAgent(*n);
    });
  } else if (kind < 52) {
    if (!node.agent || node.hung) return;
    const Millis duration = Uniform(3000, 40000);
    Trace("FAULT ", target, ": agent hangs for ", duration, " ms (connection open)");
    node.hung = true;
    const int incarnation = node.agent->incarnation;
    After(duration, [this, n, incarnation] {
      if (n->agent && n->agent->incarnation == incarnation) Unhang(*n);
    });
  } else if (kind < 60) {
    if (!registry_) return;
    CrashController();
    After(Uniform(1000, 10000), [this] {
      if (!registry_ && !failed_) StartController();
    });
  } else if (kind < 68) {
    const Millis jump = Uniform(-40000, 40000);
    clock_offset_ += jump;
    Trace("FAULT controller: clock jumps ", jump, " ms");
  } else if (kind < 80) {
    const Millis duration = Uniform(2000, 30000);
    Trace("FAULT ", target, ": replication held back for ", duration, " ms");
    servers_.paused.insert(target);
    const std::string id = target;
    After(duration, [this, id] { servers_.paused.erase(id); });
  } else if (kind < 90) {
    const Millis duration = Uniform(3000, 20000);
    Trace("FAULT network: messages lost, delayed and reordered for ", duration, " ms");
    storm_until_ = static_cast<int>(std::max<Millis>(storm_until_, now_ + duration));
  } else {
    if (!node.agent || !node.host_up) return;
    // The server alone stops (and its agent must start it again).
    Trace("FAULT ", target, ": server stops");
    servers_.at(target).running = false;
  }
}

void World::Heal() {
  Trace("faults stop");
  storm_until_ = 0;
  servers_.paused.clear();
  if (!registry_) StartController();
  for (auto& [id, node] : nodes_) {
    Node* n = &node;
    if (!node.host_up) {
      node.host_up = true;
      After(Uniform(1, 500), [this, n] { StartAgent(*n); });
    } else if (!node.agent) {
      After(Uniform(1, 500), [this, n] { StartAgent(*n); });
    } else {
      node.agent->gate.ArmAt(-1);
      if (node.hung) Unhang(node);
    }
  }
}

// ---------------------------------------------------------------- operator

void World::ScheduleOperator() {
  After(Uniform(1000, 8000), [this] {
    if (!faults_on()) return;
    Operate();
    ScheduleOperator();
  });
}

void World::Operate() {
  if (!registry_) return;
  ++result_.operator_commands;
  std::vector<std::string> ids;
  for (const auto& [id, node] : nodes_) ids.push_back(id);
  auto pick = [&](const std::vector<std::string>& from) -> std::string {
    const std::vector<std::string>& pool = from.empty() ? ids : from;
    return pool[static_cast<size_t>(Uniform(0, pool.size() - 1))];
  };
  const std::vector<std::string> masters = Intent(Role::kMaster);
  const std::vector<std::string> slaves = Intent(Role::kSlave);
  const int kind = static_cast<int>(Uniform(0, 99));
  std::string what;
  absl::StatusOr<Changes> result;
  if (kind < 30) {
    const std::string master = Chance(0.6) ? pick(masters) : pick(ids);
    const std::string slave = pick(ids);
    what = absl::StrCat("replication enable --master ", master, " --slave ", slave);
    result = registry_->EnableReplication(master, slave);
  } else if (kind < 40) {
    const std::string slave = pick(slaves);
    what = absl::StrCat("slave remove ", slave);
    result = registry_->RemoveSlave(slave);
  } else if (kind < 60) {
    const std::string node = pick(slaves);
    what = absl::StrCat("promote ", node);
    result = registry_->Promote(node, false);
  } else if (kind < 72) {
    const std::string node = pick(slaves);
    what = absl::StrCat("promote --force ", node);
    result = registry_->Promote(node, true);
  } else if (kind < 80) {
    const std::string master = pick(masters);
    what = absl::StrCat("replication disable --master ", master);
    result = registry_->DisableReplication(master);
  } else {
    const std::string slave = pick(slaves);
    what = absl::StrCat("resync ", slave);
    result = registry_->Resync(slave);
  }
  Mix(static_cast<uint64_t>(kind) * 131 + (result.ok() ? 1 : 0));
  Trace("OPERATOR ", what, ": ", result.ok() ? "ok" : std::string(result.status().message()));
  ControllerChanged();
}

}  // namespace tandem::sim

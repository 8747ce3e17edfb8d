#include "tests/sim/sim_engine.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tandem::sim {
namespace {

bool IsPrefix(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
  return a.size() <= b.size() && std::equal(a.begin(), a.end(), b.begin());
}

std::string Address(const std::string& id) { return absl::StrCat(id, ":5432"); }

}  // namespace

const SimServer* SimServers::Find(const std::string& id) const {
  auto it = servers.find(id);
  return it == servers.end() ? nullptr : &it->second;
}

bool SimServers::Streaming(const SimServer& s) const {
  if (!s.running || !s.is_slave) return false;
  const SimServer* up = Find(s.upstream);
  return up != nullptr && up->running && !up->is_slave &&
         std::binary_search(up->served.begin(), up->served.end(), s.id) && IsPrefix(s.log, up->log);
}

std::string SimServers::OutOfSync(const SimServer& s) const {
  if (!s.is_slave) return "";
  const SimServer* up = Find(s.upstream);
  if (up == nullptr || !up->running || up->is_slave) return "";
  if (!IsPrefix(s.log, up->log)) {
    return absl::StrCat("holds writes ", s.upstream, " does not have (diverged at position ",
                        std::min(s.log.size(), up->log.size()), ")");
  }
  return "";
}

void SimServers::Replicate(size_t max_entries) {
  for (auto& [id, s] : servers) {
    if (paused.count(id) != 0 || !Streaming(s)) continue;
    const SimServer& up = servers.at(s.upstream);
    const size_t to = std::min(up.log.size(), s.log.size() + max_entries);
    s.log.insert(s.log.end(), up.log.begin() + static_cast<long>(s.log.size()),
                 up.log.begin() + static_cast<long>(to));
  }
}

// ------------------------------------------------------------------ engine

absl::Status SimEngine::Gate() {
  if (gate_->Dead()) return absl::UnavailableError("the agent process was killed");
  return absl::OkStatus();
}

absl::Status SimEngine::UpstreamServesMe(const Peer& upstream) const {
  const SimServer* up = world_->Find(upstream.id);
  if (up == nullptr || !up->running || up->is_slave ||
      !std::binary_search(up->served.begin(), up->served.end(), id_)) {
    return absl::UnavailableError(absl::StrCat(upstream.id, " does not serve ", id_, " yet"));
  }
  return absl::OkStatus();
}

absl::StatusOr<EngineFacts> SimEngine::Observe() {
  const SimServer& s = self();
  EngineFacts f;
  f.running = s.running;
  f.has_data = true;
  f.is_slave = s.is_slave;
  f.writable = s.Writable();
  f.upstream = s.upstream.empty() ? "" : Address(s.upstream);
  f.streaming = world_->Streaming(s);
  if (s.is_slave) {
    const SimServer* up = world_->Find(s.upstream);
    f.lag_bytes = up == nullptr ? -1 : static_cast<int64_t>(up->log.size()) -
                                           static_cast<int64_t>(s.log.size());
    f.out_of_sync = world_->OutOfSync(s);
  }
  f.data_bytes = 1000 + 8 * s.log.size();
  f.data_id = s.data_id;
  if (s.running) f.served_slaves = s.served;
  f.position = absl::StrCat(s.log.size());
  return f;
}

absl::Status SimEngine::Start() {
  if (absl::Status st = Gate(); !st.ok()) return st;
  self().running = true;
  return absl::OkStatus();
}

absl::Status SimEngine::Stop() {
  if (absl::Status st = Gate(); !st.ok()) return st;
  self().running = false;
  return absl::OkStatus();
}

absl::Status SimEngine::Fence() {
  if (absl::Status st = Gate(); !st.ok()) return st;
  SimServer& s = self();
  if (!s.is_slave) s.fenced = true;  // also a stopped server: it starts fenced
  return absl::OkStatus();
}

absl::Status SimEngine::ServeSlaves(const std::vector<Peer>& slaves) {
  if (absl::Status st = Gate(); !st.ok()) return st;
  SimServer& s = self();
  if (!s.running) return absl::UnavailableError("the server is not running");
  s.served.clear();
  for (const Peer& p : slaves) s.served.push_back(p.id);
  std::sort(s.served.begin(), s.served.end());
  return absl::OkStatus();
}

absl::StatusOr<std::string> SimEngine::Bootstrap(const Peer& /*self*/, const Peer& upstream,
                                                 const ProgressFn& progress) {
  if (absl::Status st = Gate(); !st.ok()) return st;
  if (absl::Status st = UpstreamServesMe(upstream); !st.ok()) return st;
  const SimServer& up = world_->at(upstream.id);
  SimServer& s = self();
  progress(up.log.size() / 2, up.log.size());
  ++s.moved_aside;  // the old data directory is kept aside
  s.log = up.log;
  s.data_id = up.data_id;
  s.is_slave = true;
  s.upstream = upstream.id;
  s.fenced = false;
  s.served.clear();
  s.running = false;
  return s.data_id;
}

absl::StatusOr<std::string> SimEngine::Rejoin(const Peer& /*self*/, const Peer& upstream) {
  if (absl::Status st = Gate(); !st.ok()) return st;
  SimServer& s = self();
  if (s.Writable()) return absl::FailedPreconditionError("refusing to rejoin a writable server");
  if (absl::Status st = UpstreamServesMe(upstream); !st.ok()) return st;
  const SimServer& up = world_->at(upstream.id);
  if (!IsPrefix(s.log, up.log)) {
    return absl::FailedPreconditionError(
        absl::StrCat("holds writes ", upstream.id, " lacks: a full copy keeps them aside"));
  }
  s.is_slave = true;
  s.upstream = upstream.id;
  s.fenced = false;
  s.served.clear();
  s.running = true;
  return s.data_id;
}

absl::Status SimEngine::Follow(const Peer& /*self*/, const Peer& upstream) {
  if (absl::Status st = Gate(); !st.ok()) return st;
  SimServer& s = self();
  if (!s.is_slave) return absl::FailedPreconditionError("a writable server cannot follow");
  s.upstream = upstream.id;
  return absl::OkStatus();
}

absl::Status SimEngine::MakeWritable() {
  if (absl::Status st = Gate(); !st.ok()) return st;
  SimServer& s = self();
  if (!s.running) return absl::UnavailableError("the server is not running");
  const bool was = s.Writable();
  s.is_slave = false;
  s.fenced = false;
  s.upstream.clear();
  if (!was) on_writable_(id_);
  return absl::OkStatus();
}

absl::StatusOr<bool> SimEngine::HasReplayed(const std::string& position) {
  uint64_t wanted = 0;
  if (!absl::SimpleAtoi(position, &wanted)) {
    return absl::InvalidArgumentError(absl::StrCat("bad position ", position));
  }
  return self().log.size() >= wanted;
}

// -------------------------------------------------------------------- host

absl::Status SimHost::RecordRole(Role role) {
  if (gate_->Dead()) return absl::UnavailableError("the agent process was killed");
  return disk_->RecordRole(role);
}

absl::Status SimHost::RecordBootstrap(const BootstrapRecord& record) {
  if (gate_->Dead()) return absl::UnavailableError("the agent process was killed");
  return disk_->RecordBootstrap(record);
}

absl::Status SimHost::WriteEnv(const EnvMap& env) {
  if (gate_->Dead()) return absl::UnavailableError("the agent process was killed");
  return disk_->WriteEnv(env);
}

}  // namespace tandem::sim

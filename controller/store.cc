#include "controller/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "nlohmann/json.hpp"

namespace tandem {
namespace {

using json = nlohmann::json;

constexpr char kFormat[] = "tandem-controller-state";
constexpr int kVersion = 1;

json PeerToJson(const Peer& peer) {
  return json{{"id", peer.id},
              {"stack", peer.stack},
              {"host", peer.host},
              {"port", peer.port},
              {"transfer_port", peer.transfer_port},
              {"tls_port", peer.tls_port},
              {"bootstrapping", peer.bootstrapping}};
}

Peer PeerFromJson(const json& j) {
  return Peer{j.at("id").get<std::string>(), j.at("stack").get<std::string>(),
              j.at("host").get<std::string>(), j.at("port").get<uint32_t>(),
              j.value("transfer_port", uint32_t{0}), j.value("tls_port", uint32_t{0}),
              j.value("bootstrapping", false)};
}

json DesiredToJson(const DesiredState& d) {
  json slaves = json::array();
  for (const Peer& slave : d.slaves) slaves.push_back(PeerToJson(slave));
  return json{{"generation", d.generation},
              {"role", std::string(RoleName(d.role))},
              {"upstream", PeerToJson(d.upstream)},
              {"slaves", std::move(slaves)},
              {"env", d.env},
              {"resync_token", d.resync_token},
              {"fenced", d.fenced},
              {"catch_up_position", d.catch_up_position},
              {"rejoin_first", d.rejoin_first}};
}

// Throws std::invalid_argument for values json cannot catch by type alone.
Role RoleFromJson(const json& j) {
  std::optional<Role> role = ParseRole(j.get<std::string>());
  if (!role) throw std::invalid_argument("unknown role \"" + j.get<std::string>() + "\"");
  return *role;
}

DesiredState DesiredFromJson(const json& j) {
  DesiredState d;
  d.generation = j.at("generation").get<uint64_t>();
  d.role = RoleFromJson(j.at("role"));
  d.upstream = PeerFromJson(j.at("upstream"));
  for (const json& slave : j.at("slaves")) d.slaves.push_back(PeerFromJson(slave));
  d.env = j.at("env").get<EnvMap>();
  d.resync_token = j.at("resync_token").get<std::string>();
  d.fenced = j.value("fenced", false);
  d.catch_up_position = j.value("catch_up_position", std::string());
  d.rejoin_first = j.value("rejoin_first", false);
  return d;
}

json NodeToJson(const NodeRecord& n) {
  return json{{"id", n.info.id},
              {"stack", n.info.stack},
              {"engine", std::string(EngineName(n.info.engine))},
              {"address_internal", n.info.addresses.internal},
              {"address_external", n.info.addresses.external},
              {"port", n.info.port},
              {"transfer_port", n.info.transfer_port},
              {"tls_port", n.info.tls_port},
              {"role", std::string(RoleName(n.role))},
              {"upstream", n.upstream_id},
              {"resync_token", n.resync_token},
              {"queue_seq", n.queue_seq},
              {"seeded", n.seeded},
              {"fenced", n.fenced},
              {"catch_up_position", n.catch_up_position},
              {"rejoin_first", n.rejoin_first},
              {"auto_resync_time", n.auto_resync_time},
              {"auto_resync", n.auto_resync.has_value() ? json(*n.auto_resync) : json(nullptr)},
              {"desired", DesiredToJson(n.desired)}};
}

NodeRecord NodeFromJson(const json& j) {
  NodeRecord n;
  n.info.id = j.at("id").get<std::string>();
  n.info.stack = j.at("stack").get<std::string>();
  const std::string engine = j.at("engine").get<std::string>();
  std::optional<EngineType> parsed = ParseEngine(engine);
  if (!parsed)
    throw std::invalid_argument("node " + n.info.id + ": unknown engine \"" + engine + "\"");
  n.info.engine = *parsed;
  n.info.addresses.internal = j.at("address_internal").get<std::string>();
  n.info.addresses.external = j.at("address_external").get<std::string>();
  n.info.port = j.at("port").get<uint32_t>();
  n.info.transfer_port = j.value("transfer_port", uint32_t{0});
  n.info.tls_port = j.value("tls_port", uint32_t{0});
  n.role = RoleFromJson(j.at("role"));
  n.upstream_id = j.at("upstream").get<std::string>();
  n.resync_token = j.at("resync_token").get<std::string>();
  // Absent in states saved before bootstrap queueing: an unseeded slave is
  // marked seeded by its next converged report.
  n.queue_seq = j.value("queue_seq", uint64_t{0});
  n.seeded = j.value("seeded", false);
  n.fenced = j.value("fenced", false);
  n.catch_up_position = j.value("catch_up_position", std::string());
  n.rejoin_first = j.value("rejoin_first", false);
  n.auto_resync_time = j.value("auto_resync_time", 0.0);
  if (auto it = j.find("auto_resync"); it != j.end() && it->is_boolean()) {
    n.auto_resync = it->get<bool>();
  }
  n.desired = DesiredFromJson(j.at("desired"));
  return n;
}

json EventToJson(const Event& e) {
  return json{{"seq", e.seq},
              {"unix_time", e.unix_time},
              {"node", e.node},
              {"kind", e.kind},
              {"message", e.message},
              {"ok", e.ok},
              {"generation", e.generation},
              {"seconds", e.seconds}};
}

Event EventFromJson(const json& j) {
  Event e;
  e.seq = j.at("seq").get<uint64_t>();
  e.unix_time = j.at("unix_time").get<double>();
  e.node = j.at("node").get<std::string>();
  e.kind = j.at("kind").get<std::string>();
  e.message = j.at("message").get<std::string>();
  e.ok = j.at("ok").get<bool>();
  e.generation = j.at("generation").get<uint64_t>();
  e.seconds = j.at("seconds").get<double>();
  return e;
}

// The invariants the registry maintains; a document breaking them was not
// written by it.
absl::Status Validate(const ControllerState& state) {
  for (const auto& [id, n] : state.nodes) {
    if (id.empty()) return absl::DataLossError("a node has an empty id");
    if (n.desired.generation == 0) {
      return absl::DataLossError(absl::StrCat("node ", id, " has no desired generation"));
    }
    if (n.role == Role::kUnspecified) {
      return absl::DataLossError(absl::StrCat("node ", id, " has no role"));
    }
    if (n.role == Role::kSlave) {
      auto it = state.nodes.find(n.upstream_id);
      if (it == state.nodes.end()) {
        return absl::DataLossError(
            absl::StrCat("node ", id, " is a slave of unknown node \"", n.upstream_id, "\""));
      }
      if (it->second.role != Role::kMaster) {
        return absl::DataLossError(
            absl::StrCat("node ", id, " is a slave of ", n.upstream_id, ", which is not a master"));
      }
    } else if (!n.upstream_id.empty()) {
      return absl::DataLossError(absl::StrCat("node ", id, " is ",
                                              n.role == Role::kMaster ? "a master" : "standalone",
                                              " but has upstream \"", n.upstream_id, "\""));
    }
  }
  uint64_t last = 0;
  for (const Event& e : state.events) {
    if (e.seq <= last || e.seq >= state.next_event_seq) {
      return absl::DataLossError(absl::StrCat("event sequence numbers out of order at ", e.seq,
                                              " (next_event_seq ", state.next_event_seq, ")"));
    }
    last = e.seq;
  }
  return absl::OkStatus();
}

}  // namespace

std::string SerializeState(const ControllerState& state) {
  json nodes = json::array();
  for (const auto& [id, record] : state.nodes) nodes.push_back(NodeToJson(record));
  json events = json::array();
  for (const Event& e : state.events) events.push_back(EventToJson(e));
  json doc{{"format", kFormat},
           {"version", kVersion},
           {"next_event_seq", state.next_event_seq},
           {"resync_counter", state.resync_counter},
           {"promoting", state.promoting},
           {"nodes", std::move(nodes)},
           {"events", std::move(events)}};
  // Invalid UTF-8 (which the registry never lets in) is replaced rather
  // than throwing.
  return doc.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

absl::StatusOr<ControllerState> ParseState(const std::string& text) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::DataLossError("not a valid JSON document");
  if (!doc.is_object()) return absl::DataLossError("not a JSON object");
  ControllerState state;
  try {
    if (doc.value("format", "") != kFormat) {
      return absl::DataLossError(absl::StrCat("\"format\" is not \"", kFormat, "\""));
    }
    const int version = doc.at("version").get<int>();
    if (version != kVersion) {
      return absl::DataLossError(absl::StrCat(
          "format version ", version, " is not supported (this build reads ", kVersion, ")"));
    }
    state.next_event_seq = doc.at("next_event_seq").get<uint64_t>();
    state.resync_counter = doc.at("resync_counter").get<uint64_t>();
    state.promoting = doc.value("promoting", std::string());
    for (const json& j : doc.at("nodes")) {
      NodeRecord record = NodeFromJson(j);
      std::string id = record.info.id;
      if (!state.nodes.emplace(id, std::move(record)).second) {
        return absl::DataLossError(absl::StrCat("node ", id, " appears twice"));
      }
    }
    for (const json& j : doc.at("events")) state.events.push_back(EventFromJson(j));
  } catch (const std::exception& e) {
    return absl::DataLossError(e.what());
  }
  if (absl::Status st = Validate(state); !st.ok()) return st;
  return state;
}

// ---------------------------------------------------------------- FileStore

absl::StatusOr<std::unique_ptr<FileStore>> FileStore::Open(const std::string& data_dir) {
  if (data_dir.empty()) return absl::InvalidArgumentError("the data dir is empty");
  if (absl::Status st = MakeDirs(data_dir); !st.ok()) return st;
  const std::string lock_path = absl::StrCat(data_dir, "/", kLockFile);
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("opening ", lock_path, ": ", std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data dir ", data_dir, " is in use by another tandem-controller (lock ", lock_path, ")"));
    }
    return absl::InternalError(absl::StrCat("locking ", lock_path, ": ", std::strerror(err)));
  }
  // Informational: who holds the lock.
  const std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) == 0) {
    [[maybe_unused]] ssize_t n = ::pwrite(fd, pid.data(), pid.size(), 0);
  }
  return std::unique_ptr<FileStore>(new FileStore(absl::StrCat(data_dir, "/", kStateFile), fd));
}

FileStore::~FileStore() { ::close(lock_fd_); }

absl::StatusOr<std::optional<ControllerState>> FileStore::Load() {
  absl::StatusOr<std::string> text = ReadFile(path_);
  if (absl::IsNotFound(text.status())) return std::nullopt;
  if (!text.ok()) return text.status();
  absl::StatusOr<ControllerState> state = ParseState(*text);
  if (!state.ok()) {
    return absl::DataLossError(
        absl::StrCat("state file ", path_, " is unreadable: ", state.status().message(),
                     " (move it aside to start empty, or restore a backup)"));
  }
  return std::optional<ControllerState>(*std::move(state));
}

absl::Status FileStore::Save(const ControllerState& state) {
  absl::Status st = WriteFileAtomic(path_, SerializeState(state), 0644);
  if (!st.ok()) {
    return absl::Status(st.code(), absl::StrCat("while saving ", path_, ": ", st.message()));
  }
  return absl::OkStatus();
}

// -------------------------------------------------------------- MemoryStore

MemoryStore::MemoryStore() : content_(std::make_shared<Content>()) {}

absl::StatusOr<std::optional<ControllerState>> MemoryStore::Load() {
  if (!content_->text) return std::nullopt;
  absl::StatusOr<ControllerState> state = ParseState(*content_->text);
  if (!state.ok()) {
    return absl::DataLossError(
        absl::StrCat("state in memory is unreadable: ", state.status().message()));
  }
  return std::optional<ControllerState>(*std::move(state));
}

absl::Status MemoryStore::Save(const ControllerState& state) {
  if (content_->fail_count > 0) {
    --content_->fail_count;
    return content_->fail_status;
  }
  content_->text = SerializeState(state);
  ++content_->save_count;
  return absl::OkStatus();
}

void MemoryStore::FailSaves(int count, absl::Status status) {
  content_->fail_count = count;
  content_->fail_status = std::move(status);
}

void MemoryStore::SetContent(std::string text) { content_->text = std::move(text); }

int MemoryStore::save_count() const { return content_->save_count; }

}  // namespace tandem

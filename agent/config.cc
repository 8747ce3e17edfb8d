#include "agent/config.h"

#include "engines/engine_config.h"

#include <regex>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/address.h"
#include "common/files.h"
#include "common/status_util.h"
#include "yaml-cpp/yaml.h"

namespace tandem {
namespace {

// Fields are read through this class so that each error can name the file
// and the dotted field path, and unknown keys (typos) are refused.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  absl::Status Error(const std::string& field, const std::string& reason) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", field, ": ", reason));
  }

  absl::Status CheckKeys(const YAML::Node& map, const std::string& prefix,
                         const std::set<std::string>& known) const {
    if (!map.IsMap()) return Error(prefix.empty() ? "(top level)" : prefix, "must be a mapping");
    for (const auto& kv : map) {
      const std::string key = kv.first.as<std::string>();
      if (known.count(key) == 0) {
        return Error(prefix.empty() ? key : prefix + "." + key,
                     absl::StrCat("unknown field (known: ", absl::StrJoin(known, ", "), ")"));
      }
    }
    return absl::OkStatus();
  }

  absl::Status String(const YAML::Node& map, const std::string& key, const std::string& path,
                      std::string* out) const {
    const YAML::Node node = map[key];
    if (!node || node.IsNull()) return absl::OkStatus();
    if (!node.IsScalar()) return Error(path, "must be a string");
    *out = node.as<std::string>();
    return absl::OkStatus();
  }

  absl::Status Int(const YAML::Node& map, const std::string& key, const std::string& path,
                   long min, long max, long* out) const {
    const YAML::Node node = map[key];
    if (!node || node.IsNull()) return absl::OkStatus();
    long value = 0;
    if (!node.IsScalar() || !YAML::convert<long>::decode(node, value)) {
      return Error(path, "must be an integer");
    }
    if (value < min || value > max) return Error(path, absl::StrCat("must be ", min, "..", max));
    *out = value;
    return absl::OkStatus();
  }

  absl::Status Bool(const YAML::Node& map, const std::string& key, const std::string& path,
                    bool* out) const {
    const YAML::Node node = map[key];
    if (!node || node.IsNull()) return absl::OkStatus();
    if (!node.IsScalar() || !YAML::convert<bool>::decode(node, *out)) {
      return Error(path, "must be true or false");
    }
    return absl::OkStatus();
  }

 private:
  std::string source_;
};

bool ValidId(const std::string& id) {
  static const std::regex kId("^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$");
  return std::regex_match(id, kId);
}

bool ValidHostPort(const std::string& text) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return false;
  for (size_t i = colon + 1; i < text.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return false;
  }
  return true;
}

}  // namespace

uint32_t DefaultPort(EngineType engine) {
  switch (engine) {
    case EngineType::kPostgresql: return 5432;
    case EngineType::kMysql: return 3306;
    case EngineType::kRedis: return 6379;
    case EngineType::kMongodb: return 27017;
    case EngineType::kUnspecified: break;
  }
  return 0;
}

NodeInfo AgentConfig::Info() const {
  NodeInfo info{node, stack, engine.type, addresses, engine.port};
  info.tls_port = engine.tls_port;
  uint32_t port = 0;
  if (!transfer_listen.empty() &&
      absl::SimpleAtoi(absl::string_view(transfer_listen).substr(transfer_listen.rfind(':') + 1),
                       &port)) {
    info.transfer_port = port;
  }
  return info;
}

Peer AgentConfig::Self() const {
  return Peer{node, stack, addresses.internal, engine.port, 0, engine.tls_port};
}

absl::StatusOr<AgentConfig> ParseAgentConfig(const std::string& yaml, const std::string& source) {
  Reader r(source);
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid YAML: ", e.what()));
  }
  AgentConfig c;
  try {
    TANDEM_RETURN_IF_ERROR(r.CheckKeys(
        root, "",
        {"node", "stack", "controller", "controller_token_file", "addresses", "engine", "env_file",
         "env_hook", "health_listen", "state_dir", "reconcile_interval", "transfer_listen",
         "certs_dir", "tls_ca_file", "tls_cert_file", "tls_key_file", "insecure"}));
    if (const YAML::Node token = root["controller_token_file"]; token && !token.IsNull()) {
      return r.Error("controller_token_file",
                     "the shared token is gone: the agent now authenticates with its node's "
                     "certificate (mutual TLS). Remove this field, create the certificate "
                     "(tandemctl cert create-node NODE --address ADDRESS) and set certs_dir");
    }
    TANDEM_RETURN_IF_ERROR(r.String(root, "node", "node", &c.node));
    TANDEM_RETURN_IF_ERROR(r.String(root, "stack", "stack", &c.stack));
    TANDEM_RETURN_IF_ERROR(r.String(root, "controller", "controller", &c.controller));
    TANDEM_RETURN_IF_ERROR(r.String(root, "certs_dir", "certs_dir", &c.certs_dir));
    TANDEM_RETURN_IF_ERROR(r.String(root, "tls_ca_file", "tls_ca_file", &c.tls_ca_file));
    TANDEM_RETURN_IF_ERROR(r.String(root, "tls_cert_file", "tls_cert_file", &c.tls_cert_file));
    TANDEM_RETURN_IF_ERROR(r.String(root, "tls_key_file", "tls_key_file", &c.tls_key_file));
    TANDEM_RETURN_IF_ERROR(r.Bool(root, "insecure", "insecure", &c.insecure));
    TANDEM_RETURN_IF_ERROR(r.String(root, "env_file", "env_file", &c.env_file));
    TANDEM_RETURN_IF_ERROR(r.String(root, "env_hook", "env_hook", &c.env_hook));
    TANDEM_RETURN_IF_ERROR(r.String(root, "health_listen", "health_listen", &c.health_listen));
    TANDEM_RETURN_IF_ERROR(
        r.String(root, "transfer_listen", "transfer_listen", &c.transfer_listen));
    TANDEM_RETURN_IF_ERROR(r.String(root, "state_dir", "state_dir", &c.state_dir));
    long interval = c.reconcile_interval_seconds;
    TANDEM_RETURN_IF_ERROR(
        r.Int(root, "reconcile_interval", "reconcile_interval", 1, 3600, &interval));
    c.reconcile_interval_seconds = static_cast<int>(interval);

    if (const YAML::Node a = root["addresses"]; a && !a.IsNull()) {
      TANDEM_RETURN_IF_ERROR(r.CheckKeys(a, "addresses", {"internal", "external"}));
      TANDEM_RETURN_IF_ERROR(r.String(a, "internal", "addresses.internal", &c.addresses.internal));
      TANDEM_RETURN_IF_ERROR(r.String(a, "external", "addresses.external", &c.addresses.external));
    }

    const YAML::Node e = root["engine"];
    if (!e || e.IsNull()) return r.Error("engine", "missing");
    TANDEM_RETURN_IF_ERROR(r.CheckKeys(
        e, "engine",
        {"type", "host", "port", "data_dir", "user", "password_file", "os_user", "bin_dir",
         "systemd_unit", "start_command", "stop_command", "server_args", "log_file",
         "allow_restart", "replication_user", "replication_password_file", "timeout",
         "seed_method", "tls_mode", "tls_ca_file", "tls_cert_file", "tls_key_file",
         "out_of_sync_after", "tls_port"}));
    std::string type;
    TANDEM_RETURN_IF_ERROR(r.String(e, "type", "engine.type", &type));
    if (type.empty()) return r.Error("engine.type", "missing (postgresql | mysql | redis | mongodb)");
    std::optional<EngineType> engine_type = ParseEngine(type);
    if (!engine_type) {
      return r.Error("engine.type",
                     absl::StrCat("unknown engine '", type, "' (postgresql | mysql | redis | mongodb)"));
    }
    c.engine.type = *engine_type;
    long port = DefaultPort(c.engine.type);
    TANDEM_RETURN_IF_ERROR(r.Int(e, "port", "engine.port", 1, 65535, &port));
    c.engine.port = static_cast<uint32_t>(port);
    TANDEM_RETURN_IF_ERROR(r.String(e, "host", "engine.host", &c.engine.host));
    TANDEM_RETURN_IF_ERROR(r.String(e, "data_dir", "engine.data_dir", &c.engine.data_dir));
    TANDEM_RETURN_IF_ERROR(r.String(e, "user", "engine.user", &c.engine.user));
    TANDEM_RETURN_IF_ERROR(r.String(e, "password_file", "engine.password_file", &c.engine.password_file));
    TANDEM_RETURN_IF_ERROR(r.String(e, "os_user", "engine.os_user", &c.engine.os_user));
    TANDEM_RETURN_IF_ERROR(r.String(e, "bin_dir", "engine.bin_dir", &c.engine.bin_dir));
    TANDEM_RETURN_IF_ERROR(
        r.String(e, "systemd_unit", "engine.systemd_unit", &c.engine.systemd_unit));
    TANDEM_RETURN_IF_ERROR(r.String(e, "start_command", "engine.start_command", &c.engine.start_command));
    TANDEM_RETURN_IF_ERROR(r.String(e, "stop_command", "engine.stop_command", &c.engine.stop_command));
    TANDEM_RETURN_IF_ERROR(r.String(e, "log_file", "engine.log_file", &c.engine.log_file));
    TANDEM_RETURN_IF_ERROR(r.Bool(e, "allow_restart", "engine.allow_restart", &c.engine.allow_restart));
    TANDEM_RETURN_IF_ERROR(
        r.String(e, "replication_user", "engine.replication_user", &c.engine.replication_user));
    TANDEM_RETURN_IF_ERROR(r.String(e, "replication_password_file", "engine.replication_password_file",
                                    &c.engine.replication_password_file));
    TANDEM_RETURN_IF_ERROR(r.String(e, "seed_method", "engine.seed_method", &c.engine.seed_method));
    TANDEM_RETURN_IF_ERROR(r.String(e, "tls_mode", "engine.tls_mode", &c.engine.tls_mode));
    TANDEM_RETURN_IF_ERROR(r.String(e, "tls_ca_file", "engine.tls_ca_file", &c.engine.tls_ca_file));
    TANDEM_RETURN_IF_ERROR(
        r.String(e, "tls_cert_file", "engine.tls_cert_file", &c.engine.tls_cert_file));
    TANDEM_RETURN_IF_ERROR(r.String(e, "tls_key_file", "engine.tls_key_file", &c.engine.tls_key_file));
    long tls_port = 0;
    TANDEM_RETURN_IF_ERROR(r.Int(e, "tls_port", "engine.tls_port", 0, 65535, &tls_port));
    c.engine.tls_port = static_cast<uint32_t>(tls_port);
    long out_of_sync_after = c.engine.out_of_sync_after_seconds;
    TANDEM_RETURN_IF_ERROR(r.Int(e, "out_of_sync_after", "engine.out_of_sync_after", 1, 86400,
                                 &out_of_sync_after));
    c.engine.out_of_sync_after_seconds = static_cast<int>(out_of_sync_after);
    long timeout = c.engine.timeout_seconds;
    TANDEM_RETURN_IF_ERROR(r.Int(e, "timeout", "engine.timeout", 1, 86400, &timeout));
    c.engine.timeout_seconds = static_cast<int>(timeout);
    if (const YAML::Node args = e["server_args"]; args && !args.IsNull()) {
      if (!args.IsSequence()) return r.Error("engine.server_args", "must be a list of strings");
      for (const auto& arg : args) {
        if (!arg.IsScalar()) return r.Error("engine.server_args", "must be a list of strings");
        c.engine.server_args.push_back(arg.as<std::string>());
      }
    }
  } catch (const YAML::Exception& ex) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", ex.what()));
  }

  // Cross-field validation.
  for (absl::Status st : {ValidateReplicationTls(&c.engine), ValidateServerControl(c.engine)}) {
    if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": ", st.message()));
  }
  if (c.node.empty()) return r.Error("node", "missing (a unique id for this node)");
  if (!ValidId(c.node)) {
    return r.Error("node", "must be 1-63 characters of letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit");
  }
  if (c.stack.empty()) return r.Error("stack", "missing (the name of this node's stack/site)");
  if (!ValidId(c.stack)) return r.Error("stack", "must be 1-63 characters of letters, digits, '.', '_' or '-'");
  c.engine.stack = c.stack;  // for the master side of ReplicationTls
  if (!ValidHostPort(c.controller)) return r.Error("controller", "must be HOST:PORT");
  if (c.addresses.internal.empty()) return r.Error("addresses.internal", "missing");
  if (absl::Status st = CheckHostAddress("address", c.addresses.internal); !st.ok()) {
    return r.Error("addresses.internal", std::string(st.message()));
  }
  if (!c.addresses.external.empty()) {
    if (absl::Status st = CheckHostAddress("address", c.addresses.external); !st.ok()) {
      return r.Error("addresses.external", std::string(st.message()));
    }
  }
  if (c.engine.data_dir.empty() || c.engine.data_dir[0] != '/') {
    return r.Error("engine.data_dir", "must be an absolute path");
  }
  if (c.state_dir.empty() || c.state_dir[0] != '/') return r.Error("state_dir", "must be an absolute path");
  if (c.env_file.empty() || c.env_file[0] != '/') return r.Error("env_file", "must be an absolute path");
  if (!c.health_listen.empty() && !ValidHostPort(c.health_listen)) {
    return r.Error("health_listen", "must be HOST:PORT (or empty to disable)");
  }
  if (!c.transfer_listen.empty()) {
    uint32_t port = 0;
    if (!ValidHostPort(c.transfer_listen) ||
        !absl::SimpleAtoi(absl::string_view(c.transfer_listen).substr(c.transfer_listen.rfind(':') + 1),
                          &port) ||
        port == 0 || port > 65535) {
      return r.Error("transfer_listen",
                     "must be HOST:PORT with a port in 1..65535 (or empty to disable)");
    }
  }
  if (c.certs_dir.empty()) return r.Error("certs_dir", "must not be empty");
  if (c.insecure) {
    if (absl::Status st = CheckInsecureListen(
            {{"health_listen", c.health_listen}, {"transfer_listen", c.transfer_listen}});
        !st.ok()) {
      return r.Error("insecure", std::string(st.message()));
    }
  }
  for (const auto& [field, path] :
       {std::pair<const char*, std::string>{"engine.password_file", c.engine.password_file},
        {"engine.replication_password_file", c.engine.replication_password_file}}) {
    if (path.empty()) continue;
    if (absl::StatusOr<std::string> secret = ReadSecretFile(path); !secret.ok()) {
      return r.Error(field, std::string(secret.status().message()));
    }
  }
  if (!c.engine.os_user.empty()) {
    if (absl::StatusOr<UserIds> ids = LookupUser(c.engine.os_user); !ids.ok()) {
      return r.Error("engine.os_user", std::string(ids.status().message()));
    }
  }
  return c;
}

std::string AgentConfig::CaFile() const {
  return tls_ca_file.empty() ? certs_dir + "/ca.crt" : tls_ca_file;
}
std::string AgentConfig::CertFile() const {
  return tls_cert_file.empty() ? absl::StrCat(certs_dir, "/node.", node, ".crt") : tls_cert_file;
}
std::string AgentConfig::KeyFile() const {
  return tls_key_file.empty() ? absl::StrCat(certs_dir, "/node.", node, ".key") : tls_key_file;
}

absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("cannot read config ", path, ": ", text.status().message()));
  }
  return ParseAgentConfig(*text, path);
}

}  // namespace tandem

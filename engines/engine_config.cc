#include "engines/engine_config.h"

#include <unistd.h>

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_util.h"

namespace tandem {

namespace {

// systemd's unit name characters; a name never starts with "-" (it would
// read as an option of systemctl).
bool ValidUnitName(const std::string& name) {
  if (name.empty() || name.size() > 255 || name[0] == '-') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == ':' || c == '_' || c == '.' || c == '@' || c == '-' || c == '\\';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

absl::Status InvalidEngineField(std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("engine.", AbslView(field), ": ", AbslView(why)));
}

absl::Status ValidateReplicationTls(EngineConfig* config) {
  if (config->tls_mode.empty()) config->tls_mode = "off";
  if (config->tls_mode != "off" && config->tls_mode != "between-stacks" &&
      config->tls_mode != "always") {
    return InvalidEngineField("tls_mode", absl::StrCat("unknown mode \"", config->tls_mode,
                                                       "\" (off | between-stacks | always)"));
  }
  if (config->tls_mode != "off" && config->tls_ca_file.empty()) {
    return InvalidEngineField("tls_ca_file", absl::StrCat("required with tls_mode ",
                                                          config->tls_mode));
  }
  if (config->tls_cert_file.empty() != config->tls_key_file.empty()) {
    return InvalidEngineField(config->tls_cert_file.empty() ? "tls_cert_file" : "tls_key_file",
                              "tls_cert_file and tls_key_file go together");
  }
  for (const auto& [field, path] :
       {std::pair<const char*, const std::string&>{"tls_ca_file", config->tls_ca_file},
        {"tls_cert_file", config->tls_cert_file},
        {"tls_key_file", config->tls_key_file}}) {
    if (path.empty()) continue;
    if (path[0] != '/') {
      return InvalidEngineField(field, absl::StrCat("must be an absolute path, got \"", path, "\""));
    }
    absl::StatusOr<std::string> content = std::string(field) == "tls_key_file"
                                              ? ReadSecretFile(path)
                                              : ReadFile(path);
    if (!content.ok()) return InvalidEngineField(field, std::string(content.status().message()));
  }
  return absl::OkStatus();
}

absl::Status ValidateServerControl(const EngineConfig& config) {
  if (config.systemd_unit.empty()) return absl::OkStatus();
  if (!ValidUnitName(config.systemd_unit)) {
    return InvalidEngineField(
        "systemd_unit", absl::StrCat("\"", config.systemd_unit,
                                     "\" is not a systemd unit name (e.g. postgresql@15-main)"));
  }
  for (const auto& [field, set] :
       {std::pair<const char*, bool>{"start_command", !config.start_command.empty()},
        {"stop_command", !config.stop_command.empty()},
        {"server_args", !config.server_args.empty()}}) {
    if (set) {
      return InvalidEngineField(
          field, absl::StrCat("not used with engine.systemd_unit (", config.systemd_unit,
                              " starts and stops the server with the options of its own "
                              "configuration): remove one of them"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<UserIds>> ValidateEngineConfig(EngineConfig* config,
                                                            EngineType expected) {
  namespace fs = std::filesystem;
  if (config->type != expected && config->type != EngineType::kUnspecified) {
    return InvalidEngineField("type", absl::StrCat("is ", AbslView(EngineName(config->type)),
                                                   ", not ", AbslView(EngineName(expected))));
  }
  config->type = expected;
  if (config->port == 0 || config->port > 65535) {
    return InvalidEngineField("port", absl::StrCat("must be between 1 and 65535, got ", config->port));
  }
  if (config->data_dir.empty() || config->data_dir[0] != '/') {
    return InvalidEngineField(
        "data_dir", absl::StrCat("must be an absolute path, got \"", config->data_dir, "\""));
  }
  config->data_dir = fs::path(config->data_dir).lexically_normal().string();
  while (config->data_dir.size() > 1 && config->data_dir.back() == '/') config->data_dir.pop_back();
  if (config->data_dir == "/") return InvalidEngineField("data_dir", "must not be /");
  const std::string parent = fs::path(config->data_dir).parent_path().string();
  if (!fs::is_directory(parent)) {
    return InvalidEngineField("data_dir",
                              absl::StrCat("parent directory ", parent, " does not exist"));
  }
  if (config->user.empty()) return InvalidEngineField("user", "must not be empty");
  if (config->timeout_seconds < 1) {
    return InvalidEngineField("timeout_seconds",
                              absl::StrCat("must be at least 1, got ", config->timeout_seconds));
  }
  if (!config->log_file.empty() && config->log_file[0] != '/') {
    return InvalidEngineField(
        "log_file", absl::StrCat("must be an absolute path, got \"", config->log_file, "\""));
  }
  TANDEM_RETURN_IF_ERROR(ValidateServerControl(*config));
  std::optional<UserIds> os_ids;
  if (!config->os_user.empty()) {
    absl::StatusOr<UserIds> ids = LookupUser(config->os_user);
    if (!ids.ok()) return InvalidEngineField("os_user", std::string(ids.status().message()));
    if (::geteuid() != 0 && ids->uid != ::geteuid()) {
      return InvalidEngineField(
          "os_user", absl::StrCat("the agent runs as uid ", ::geteuid(), " and cannot act as ",
                                  config->os_user, ": run it as root or as ", config->os_user));
    }
    if (::geteuid() == 0) os_ids = *ids;
  }
  for (const auto& [field, path] :
       {std::pair<const char*, const std::string&>{"password_file", config->password_file},
        {"replication_password_file", config->replication_password_file}}) {
    if (path.empty()) continue;
    if (path[0] != '/') {
      return InvalidEngineField(field, absl::StrCat("must be an absolute path, got \"", path, "\""));
    }
    if (absl::StatusOr<std::string> secret = ReadSecretFile(path); !secret.ok()) {
      return InvalidEngineField(field, std::string(secret.status().message()));
    }
  }
  if (config->out_of_sync_after_seconds < 1) {
    return InvalidEngineField("out_of_sync_after", absl::StrCat("must be at least 1, got ",
                                                                config->out_of_sync_after_seconds));
  }
  TANDEM_RETURN_IF_ERROR(ValidateReplicationTls(config));
  return os_ids;
}

bool LogsInAsOsUser(const EngineConfig& config, const std::string& host) {
  return !host.empty() && host[0] == '/' && !config.os_user.empty() &&
         config.user == config.os_user && ::geteuid() == 0;
}

bool ReplicationTls(const EngineConfig& config, const Peer& self, const Peer& upstream) {
  if (config.tls_mode == "always") return true;
  return config.tls_mode == "between-stacks" && self.stack != upstream.stack;
}

}  // namespace tandem

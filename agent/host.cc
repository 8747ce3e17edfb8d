#include "agent/host.h"

#include <unistd.h>

#include <cctype>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "common/subprocess.h"

namespace tandem {
namespace {

bool NeedsQuotes(const std::string& value) {
  for (char c : value) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == ',' || c == ':' ||
          c == '-' || c == '_' || c == '/' || c == '[' || c == ']' || c == '@')) {
      return true;
    }
  }
  return false;
}

// Key=value records: one per line, as written by RecordBootstrap.
std::string KeyValue(const std::string& content, const std::string& key) {
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    if (absl::ConsumePrefix(&line, key + "=")) return std::string(line);
  }
  return "";
}

}  // namespace

absl::Status CheckEnv(const EnvMap& env) {
  for (const auto& [key, value] : env) {
    bool key_ok = !key.empty() && key.size() <= 128 && key[0] >= 'A' && key[0] <= 'Z';
    for (char c : key) {
      key_ok = key_ok && ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_');
    }
    if (!key_ok) {
      std::string shown;
      for (char c : key.substr(0, 64)) {
        const unsigned char u = static_cast<unsigned char>(c);
        shown += u < 0x20 || u >= 0x7f ? absl::StrCat("\\x", absl::Hex(u, absl::kZeroPad2))
                                       : std::string(1, c);
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "the desired env has a key \"", shown,
          "\" that is not [A-Z][A-Z0-9_]*; the env file is left as it is"));
    }
    if (value.find_first_of(std::string("\n\r\0", 3)) != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the desired env value of ", key,
          " holds a line break or NUL; the env file is left as it is"));
    }
  }
  return absl::OkStatus();
}

std::string RenderEnvFile(const EnvMap& env) {
  std::string out = "# Written by tandem-agent; do not edit.\n";
  for (const auto& [key, value] : env) {
    if (NeedsQuotes(value)) {
      // Single quotes: literal for sh and for systemd's EnvironmentFile.
      std::string quoted;
      for (char c : value) {
        if (c == '\'') {
          quoted += "'\\''";
        } else {
          quoted += c;
        }
      }
      absl::StrAppend(&out, key, "='", quoted, "'\n");
    } else {
      absl::StrAppend(&out, key, "=", value, "\n");
    }
  }
  return out;
}

EnvMap ParseEnvFile(const std::string& content) {
  EnvMap env;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    std::string key(line.substr(0, eq));
    absl::string_view raw = line.substr(eq + 1);
    std::string value;
    if (raw.size() >= 2 && raw.front() == '\'' && raw.back() == '\'') {
      // Undo the '\'' escape of RenderEnvFile.
      const absl::string_view inner = raw.substr(1, raw.size() - 2);
      for (size_t i = 0; i < inner.size(); ++i) {
        if (inner.substr(i, 4) == "'\\''") {
          value.push_back('\'');
          i += 3;
        } else {
          value.push_back(inner[i]);
        }
      }
    } else {
      value = std::string(raw);
    }
    env[key] = value;
  }
  return env;
}

LocalHost::LocalHost(std::string state_dir, std::string env_file, std::string env_hook)
    : state_dir_(std::move(state_dir)),
      env_file_(std::move(env_file)),
      env_hook_(std::move(env_hook)) {}

absl::StatusOr<HostFacts> LocalHost::Observe() {
  HostFacts facts;
  absl::StatusOr<std::string> role = ReadFile(RolePath());
  if (role.ok()) {
    facts.recorded_role =
        ParseRole(std::string(absl::StripAsciiWhitespace(*role))).value_or(Role::kUnspecified);
  } else if (!absl::IsNotFound(role.status())) {
    return role.status();
  }
  absl::StatusOr<std::string> boot = ReadFile(BootstrapPath());
  if (boot.ok()) {
    facts.bootstrap = BootstrapRecord{KeyValue(*boot, "upstream"), KeyValue(*boot, "resync_token"),
                                      KeyValue(*boot, "data_id")};
  } else if (!absl::IsNotFound(boot.status())) {
    return boot.status();
  }
  absl::StatusOr<std::string> env = ReadFile(env_file_);
  if (env.ok()) {
    facts.env_file_exists = true;
    facts.env = ParseEnvFile(*env);
  } else if (!absl::IsNotFound(env.status())) {
    return env.status();
  }
  facts.hook_pending = PathExists(HookPendingPath());
  return facts;
}

absl::Status LocalHost::RecordRole(Role role) {
  std::string content = absl::StrCat(std::string(RoleName(role)), "\n");
  absl::StatusOr<std::string> current = ReadFile(RolePath());
  if (current.ok() && *current == content) return absl::OkStatus();
  return WriteFileAtomic(RolePath(), content, 0600);
}

absl::Status LocalHost::RecordBootstrap(const BootstrapRecord& record) {
  return WriteFileAtomic(BootstrapPath(),
                         absl::StrCat("upstream=", record.upstream_id, "\nresync_token=",
                                      record.resync_token, "\ndata_id=", record.data_id, "\n"),
                         0600);
}

absl::Status LocalHost::WriteEnv(const EnvMap& env) {
  if (absl::Status st = CheckEnv(env); !st.ok()) return st;
  const std::string content = RenderEnvFile(env);
  absl::StatusOr<std::string> current = ReadFile(env_file_);
  const bool same = current.ok() && *current == content;
  const bool pending = PathExists(HookPendingPath());
  if (same && !pending) return absl::OkStatus();
  if (!env_hook_.empty() && !pending) {
    // The marker goes first: a crash after the rename still runs the hook.
    if (absl::Status st = WriteFileAtomic(HookPendingPath(), "", 0600); !st.ok()) return st;
  }
  if (!same) {
    if (absl::Status st = WriteFileAtomic(env_file_, content, 0644); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("writing env file: ", st.message()));
    }
  }
  if (env_hook_.empty()) return absl::OkStatus();
  RunOptions options;
  options.env = {{"TANDEM_ENV_FILE", env_file_}};
  options.timeout = std::chrono::seconds(120);
  absl::StatusOr<RunResult> result = RunShell(env_hook_, options);
  if (!result.ok()) return absl::InternalError(absl::StrCat("env hook: ", result.status().message()));
  if (result->exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("env hook exited with ", result->exit_code, OutputReason(result->output)));
  }
  ::unlink(HookPendingPath().c_str());
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> LocalHost::FreeDiskBytes(const std::string& dir) {
  return tandem::FreeDiskBytes(dir);
}

}  // namespace tandem

// The Host interface: what the agent keeps and changes on its own machine,
// outside the database engine — the env file and its hook, the agent's
// records (role, bootstrap), and free disk. LocalHost is the production
// implementation; tests use FakeHost (tests/fakes.h).
//
// Every mutating method is idempotent. Thread-safety: one thread at a time.
#ifndef TANDEM_AGENT_HOST_H_
#define TANDEM_AGENT_HOST_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/types.h"

namespace tandem {

// What the agent recorded after a successful bootstrap: the data was copied
// from `upstream_id` for `resync_token`, and has identity `data_id`.
struct BootstrapRecord {
  std::string upstream_id;
  std::string resync_token;
  std::string data_id;

  bool operator==(const BootstrapRecord&) const = default;
};

struct HostFacts {
  Role recorded_role = Role::kUnspecified;  // the role last recorded as reached
  BootstrapRecord bootstrap;
  EnvMap env;                  // the env file as it is now (empty if missing)
  bool env_file_exists = false;
  bool hook_pending = false;   // the env file changed but the hook has not succeeded yet

  bool operator==(const HostFacts&) const = default;
};

class Host {
 public:
  virtual ~Host() = default;

  // Reads the records and the env file. Changes nothing.
  virtual absl::StatusOr<HostFacts> Observe() = 0;

  // Records the role the node has reached. OK if already recorded.
  virtual absl::Status RecordRole(Role role) = 0;

  // Records a finished bootstrap. OK if already recorded.
  virtual absl::Status RecordBootstrap(const BootstrapRecord& record) = 0;

  // Writes the env file atomically when its content differs, then runs the
  // hook; runs the hook again if an earlier run failed. OK when the file
  // already holds `env` and no hook run is pending.
  virtual absl::Status WriteEnv(const EnvMap& env) = 0;

  // Free bytes on the filesystem holding `dir`.
  virtual absl::StatusOr<uint64_t> FreeDiskBytes(const std::string& dir) = 0;
};

// Renders `KEY=value` lines, sorted by key; valid as a systemd
// EnvironmentFile and for sh sourcing (values are quoted when needed).
std::string RenderEnvFile(const EnvMap& env);
// What an env file may hold (the desired state comes over the network):
// keys of [A-Z][A-Z0-9_]*, values without a newline, carriage return or
// NUL. InvalidArgument naming the first key that breaks the rule.
absl::Status CheckEnv(const EnvMap& env);
// Parses what RenderEnvFile writes (and plain KEY=value lines).
EnvMap ParseEnvFile(const std::string& content);

// Production Host: records under `state_dir`, env file at `env_file`,
// `env_hook` run with /bin/sh -c after each change (empty: none).
class LocalHost : public Host {
 public:
  LocalHost(std::string state_dir, std::string env_file, std::string env_hook);

  absl::StatusOr<HostFacts> Observe() override;
  absl::Status RecordRole(Role role) override;
  absl::Status RecordBootstrap(const BootstrapRecord& record) override;
  absl::Status WriteEnv(const EnvMap& env) override;
  absl::StatusOr<uint64_t> FreeDiskBytes(const std::string& dir) override;

 private:
  std::string RolePath() const { return state_dir_ + "/role"; }
  std::string BootstrapPath() const { return state_dir_ + "/bootstrap"; }
  std::string HookPendingPath() const { return state_dir_ + "/env-hook-pending"; }

  const std::string state_dir_;
  const std::string env_file_;
  const std::string env_hook_;
};

}  // namespace tandem

#endif  // TANDEM_AGENT_HOST_H_

// How an engine starts and stops its server when it does not use its own
// tool (pg_ctl, mariadbd, redis-server), shared by every engine:
//   engine.systemd_unit      `systemctl start|stop UNIT`, run as the agent's
//                            own user (root: the distribution's units are
//                            system units), its output captured;
//   engine.start_command /   /bin/sh -c COMMAND as engine.os_user, its output
//   engine.stop_command      appended to the server log (a start command may
//                            leave a daemon holding its stdout: never a pipe).
// A failure always says why: the exit code, then systemctl's output and the
// unit's journal since the call, or the lines the command added to the log
// (" (no output)" when there are none).
#ifndef TANDEM_ENGINES_SERVER_CONTROL_H_
#define TANDEM_ENGINES_SERVER_CONTROL_H_

#include <chrono>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "common/files.h"
#include "engines/engine_config.h"

namespace tandem {

enum class ServerAction { kStart, kStop };

// Whether `config` replaces the engine's own way to start (stop) the server.
bool CustomServerControl(const EngineConfig& config, ServerAction action);

// What RunServerControl runs, for messages: "systemctl start mariadb",
// "engine.stop_command".
std::string ServerControlName(const EngineConfig& config, ServerAction action);

// Runs the custom start or stop (CustomServerControl must be true), waiting
// at most `timeout`. `log_file` receives a command's output ("" or a file
// that cannot be created: /dev/null). Returns OK when it exits 0 (the caller
// then waits for the server itself); Internal "<what> exited with N: <why>"
// otherwise; DeadlineExceeded or NotFound from Run(). Idempotent as far as
// the unit or command is (systemctl is).
absl::Status RunServerControl(const EngineConfig& config, ServerAction action,
                              const std::string& log_file, std::chrono::milliseconds timeout);

// Creates the server log `path` (mode 0640, owned by `owner` when set) when
// it does not exist yet: the server, running as os_user, appends to it.
// FailedPrecondition naming engine.log_file when it cannot be created.
absl::Status EnsureServerLog(const std::string& path, const std::optional<UserIds>& owner);

}  // namespace tandem

#endif  // TANDEM_ENGINES_SERVER_CONTROL_H_

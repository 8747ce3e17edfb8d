#include "engines/server_control.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_util.h"
#include "common/subprocess.h"

namespace tandem {
namespace {

const char* Verb(ServerAction action) { return action == ServerAction::kStart ? "start" : "stop"; }

// The unit's journal since `since` (seconds since the epoch), its last lines
// on one line; "" when there is none or journalctl cannot say.
std::string JournalTail(const std::string& unit, std::time_t since) {
  RunOptions options;
  options.env = {{"LC_ALL", "C"}};
  options.timeout = std::chrono::seconds(10);
  absl::StatusOr<RunResult> journal =
      Run({"journalctl", "--unit", unit, "--since", absl::StrCat("@", since), "--lines", "15",
           "--no-pager", "--quiet", "--output", "cat"},
          options);
  if (!journal.ok() || journal->exit_code != 0) return "";
  return OutputTail(journal->output, 1200);
}

}  // namespace

bool CustomServerControl(const EngineConfig& config, ServerAction action) {
  if (!config.systemd_unit.empty()) return true;
  return !(action == ServerAction::kStart ? config.start_command : config.stop_command).empty();
}

std::string ServerControlName(const EngineConfig& config, ServerAction action) {
  if (!config.systemd_unit.empty()) {
    return absl::StrCat("systemctl ", Verb(action), " ", config.systemd_unit);
  }
  return action == ServerAction::kStart ? "engine.start_command" : "engine.stop_command";
}

absl::Status RunServerControl(const EngineConfig& config, ServerAction action,
                              const std::string& log_file, std::chrono::milliseconds timeout) {
  const std::string what = ServerControlName(config, action);
  RunOptions options;
  options.env = {{"LC_ALL", "C"}};
  options.cwd = "/";
  options.timeout = timeout;
  if (!config.systemd_unit.empty()) {
    // The journal's timestamps have seconds: one second back keeps the
    // lines of this very call.
    const std::time_t since = std::time(nullptr) - 1;
    absl::StatusOr<RunResult> result =
        Run({"systemctl", Verb(action), config.systemd_unit}, options);
    if (!result.ok()) return Context(what, result.status());
    if (result->exit_code == 0) return absl::OkStatus();
    const std::string journal = JournalTail(config.systemd_unit, since);
    return absl::InternalError(absl::StrCat(
        what, " exited with ", result->exit_code, OutputReason(result->output),
        journal.empty() ? "" : absl::StrCat("; journal of ", config.systemd_unit, ": ", journal)));
  }
  const std::string& command =
      action == ServerAction::kStart ? config.start_command : config.stop_command;
  options.run_as = config.os_user;
  // A start command may leave the server running: it outlives the agent.
  options.kill_with_parent = action == ServerAction::kStop;
  const bool to_log =
      !log_file.empty() && PathExists(std::filesystem::path(log_file).parent_path().string());
  options.output_file = to_log ? log_file : "/dev/null";
  const uint64_t offset = to_log ? FileSize(log_file) : 0;
  absl::StatusOr<RunResult> result = RunShell(command, options);
  if (!result.ok()) return Context(what, result.status());
  if (result->exit_code == 0) return absl::OkStatus();
  const std::string added = to_log ? ReadTail(log_file, 4000, offset) : "";
  const std::string reason = OutputReason(added, 1200);
  return absl::InternalError(
      absl::StrCat(what, " exited with ", result->exit_code, reason,
                   added.empty() ? "" : absl::StrCat(" (its output in ", log_file, ")")));
}

absl::Status EnsureServerLog(const std::string& path, const std::optional<UserIds>& owner) {
  if (PathExists(path)) return absl::OkStatus();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("engine.log_file: cannot create ", path, ": ", std::strerror(errno)));
  }
  if (owner.has_value()) (void)::fchown(fd, owner->uid, owner->gid);
  ::close(fd);
  return absl::OkStatus();
}

}  // namespace tandem

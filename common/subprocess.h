// Running external tools (pg_ctl, pg_basebackup, hooks, ...).
//
// Uses posix_spawn, never fork(): the agent runs gRPC threads. Secrets go
// through environment variables or files, never argv.
#ifndef TANDEM_COMMON_SUBPROCESS_H_
#define TANDEM_COMMON_SUBPROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem {

struct RunOptions {
  // Run as this OS user (via setpriv) when the caller is root and the user is
  // another one. Empty: the caller's user.
  std::string run_as;
  // Added to (or replacing in) the caller's environment. systemd's
  // variables for the caller itself (NOTIFY_SOCKET, WATCHDOG_*, LISTEN_*)
  // are never passed on: a tool or a server it starts is not the service.
  std::vector<std::pair<std::string, std::string>> env;
  // Where stdout and stderr go: "" = captured into RunResult::output (the
  // last 64 KiB), otherwise appended to this file.
  std::string output_file;
  std::string cwd;
  // The tool gets SIGKILL when the calling thread dies (setpriv --pdeathsig),
  // so that an agent killed mid-step leaves no tool writing behind it.
  // Daemons the tool forks (pg_ctl's server) are not affected.
  bool kill_with_parent = true;
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
};

struct RunResult {
  int exit_code = 0;    // 128+N when killed by signal N
  std::string output;   // captured stdout+stderr (tail)
};

// Starts argv[0] (searched in PATH; NotFound when it cannot be run) as
// `options` says (run_as, env, cwd, kill_with_parent; output_file and
// timeout are Run()'s) in its own process group, with `stdin_fd`,
// `stdout_fd` and `stderr_fd` as its fds 0, 1 and 2 (-1: /dev/null), and
// returns its pid without waiting. The caller keeps (and closes) its fds and
// reaps the process. For tools whose input or output is streamed.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const RunOptions& options,
                            int stdin_fd, int stdout_fd, int stderr_fd);

// Runs argv[0] (searched in PATH) and waits for it. Returns the result
// whatever the exit code; an error status only when it could not be started
// (NotFound) or ran past the timeout (DeadlineExceeded, after SIGKILL).
absl::StatusOr<RunResult> Run(const std::vector<std::string>& argv, const RunOptions& options = {});

// Runs `command` with /bin/sh -c.
absl::StatusOr<RunResult> RunShell(const std::string& command, const RunOptions& options = {});

// Run() and turn a non-zero exit into an Internal error that names the tool
// and ends with the tail of its output.
absl::Status RunChecked(const std::vector<std::string>& argv, const RunOptions& options = {});

// The last line(s) of a tool's output, trimmed, for error messages.
std::string OutputTail(const std::string& output, size_t max_chars = 400);

// ": <OutputTail(output)>", or " (no output)" when it is empty: what follows
// "<tool> exited with N" in an error, so that the reason is never empty.
std::string OutputReason(const std::string& output, size_t max_chars = 400);

}  // namespace tandem

#endif  // TANDEM_COMMON_SUBPROCESS_H_

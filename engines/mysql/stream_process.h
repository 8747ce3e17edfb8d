// A tool whose stdin is written, or whose stdout is read, piece by piece by
// the caller: backup streams of any size go through in bounded memory, and a
// full pipe blocks the writer (backpressure). common/subprocess.h runs tools
// whose output is captured whole or sent to a file; this is its streaming
// counterpart (same spawning rules: posix_spawn, never fork; setpriv for
// another OS user; secrets never in argv).
//
// The tool runs in its own process group; with kill_with_parent (the
// default) it gets SIGKILL when the thread that started it dies (setpriv
// --pdeathsig), so an agent killed mid-transfer leaves no tool behind.
//
// Thread-safety: one thread at a time, except Kill(), which may be called
// from any thread to unblock a Read or Write.
#ifndef TANDEM_ENGINES_MYSQL_STREAM_PROCESS_H_
#define TANDEM_ENGINES_MYSQL_STREAM_PROCESS_H_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tandem {

struct StreamOptions {
  // Run as this OS user (setpriv) when the caller is root and the user is
  // another one. Empty: the caller's user.
  std::string run_as;
  // Added to (or replacing in) the caller's environment.
  std::vector<std::pair<std::string, std::string>> env;
  std::string cwd = "/";
  bool pipe_stdin = false;   // else stdin is /dev/null
  bool pipe_stdout = false;  // else stdout goes to log_file with stderr
  // stderr (and stdout unless piped) is appended here; "" = /dev/null.
  std::string log_file;
  bool kill_with_parent = true;
};

class StreamProcess {
 public:
  // NotFound when argv[0] cannot be run.
  static absl::StatusOr<std::unique_ptr<StreamProcess>> Start(const std::vector<std::string>& argv,
                                                              const StreamOptions& options);
  // Kills the process group (SIGKILL) when the tool still runs, and reaps it.
  ~StreamProcess();
  StreamProcess(const StreamProcess&) = delete;
  StreamProcess& operator=(const StreamProcess&) = delete;

  // Writes all of `data` to the tool's stdin, blocking while the pipe is
  // full. Unavailable when the tool no longer reads it (it exited).
  absl::Status Write(std::string_view data);
  // Closes stdin: the tool sees end of input. Idempotent.
  void CloseStdin();

  // Reads the tool's stdout into `out` (replacing its content) until it
  // holds `max_bytes` or stdout ends. Returns false once stdout has ended
  // and nothing was read.
  absl::StatusOr<bool> Read(std::string* out, size_t max_bytes);

  // Waits for the exit. Returns the exit code (128+N when killed by signal
  // N); DeadlineExceeded when it still runs after `timeout`.
  absl::StatusOr<int> Wait(std::chrono::milliseconds timeout);
  // SIGKILL to the tool's process group. Safe from any thread.
  void Kill();

  pid_t pid() const { return pid_; }
  // argv[0], for messages.
  const std::string& name() const { return name_; }

 private:
  StreamProcess(pid_t pid, int in_fd, int out_fd, std::string name)
      : pid_(pid), in_fd_(in_fd), out_fd_(out_fd), name_(std::move(name)) {}

  pid_t pid_;
  int in_fd_;
  int out_fd_;
  std::string name_;
  std::atomic<bool> reaped_{false};
  int exit_code_ = 0;
};

}  // namespace tandem

#endif  // TANDEM_ENGINES_MYSQL_STREAM_PROCESS_H_

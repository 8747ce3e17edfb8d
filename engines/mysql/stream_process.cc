#include "engines/mysql/stream_process.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/subprocess.h"

namespace tandem {
namespace {

void CloseFd(int* fd) {
  if (*fd >= 0) ::close(*fd);
  *fd = -1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<StreamProcess>> StreamProcess::Start(
    const std::vector<std::string>& argv, const StreamOptions& options) {
  int in_pipe[2] = {-1, -1};
  int out_pipe[2] = {-1, -1};
  int log_fd = -1;
  auto cleanup = [&] {
    CloseFd(&in_pipe[0]);
    CloseFd(&in_pipe[1]);
    CloseFd(&out_pipe[0]);
    CloseFd(&out_pipe[1]);
    CloseFd(&log_fd);
  };
  if (options.pipe_stdin && ::pipe2(in_pipe, O_CLOEXEC) != 0) {
    cleanup();
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  if (options.pipe_stdout && ::pipe2(out_pipe, O_CLOEXEC) != 0) {
    cleanup();
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  const std::string log = options.log_file.empty() ? "/dev/null" : options.log_file;
  log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (log_fd < 0) {
    int err = errno;
    cleanup();
    return absl::InternalError(absl::StrCat("opening ", log, ": ", std::strerror(err)));
  }
  RunOptions spawn;
  spawn.run_as = options.run_as;
  spawn.env = options.env;
  spawn.cwd = options.cwd;
  spawn.kill_with_parent = options.kill_with_parent;
  absl::StatusOr<pid_t> pid = Spawn(argv, spawn, in_pipe[0],
                                    options.pipe_stdout ? out_pipe[1] : log_fd, log_fd);
  CloseFd(&in_pipe[0]);
  CloseFd(&out_pipe[1]);
  CloseFd(&log_fd);
  if (!pid.ok()) {
    cleanup();
    return pid.status();
  }
  return std::unique_ptr<StreamProcess>(new StreamProcess(*pid, in_pipe[1], out_pipe[0], argv[0]));
}

StreamProcess::~StreamProcess() {
  CloseFd(&in_fd_);
  CloseFd(&out_fd_);
  if (!reaped_) {
    ::kill(-pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

absl::Status StreamProcess::Write(std::string_view data) {
  if (in_fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(name_, ": stdin is closed"));
  // A tool that exited makes write(2) raise SIGPIPE: keep it from this
  // thread (EPIPE is reported instead) and swallow a pending one.
  sigset_t pipe_set;
  sigset_t old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  absl::Status status;
  while (!data.empty()) {
    ssize_t n = ::write(in_fd_, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      if (err == EPIPE) {
        const struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, nullptr, &zero);
        status = absl::UnavailableError(absl::StrCat(name_, " stopped reading its input"));
      } else {
        status = absl::InternalError(
            absl::StrCat("writing to ", name_, ": ", std::strerror(err)));
      }
      break;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  return status;
}

void StreamProcess::CloseStdin() { CloseFd(&in_fd_); }

absl::StatusOr<bool> StreamProcess::Read(std::string* out, size_t max_bytes) {
  out->clear();
  if (out_fd_ < 0) return false;
  out->resize(max_bytes);
  size_t filled = 0;
  while (filled < max_bytes) {
    ssize_t n = ::read(out_fd_, out->data() + filled, max_bytes - filled);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      out->clear();
      return absl::InternalError(absl::StrCat("reading from ", name_, ": ", std::strerror(err)));
    }
    if (n == 0) {
      CloseFd(&out_fd_);
      break;
    }
    filled += static_cast<size_t>(n);
  }
  out->resize(filled);
  return filled > 0;
}

absl::StatusOr<int> StreamProcess::Wait(std::chrono::milliseconds timeout) {
  if (reaped_) return exit_code_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto delay = std::chrono::milliseconds(1);
  for (;;) {
    int status = 0;
    pid_t w = ::waitpid(pid_, &status, WNOHANG);
    if (w == pid_) {
      reaped_ = true;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      // Whatever the tool left in its group (children) goes with it.
      ::kill(-pid_, SIGKILL);
      return exit_code_;
    }
    if (w < 0 && errno != EINTR) {
      return absl::InternalError(absl::StrCat("waiting for ", name_, ": ", std::strerror(errno)));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(name_, " still runs after ", timeout.count() / 1000, " s"));
    }
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(50));
  }
}

void StreamProcess::Kill() {
  if (!reaped_) ::kill(-pid_, SIGKILL);
}

}  // namespace tandem

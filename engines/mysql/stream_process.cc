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

extern char** environ;

namespace tandem {
namespace {

bool Executable(const std::string& program) {
  if (program.find('/') != std::string::npos) return ::access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    if (::access((dirs.substr(start, end - start) + "/" + program).c_str(), X_OK) == 0) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

void CloseFd(int* fd) {
  if (*fd >= 0) ::close(*fd);
  *fd = -1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<StreamProcess>> StreamProcess::Start(
    const std::vector<std::string>& argv_in, const StreamOptions& options) {
  if (argv_in.empty()) return absl::InvalidArgumentError("empty command");
  if (!Executable(argv_in[0])) {
    return absl::NotFoundError(absl::StrCat("cannot run ", argv_in[0], ": not found or not executable"));
  }
  std::vector<std::string> argv;
  bool switch_user = !options.run_as.empty() && ::geteuid() == 0;
  if (switch_user) {
    absl::StatusOr<UserIds> ids = LookupUser(options.run_as);
    switch_user = !(ids.ok() && ids->uid == ::geteuid());
  }
  if (switch_user || options.kill_with_parent) {
    argv.push_back("setpriv");
    if (switch_user) {
      argv.insert(argv.end(), {"--reuid=" + options.run_as, "--regid=" + options.run_as,
                               "--init-groups"});
    }
    if (options.kill_with_parent) argv.insert(argv.end(), {"--pdeathsig", "KILL"});
    argv.push_back("--");
  }
  argv.insert(argv.end(), argv_in.begin(), argv_in.end());

  std::map<std::string, std::string> env_map;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env_map[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (!options.run_as.empty() && ::geteuid() == 0) env_map["HOME"] = "/tmp";
  for (const auto& [k, v] : options.env) env_map[k] = v;
  std::vector<std::string> env;
  for (const auto& [k, v] : env_map) env.push_back(k + "=" + v);
  std::vector<char*> c_argv = CStrings(argv);
  std::vector<char*> c_env = CStrings(env);

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

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (options.pipe_stdin) {
    posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  } else {
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&actions, options.pipe_stdout ? out_pipe[1] : log_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, log_fd, 2);
  if (!options.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str());

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, c_argv[0], &actions, &attr, c_argv.data(), c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  CloseFd(&in_pipe[0]);
  CloseFd(&out_pipe[1]);
  CloseFd(&log_fd);
  if (rc != 0) {
    cleanup();
    return absl::NotFoundError(absl::StrCat("cannot run ", argv_in[0], ": ", std::strerror(rc)));
  }
  return std::unique_ptr<StreamProcess>(new StreamProcess(pid, in_pipe[1], out_pipe[0], argv_in[0]));
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

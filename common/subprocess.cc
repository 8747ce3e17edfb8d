#include "common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"

extern char** environ;

namespace tandem {
namespace {

constexpr size_t kMaxCapture = 64 * 1024;

std::vector<std::string> BuildArgv(const std::vector<std::string>& argv, const RunOptions& options) {
  std::vector<std::string> out;
  bool switch_user = !options.run_as.empty() && ::geteuid() == 0;
  if (switch_user) {
    absl::StatusOr<UserIds> ids = LookupUser(options.run_as);
    switch_user = !(ids.ok() && ids->uid == ::geteuid());
  }
  if (switch_user || options.kill_with_parent) {
    out.push_back("setpriv");
    if (switch_user) {
      out.insert(out.end(), {"--reuid=" + options.run_as, "--regid=" + options.run_as,
                             "--init-groups"});
    }
    if (options.kill_with_parent) out.insert(out.end(), {"--pdeathsig", "KILL"});
    out.push_back("--");
  }
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

// systemd's variables for the service's main process: its notification
// socket (a server started with it would send READY=1 and STOPPING=1 as if
// it were the service, and blocks in sendmsg when nobody reads the socket),
// its watchdog, and the sockets it was passed (sd_notify(3),
// sd_listen_fds(3)).
bool IsServiceManagerVariable(const std::string& name) {
  static const std::set<std::string> kNames = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                                               "LISTEN_FDS",    "LISTEN_PID",    "LISTEN_FDNAMES"};
  return kNames.count(name) != 0;
}

std::vector<std::string> BuildEnv(const RunOptions& options) {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq == std::string::npos || IsServiceManagerVariable(kv.substr(0, eq))) continue;
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (!options.run_as.empty() && ::geteuid() == 0) {
    // Tools run as another user should not try to read root's home.
    env["HOME"] = "/tmp";
  }
  for (const auto& [k, v] : options.env) env[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

// Whether `program` can be executed: a path, or a name found in PATH.
bool Executable(const std::string& program) {
  if (program.find('/') != std::string::npos) return ::access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return true;
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

}  // namespace

std::string OutputTail(const std::string& output, size_t max_chars) {
  size_t end = output.find_last_not_of(" \n\r\t");
  if (end == std::string::npos) return "";
  std::string trimmed = output.substr(0, end + 1);
  if (trimmed.size() > max_chars) trimmed = "..." + trimmed.substr(trimmed.size() - max_chars);
  for (char& c : trimmed) {
    if (c == '\n') c = ' ';
  }
  return trimmed;
}

std::string OutputReason(const std::string& output, size_t max_chars) {
  std::string tail = OutputTail(output, max_chars);
  return tail.empty() ? " (no output)" : ": " + tail;
}

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv_in, const RunOptions& options,
                            int stdin_fd, int stdout_fd, int stderr_fd) {
  if (argv_in.empty()) return absl::InvalidArgumentError("empty command");
  if (!Executable(argv_in[0])) {
    return absl::NotFoundError(absl::StrCat("cannot run ", argv_in[0], ": not found or not executable"));
  }
  std::vector<std::string> argv = BuildArgv(argv_in, options);
  std::vector<std::string> envs = BuildEnv(options);
  std::vector<char*> c_argv = CStrings(argv);
  std::vector<char*> c_env = CStrings(envs);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const int fds[3] = {stdin_fd, stdout_fd, stderr_fd};
  for (int target = 0; target < 3; ++target) {
    if (fds[target] >= 0) {
      posix_spawn_file_actions_adddup2(&actions, fds[target], target);
    } else {
      posix_spawn_file_actions_addopen(&actions, target, "/dev/null",
                                       target == 0 ? O_RDONLY : O_WRONLY, 0);
    }
  }
  if (!options.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str());

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  // Every signal back to its default: the caller may ignore some (SIGPIPE).
  sigset_t defaults;
  sigfillset(&defaults);
  sigdelset(&defaults, SIGKILL);
  sigdelset(&defaults, SIGSTOP);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  // Own process group, so that a timeout kills the tool and its children.
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, c_argv[0], &actions, &attr, c_argv.data(), c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return absl::NotFoundError(absl::StrCat("cannot run ", argv[0], ": ", std::strerror(rc)));
  }
  return pid;
}

absl::StatusOr<RunResult> Run(const std::vector<std::string>& argv_in, const RunOptions& options) {
  int pipe_fds[2] = {-1, -1};
  int out_fd = -1;
  if (options.output_file.empty()) {
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
      return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
    }
    out_fd = pipe_fds[1];
  } else {
    out_fd = ::open(options.output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (out_fd < 0) {
      return absl::InternalError(
          absl::StrCat("opening ", options.output_file, ": ", std::strerror(errno)));
    }
  }
  absl::StatusOr<pid_t> spawned = Spawn(argv_in, options, -1, out_fd, out_fd);
  ::close(out_fd);
  if (!spawned.ok()) {
    if (pipe_fds[0] >= 0) ::close(pipe_fds[0]);
    return spawned.status();
  }
  const pid_t pid = *spawned;

  RunResult result;
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  bool timed_out = false;
  if (pipe_fds[0] >= 0) {
    char buf[8192];
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        timed_out = true;
        break;
      }
      struct pollfd pfd = {pipe_fds[0], POLLIN, 0};
      int prc = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
      if (prc < 0 && errno == EINTR) continue;
      if (prc == 0) continue;
      ssize_t n = ::read(pipe_fds[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      result.output.append(buf, static_cast<size_t>(n));
      if (result.output.size() > 2 * kMaxCapture) {
        result.output.erase(0, result.output.size() - kMaxCapture);
      }
    }
    ::close(pipe_fds[0]);
  }
  int status = 0;
  if (timed_out) ::kill(-pid, SIGKILL);
  for (;;) {
    pid_t w = ::waitpid(pid, &status, timed_out ? 0 : WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    if (w == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        timed_out = true;
        ::kill(-pid, SIGKILL);
        continue;
      }
      ::usleep(20 * 1000);  // the child closed its output; wait for its exit
    }
  }
  if (timed_out) {
    ::kill(-pid, SIGKILL);
    return absl::DeadlineExceededError(
        absl::StrCat(argv_in[0], " did not finish within ", options.timeout.count() / 1000, " s"));
  }
  if (result.output.size() > kMaxCapture) {
    result.output.erase(0, result.output.size() - kMaxCapture);
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

absl::StatusOr<RunResult> RunShell(const std::string& command, const RunOptions& options) {
  return Run({"/bin/sh", "-c", command}, options);
}

absl::Status RunChecked(const std::vector<std::string>& argv, const RunOptions& options) {
  absl::StatusOr<RunResult> result = Run(argv, options);
  if (!result.ok()) return result.status();
  if (result->exit_code != 0) {
    return absl::InternalError(
        absl::StrCat(argv[0], " exited with ", result->exit_code, OutputReason(result->output)));
  }
  return absl::OkStatus();
}

}  // namespace tandem

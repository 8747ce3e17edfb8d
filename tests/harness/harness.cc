#include "tests/harness/harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_util.h"

extern char** environ;

namespace tandem::testing {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "tandem test harness: %s\n", message.c_str());
  std::abort();
}

// pids owned by live ChildProcess objects: ReapAdoptedZombies leaves them to
// their owner.
std::mutex& RegistryMutex() {
  static std::mutex mu;
  return mu;
}
std::set<pid_t>& Registry() {
  static std::set<pid_t> pids;
  return pids;
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// State letter from /proc/<pid>/stat ('\0' when the process does not exist).
char ProcState(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  if (!in) return '\0';
  std::string line;
  std::getline(in, line);
  size_t paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return '\0';
  return line[paren + 2];
}

// A path that can be executed, or a name found in PATH.
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

pid_t ProcParent(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  if (!in) return -1;
  std::string line;
  std::getline(in, line);
  size_t paren = line.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream rest(line.substr(paren + 2));
  char state;
  pid_t ppid = -1;
  rest >> state >> ppid;
  return ppid;
}

}  // namespace

// ---------------------------------------------------------------- TempDir

TempDir::TempDir(std::string_view prefix) {
  std::string templ = absl::StrCat("/tmp/", std::string(prefix), ".XXXXXX");
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    Die(absl::StrCat("mkdtemp ", templ, ": ", std::strerror(errno)));
  }
  path_ = buf.data();
  if (::chmod(path_.c_str(), 0755) != 0) {
    Die(absl::StrCat("chmod 0755 ", path_, ": ", std::strerror(errno)));
  }
}

TempDir::~TempDir() { Remove(); }

TempDir::TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    Remove();
    path_ = std::move(other.path_);
    other.path_.clear();
  }
  return *this;
}

std::string TempDir::Sub(std::string_view name) const {
  return absl::StrCat(path_, "/", std::string(name));
}

void TempDir::Remove() {
  if (path_.empty()) return;
  const char* keep = std::getenv("TANDEM_KEEP_TEMP");
  if (keep != nullptr && std::string(keep) == "1") {
    std::fprintf(stderr, "tandem test harness: keeping %s (TANDEM_KEEP_TEMP=1)\n", path_.c_str());
  } else {
    std::error_code ec;
    fs::remove_all(path_, ec);
    if (ec) {
      std::fprintf(stderr, "tandem test harness: removing %s: %s\n", path_.c_str(),
                   ec.message().c_str());
    }
  }
  path_.clear();
}

// ---------------------------------------------------------------- FreePort

uint16_t FreePort() {
  static std::mutex mu;
  static std::set<uint16_t> given;
  static std::mt19937 rng(
      static_cast<unsigned>(::getpid()) ^
      static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::lock_guard<std::mutex> lock(mu);
  std::uniform_int_distribution<int> dist(20000, 29999);
  for (int attempt = 0; attempt < 2000; ++attempt) {
    uint16_t port = static_cast<uint16_t>(dist(rng));
    if (given.count(port) != 0) continue;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) Die(absl::StrCat("socket: ", std::strerror(errno)));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::close(fd);
    if (rc == 0) {
      given.insert(port);
      return port;
    }
  }
  Die("no free TCP port found in 20000-29999 on 127.0.0.1");
}

// ---------------------------------------------------------------- PollUntil

bool PollUntil(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
               std::chrono::milliseconds every) {
  return PollFor(cond, timeout, every);
}

// ---------------------------------------------------------------- ChildProcess

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv_in, const ChildOptions& options) {
  if (argv_in.empty()) return absl::InvalidArgumentError("ChildProcess: empty command");
  if (!Executable(argv_in[0])) {
    return absl::NotFoundError(
        absl::StrCat("ChildProcess: cannot start ", argv_in[0], ": not found or not executable"));
  }
  std::vector<std::string> argv = {"setpriv"};
  if (!options.run_as.empty() && options.run_as != CurrentUserName()) {
    if (::geteuid() != 0) {
      return absl::PermissionDeniedError(absl::StrCat("ChildProcess: running ", argv_in[0], " as ",
                                                      options.run_as, " needs root"));
    }
    argv.push_back("--reuid=" + options.run_as);
    argv.push_back("--regid=" + options.run_as);
    argv.push_back("--init-groups");
  }
  argv.insert(argv.end(), {"--pdeathsig", "KILL", "--"});
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

  std::vector<char*> c_argv;
  for (std::string& s : argv) c_argv.push_back(s.data());
  c_argv.push_back(nullptr);
  std::vector<char*> c_env;
  for (std::string& s : env) c_env.push_back(s.data());
  c_env.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  const std::string& out = options.log_file.empty() ? std::string("/dev/null") : options.log_file;
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  if (!options.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str());

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t defaults;
  sigfillset(&defaults);
  sigdelset(&defaults, SIGKILL);
  sigdelset(&defaults, SIGSTOP);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, c_argv[0], &actions, &attr, c_argv.data(), c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return absl::NotFoundError(
        absl::StrCat("ChildProcess: cannot start ", argv_in[0], ": ", std::strerror(rc)));
  }
  {
    std::lock_guard<std::mutex> lock(RegistryMutex());
    Registry().insert(pid);
  }
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, options.log_file));
}

ChildProcess::~ChildProcess() {
  if (!exit_status_.has_value()) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  } else {
    // The process is gone; whatever it left in its group goes too.
    ::kill(-pid_, SIGKILL);
  }
  std::lock_guard<std::mutex> lock(RegistryMutex());
  Registry().erase(pid_);
}

bool ChildProcess::Running() {
  if (exit_status_.has_value()) return false;
  int status = 0;
  pid_t w = ::waitpid(pid_, &status, WNOHANG);
  if (w == pid_) {
    exit_status_ = DecodeWaitStatus(status);
    return false;
  }
  if (w < 0 && errno == ECHILD) {
    exit_status_ = -1;  // reaped elsewhere: status unknown
    return false;
  }
  return true;
}

absl::Status ChildProcess::Signal(int sig) {
  if (!Running()) {
    return absl::FailedPreconditionError(absl::StrCat("process ", pid_, " has exited"));
  }
  if (::kill(pid_, sig) != 0) {
    return absl::InternalError(absl::StrCat("kill(", pid_, ", ", sig, "): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ChildProcess::Wait(std::chrono::milliseconds timeout) {
  if (!PollUntil([this] { return !Running(); }, timeout, std::chrono::milliseconds(10))) {
    return absl::DeadlineExceededError(
        absl::StrCat("process ", pid_, " still running after ", timeout.count(), " ms"));
  }
  return *exit_status_;
}

// ---------------------------------------------------------------- processes

void AdoptOrphans() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
      std::fprintf(stderr, "tandem test harness: PR_SET_CHILD_SUBREAPER: %s\n",
                   std::strerror(errno));
    }
  });
}

int ReapAdoptedZombies() {
  const pid_t self = ::getpid();
  std::vector<pid_t> zombies;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return 0;
  while (struct dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || pid <= 0) continue;
    if (ProcParent(static_cast<pid_t>(pid)) != self) continue;
    if (ProcState(static_cast<pid_t>(pid)) != 'Z') continue;
    zombies.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(dir);
  int reaped = 0;
  std::lock_guard<std::mutex> lock(RegistryMutex());
  for (pid_t pid : zombies) {
    if (Registry().count(pid) != 0) continue;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) ++reaped;
  }
  return reaped;
}

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  char state = ProcState(pid);
  return state != '\0' && state != 'Z' && state != 'X';
}

std::string CurrentUserName() {
  struct passwd pw;
  struct passwd* result = nullptr;
  char buf[4096];
  if (::getpwuid_r(::geteuid(), &pw, buf, sizeof buf, &result) != 0 || result == nullptr) {
    return absl::StrCat(::geteuid());
  }
  return pw.pw_name;
}

std::string FileTail(const std::string& path, size_t max_bytes) {
  absl::StatusOr<std::string> content = ReadFile(path);
  if (!content.ok()) return "";
  if (content->size() > max_bytes) return content->substr(content->size() - max_bytes);
  return *content;
}

}  // namespace tandem::testing

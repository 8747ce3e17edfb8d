#include "tests/harness/harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <netinet/in.h>
#include <poll.h>
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
#include "common/subprocess.h"


namespace tandem::testing {

int ConnectLoopback(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

HttpReply HttpCall(uint16_t port, const std::string& target, const std::string& method) {
  HttpReply reply;
  const int fd = ConnectLoopback(port);
  if (fd < 0) return reply;
  const std::string request =
      absl::StrCat(method, " ", target, " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string raw;
  char buffer[16384];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) break;
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    raw.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  const size_t end = raw.find("\r\n\r\n");
  if (raw.size() < 12 || end == std::string::npos) return reply;
  reply.status = std::atoi(raw.substr(9, 3).c_str());
  reply.headers = raw.substr(0, end);
  reply.body = raw.substr(end + 4);
  return reply;
}

std::vector<std::string> Glob(const std::string& pattern) {
  glob_t g{};
  std::vector<std::string> out;
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  return out;
}
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
    const std::vector<std::string>& argv, const ChildOptions& options) {
  if (argv.empty()) return absl::InvalidArgumentError("ChildProcess: empty command");
  if (!options.run_as.empty() && options.run_as != CurrentUserName() && ::geteuid() != 0) {
    return absl::PermissionDeniedError(absl::StrCat("ChildProcess: running ", argv[0], " as ",
                                                    options.run_as, " needs root"));
  }
  const std::string& out = options.log_file.empty() ? std::string("/dev/null") : options.log_file;
  const int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out_fd < 0) {
    return absl::InternalError(absl::StrCat("ChildProcess: opening ", out, ": ", std::strerror(errno)));
  }
  RunOptions spawn;
  spawn.run_as = options.run_as;
  spawn.env = options.env;
  spawn.cwd = options.cwd;
  spawn.kill_with_parent = true;  // dies with the test, even when it crashes
  absl::StatusOr<pid_t> pid = Spawn(argv, spawn, -1, out_fd, out_fd);
  ::close(out_fd);
  if (!pid.ok()) {
    return absl::Status(pid.status().code(),
                        absl::StrCat("ChildProcess: ", pid.status().message()));
  }
  {
    std::lock_guard<std::mutex> lock(RegistryMutex());
    Registry().insert(*pid);
  }
  return std::unique_ptr<ChildProcess>(new ChildProcess(*pid, options.log_file));
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

namespace tandem::testing {

absl::StatusOr<TestCertificates> MakeTestCertificates(const std::string& dir,
                                                      const std::vector<std::string>& ip_addresses,
                                                      const std::string& owner) {
  TestCertificates out{dir + "/ca.pem", dir + "/server.pem", dir + "/server.key"};
  std::string san = "subjectAltName=";
  for (size_t i = 0; i < ip_addresses.size(); ++i) {
    absl::StrAppend(&san, i == 0 ? "" : ",", "IP:", ip_addresses[i]);
  }
  TANDEM_RETURN_IF_ERROR(WriteFileAtomic(dir + "/san.ext", san + "\n", 0644));
  const std::vector<std::vector<std::string>> steps = {
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
       "-nodes", "-keyout", dir + "/ca.key", "-out", out.ca_file, "-days", "2", "-subj",
       "/CN=tandem test CA"},
      {"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-keyout", out.key_file, "-out", dir + "/server.csr", "-subj", "/CN=tandem test server"},
      {"openssl", "x509", "-req", "-in", dir + "/server.csr", "-CA", out.ca_file, "-CAkey",
       dir + "/ca.key", "-CAcreateserial", "-out", out.cert_file, "-days", "2", "-extfile",
       dir + "/san.ext"},
  };
  RunOptions options;
  options.timeout = std::chrono::seconds(60);
  for (const auto& argv : steps) {
    absl::StatusOr<RunResult> r = Run(argv, options);
    if (!r.ok()) return r.status();
    if (r->exit_code != 0) {
      return absl::InternalError(absl::StrCat("openssl ", argv[1], " exited with ", r->exit_code,
                                              ": ", OutputTail(r->output, 600)));
    }
  }
  if (::chmod(out.key_file.c_str(), 0600) != 0 || ::chmod(out.ca_file.c_str(), 0644) != 0 ||
      ::chmod(out.cert_file.c_str(), 0644) != 0) {
    return absl::InternalError(absl::StrCat("chmod in ", dir, ": ", std::strerror(errno)));
  }
  if (!owner.empty()) {
    absl::StatusOr<UserIds> ids = LookupUser(owner);
    if (!ids.ok()) return ids.status();
    for (const std::string& path : {dir, out.ca_file, out.cert_file, out.key_file}) {
      if (::chown(path.c_str(), ids->uid, ids->gid) != 0) {
        return absl::InternalError(absl::StrCat("chown ", path, ": ", std::strerror(errno)));
      }
    }
  }
  return out;
}

}  // namespace tandem::testing

#include "tests/harness/redis_server.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/subprocess.h"

namespace tandem::testing {
namespace fs = std::filesystem;

namespace {

constexpr std::chrono::seconds kStartTimeout(30);
constexpr std::chrono::milliseconds kClientTimeout(5000);

std::string ProcComm(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/comm"));
  std::string comm;
  std::getline(in, comm);
  return comm;
}

// A config-file value in double quotes, escaped as redis.conf wants it.
std::string Quoted(const std::string& value) {
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// SIGTERM, repeated every 200 ms: redis-server ignores a SIGTERM that comes
// while it writes its initial AOF (appendonly just turned on).
bool TerminateAndWait(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    ::kill(pid, SIGTERM);
    if (PollUntil([pid] { return !ProcessAlive(pid); }, std::chrono::milliseconds(200),
                  std::chrono::milliseconds(20))) {
      return true;
    }
  }
  return !ProcessAlive(pid);
}

}  // namespace

absl::Status StopRedisByPidFile(const std::string& data_dir, std::chrono::milliseconds timeout) {
  const std::string pid_file = data_dir + "/redis.pid";
  absl::StatusOr<std::string> content = ReadFile(pid_file);
  if (!content.ok()) {
    if (absl::IsNotFound(content.status())) return absl::OkStatus();
    return content.status();
  }
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*content), &pid) || pid <= 0) {
    return absl::InternalError(absl::StrCat(pid_file, ": no pid in it"));
  }
  auto reap = [pid] {
    int status = 0;
    ::waitpid(pid, &status, WNOHANG);
  };
  if (!ProcessAlive(pid)) {
    reap();
    return absl::OkStatus();  // stale pid file
  }
  if (ProcComm(pid).rfind("redis-server", 0) != 0) return absl::OkStatus();  // reused pid
  if (!TerminateAndWait(pid, timeout)) {
    ::kill(pid, SIGKILL);
    if (!PollUntil([pid] { return !ProcessAlive(pid); }, std::chrono::seconds(10),
                   std::chrono::milliseconds(20))) {
      return absl::InternalError(
          absl::StrCat("redis-server pid ", pid, " of ", data_dir, " survives SIGKILL"));
    }
  }
  reap();
  return absl::OkStatus();
}

RedisServer::RedisServer(TempDir dir, std::string data_dir, RedisServerOptions options)
    : dir_(std::move(dir)), data_dir_(std::move(data_dir)), options_(std::move(options)) {
  log_file_ = data_dir_ + ".server.log";
}

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Create(
    const RedisServerOptions& options) {
  AdoptOrphans();
  TempDir dir("trd");
  const std::string data_dir = dir.Sub(options.name);
  if (::mkdir(data_dir.c_str(), 0755) != 0) {
    return absl::InternalError(absl::StrCat("mkdir ", data_dir, ": ", std::strerror(errno)));
  }
  // The password goes to files only, never to the server's command line.
  std::string conf;
  if (!options.password.empty())
    conf = absl::StrCat("requirepass ", Quoted(options.password), "\n");
  absl::Status st = WriteFileAtomic(data_dir + "/redis.conf", conf, 0600);
  if (!st.ok()) return st;
  std::unique_ptr<RedisServer> server(new RedisServer(std::move(dir), data_dir, options));
  if (!options.password.empty()) {
    server->password_file_ = server->dir() + "/password";
    st = WriteFileAtomic(server->password_file_, options.password + "\n", 0600);
    if (!st.ok()) return st;
  }
  if (options.start) {
    st = server->Start();
    if (!st.ok()) return st;
  }
  return server;
}

RedisServer::~RedisServer() {
  absl::Status st = Stop();
  if (!st.ok()) std::fprintf(stderr, "tandem test harness: %s\n", st.ToString().c_str());
  child_.reset();
  ReapAdoptedZombies();
}

std::vector<std::string> RedisServer::server_args() const {
  std::vector<std::string> args = {"--bind", "127.0.0.1", "--repl-diskless-sync-delay", "0"};
  if (options_.persistence) {
    args.insert(args.end(), {"--save", "3600 1", "--appendonly", "yes"});
  } else {
    args.insert(args.end(), {"--save", "", "--appendonly", "no"});
  }
  if (options_.tls) {
    args.insert(args.end(), {"--tls-port", absl::StrCat(tls_port_), "--tls-cert-file",
                             options_.tls->cert_file, "--tls-key-file", options_.tls->key_file,
                             "--tls-ca-cert-file", options_.tls->ca_file, "--tls-auth-clients",
                             "yes"});
  }
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  return args;
}

bool RedisServer::Answers() const {
  absl::StatusOr<std::string> pong = Text({"PING"});
  return pong.ok() && *pong == "PONG";
}

absl::Status RedisServer::Start() {
  if (child_ != nullptr && child_->Running() && Answers()) return absl::OkStatus();
  absl::Status st;
  for (int attempt = 0; attempt < 3; ++attempt) {
    st = StartOnce();
    if (!absl::IsUnavailable(st)) return st;  // Unavailable: a port was taken
    port_ = 0;                                // try other ones
    tls_port_ = 0;
  }
  return st;
}

absl::Status RedisServer::StartOnce() {
  child_.reset();
  if (port_ == 0) port_ = FreePort();
  while (options_.tls && (tls_port_ == 0 || tls_port_ == port_)) tls_port_ = FreePort();
  std::vector<std::string> argv = {"redis-server", data_dir_ + "/redis.conf", "--port",
                                   absl::StrCat(port_)};
  for (const std::string& a : server_args()) argv.push_back(a);
  argv.insert(argv.end(), {"--dir", data_dir_, "--pidfile", data_dir_ + "/redis.pid", "--logfile",
                           log_file_, "--daemonize", "no"});
  std::error_code ec;
  const uintmax_t log_offset = fs::exists(log_file_, ec) ? fs::file_size(log_file_, ec) : 0;
  ChildOptions options;
  options.log_file = log_file_;
  absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Start(argv, options);
  if (!child.ok()) return child.status();
  child_ = *std::move(child);
  // Ours answers, not another test's server that took the port first
  // (ours then exits with "Address already in use" and is started on
  // another).
  auto ours = [this] {
    absl::StatusOr<std::string> info = Text({"INFO", "server"});
    return info.ok() && info->find(absl::StrCat("process_id:", child_->pid(), "\r")) !=
                            std::string::npos;
  };
  bool ready = PollUntil([&] { return !child_->Running() || ours(); }, kStartTimeout,
                         std::chrono::milliseconds(20));
  if (ready && child_->Running() && ours()) return absl::OkStatus();
  std::string log = FileTail(log_file_, 100000);
  if (log.size() > log_offset) log = log.substr(std::min<size_t>(log.size(), log_offset));
  std::string tail = OutputTail(log, 1500);
  const bool exited = !child_->Running();
  child_.reset();
  if (exited && log.find("Address already in use") != std::string::npos) {
    return absl::UnavailableError(
        absl::StrCat("port ", port_, options_.tls ? absl::StrCat(" or ", tls_port_) : "",
                     " was taken: ", tail));
  }
  return absl::InternalError(absl::StrCat("redis-server on ", data_dir_, " port ", port_,
                                          exited ? " exited" : " did not answer within 30 s",
                                          "; log: ", tail));
}

absl::Status RedisServer::Stop() {
  if (child_ != nullptr && child_->Running()) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (child_->Running() && std::chrono::steady_clock::now() < deadline) {
      if (!child_->Signal(SIGTERM).ok()) break;            // reaped meanwhile
      (void)child_->Wait(std::chrono::milliseconds(200));  // see TerminateAndWait
    }
    if (child_->Running()) {
      return absl::DeadlineExceededError(
          absl::StrCat("redis-server pid ", child_->pid(), " on ", data_dir_,
                       " ignores SIGTERM after 30 s; log: ", FileTail(log_file_, 1000)));
    }
  }
  absl::Status st = StopRedisByPidFile(data_dir_);
  ReapAdoptedZombies();
  return st;
}

absl::StatusOr<RedisReply> RedisServer::Command(const std::vector<std::string>& args) const {
  if (port_ == 0) return absl::FailedPreconditionError("the redis server was never started");
  absl::StatusOr<std::unique_ptr<RedisClient>> client =
      RedisClient::Connect("127.0.0.1", port_, RedisLogin{"", options_.password}, kClientTimeout);
  if (!client.ok()) return client.status();
  return (*client)->Command(args);
}

absl::StatusOr<std::string> RedisServer::Text(const std::vector<std::string>& args) const {
  if (port_ == 0) return absl::FailedPreconditionError("the redis server was never started");
  absl::StatusOr<std::unique_ptr<RedisClient>> client =
      RedisClient::Connect("127.0.0.1", port_, RedisLogin{"", options_.password}, kClientTimeout);
  if (!client.ok()) return client.status();
  return (*client)->CommandText(args);
}

absl::StatusOr<std::map<std::string, std::string>> RedisServer::Info(
    const std::string& section) const {
  absl::StatusOr<std::string> text = Text({"INFO", section});
  if (!text.ok()) return text.status();
  return ParseInfo(*text);
}

}  // namespace tandem::testing

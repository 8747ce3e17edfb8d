#include "tests/harness/mysql_server.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/subprocess.h"

namespace tandem::testing {
namespace fs = std::filesystem;

namespace {

constexpr std::chrono::seconds kStartTimeout(120);
constexpr char kRedoLogSize[] = "--innodb-log-file-size=16M";

std::string ProcComm(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/comm"));
  std::string comm;
  std::getline(in, comm);
  return comm;
}

std::string FindBinary(const std::vector<std::string>& candidates) {
  for (const std::string& c : candidates) {
    if (::access(c.c_str(), X_OK) == 0) return c;
  }
  return "";
}

std::string Mariadbd() { return FindBinary({"/usr/sbin/mariadbd", "/usr/sbin/mysqld", "/usr/bin/mariadbd"}); }

// The data directory every server of this process is copied from, made once
// by mariadb-install-db (removed when the process exits).
absl::StatusOr<std::string> TemplateDataDir(const std::string& os_user, const UserIds& ids) {
  static std::mutex mu;
  static TempDir* dir = nullptr;
  static std::string data;
  std::lock_guard<std::mutex> lock(mu);
  if (dir != nullptr) return data;
  const std::string install = FindBinary({"/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"});
  if (install.empty()) {
    return absl::NotFoundError(
        "no mariadb-install-db in /usr/bin (apt-get install mariadb-server)");
  }
  static TempDir holder("tmyt");
  if (::chown(holder.path().c_str(), ids.uid, ids.gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", holder.path(), ": ", std::strerror(errno)));
  }
  const std::string target = holder.Sub("data");
  RunOptions run;
  run.run_as = os_user;
  run.cwd = "/";
  run.timeout = std::chrono::seconds(180);
  // No fsync while bootstrapping a throwaway template: 0.7 s instead of 4 s.
  const std::vector<std::string> argv = {
      install, "--no-defaults", "--datadir=" + target, "--auth-root-authentication-method=normal",
      "--skip-test-db", "--skip-name-resolve", kRedoLogSize, "--innodb-flush-method=nosync",
      "--innodb-doublewrite=0", "--innodb-flush-log-at-trx-commit=0"};
  absl::StatusOr<RunResult> result = Run(argv, run);
  if (result.ok() && result->exit_code != 0) {
    // Seen once on a loaded machine: the bootstrap server gave up. A second
    // try on a clean directory is cheap (under a second).
    std::error_code ec;
    fs::remove_all(target, ec);
    result = Run(argv, run);
  }
  if (!result.ok()) return result.status();
  if (result->exit_code != 0) {
    return absl::InternalError(absl::StrCat("mariadb-install-db into ", target, " exited with ",
                                            result->exit_code, ": ", OutputTail(result->output)));
  }
  dir = &holder;
  data = target;
  return data;
}

MysqlLogin RootLogin(uint16_t port) {
  MysqlLogin login;
  login.host = "127.0.0.1";
  login.port = port;
  login.user = "root";
  return login;
}

}  // namespace

std::string MysqlOsUser() { return ::geteuid() == 0 ? "mysql" : CurrentUserName(); }

absl::Status StopMysqlByPidFile(const std::string& pid_file, std::chrono::milliseconds timeout) {
  absl::StatusOr<std::string> content = ReadFile(pid_file);
  if (!content.ok()) {
    if (absl::IsNotFound(content.status())) return absl::OkStatus();
    return content.status();
  }
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*content), &pid) || pid <= 0) {
    return absl::OkStatus();  // written halfway by a server that died
  }
  auto reap = [pid] {
    int status = 0;
    ::waitpid(pid, &status, WNOHANG);
  };
  if (!ProcessAlive(pid)) {
    reap();
    return absl::OkStatus();
  }
  const std::string comm = ProcComm(pid);
  if (comm != "mariadbd" && comm != "mysqld") return absl::OkStatus();  // a reused pid
  ::kill(pid, SIGTERM);
  if (!PollUntil([pid] { return !ProcessAlive(pid); }, timeout, std::chrono::milliseconds(20))) {
    ::kill(pid, SIGKILL);
    if (!PollUntil([pid] { return !ProcessAlive(pid); }, std::chrono::seconds(10),
                   std::chrono::milliseconds(20))) {
      return absl::InternalError(absl::StrCat("mariadbd pid ", pid, " of ", pid_file,
                                              " survives SIGKILL"));
    }
  }
  reap();
  return absl::OkStatus();
}

MysqlServer::MysqlServer(TempDir dir, std::string name, std::string os_user,
                         MysqlServerOptions options)
    : dir_(std::move(dir)), os_user_(std::move(os_user)), options_(std::move(options)) {
  data_dir_ = dir_.Sub(name);
  log_file_ = dir_.Sub(name + ".log");
  socket_ = dir_.Sub(name + ".sock");
  pid_file_ = dir_.Sub(name + ".pid");
}

absl::StatusOr<std::unique_ptr<MysqlServer>> MysqlServer::Create(const MysqlServerOptions& options) {
  AdoptOrphans();
  if (Mariadbd().empty()) {
    return absl::NotFoundError("no mariadbd in /usr/sbin (apt-get install mariadb-server)");
  }
  const std::string os_user = MysqlOsUser();
  absl::StatusOr<UserIds> ids = LookupUser(os_user);
  if (!ids.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "MysqlServer: the OS user ", os_user, " that runs MariaDB does not exist: ",
        ids.status().message()));
  }
  absl::StatusOr<std::string> templ = TemplateDataDir(os_user, *ids);
  if (!templ.ok()) return templ.status();
  TempDir dir("tmy");
  // The server's OS user owns the temp dir: the socket, the pid file and the
  // copies an engine makes beside the data directory go there.
  if (::chown(dir.path().c_str(), ids->uid, ids->gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", dir.path(), ": ", std::strerror(errno)));
  }
  std::unique_ptr<MysqlServer> server(new MysqlServer(std::move(dir), options.name, os_user, options));
  RunOptions run;
  run.timeout = std::chrono::seconds(120);
  absl::StatusOr<RunResult> copied = Run({"cp", "-a", *templ, server->data_dir_}, run);
  if (!copied.ok()) return copied.status();
  if (copied->exit_code != 0) {
    return absl::InternalError(absl::StrCat("cp -a ", *templ, " ", server->data_dir_, ": ",
                                            OutputTail(copied->output)));
  }
  // Chosen now, so that a server an engine or agent starts later (start =
  // false) has its port known in advance.
  server->port_ = FreePort();
  if (options.start) {
    absl::Status st = server->Start();
    if (!st.ok()) return st;
  }
  return server;
}

MysqlServer::~MysqlServer() {
  for (const std::string& pid_file :
       {pid_file_, dir_.Sub(options_.name + ".tandem-load.pid")}) {
    absl::Status st = StopMysqlByPidFile(pid_file);
    if (!st.ok()) std::fprintf(stderr, "tandem test harness: %s\n", st.ToString().c_str());
  }
  child_.reset();
  ReapAdoptedZombies();
}

std::vector<std::string> MysqlServer::server_args() const {
  std::vector<std::string> args = {
      "--bind-address=127.0.0.1",
      absl::StrCat("--server-id=", options_.server_id),
      "--gtid-strict-mode=ON",
      "--skip-name-resolve",
      "--innodb-buffer-pool-size=32M",
      kRedoLogSize,
      "--innodb-flush-log-at-trx-commit=2",
      "--innodb-doublewrite=0",
      "--sync-binlog=0",
      "--max-connections=40",
      "--open-files-limit=4096",
  };
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  return args;
}

bool MysqlServer::Answers() const {
  if (port_ == 0) return false;
  // Generous: a loaded machine can take seconds over a handshake.
  return MysqlClient::Connect(RootLogin(port_), std::chrono::seconds(10)).ok();
}

absl::Status MysqlServer::Start() {
  if (Answers()) return absl::OkStatus();
  absl::Status st;
  for (int attempt = 0; attempt < 3; ++attempt) {
    // A restart keeps the port (engines under test are configured with it)
    // unless it was taken meanwhile.
    if (attempt > 0 || port_ == 0) port_ = FreePort();
    st = StartOnce();
    if (!absl::IsUnavailable(st)) return st;  // Unavailable: the port was taken
  }
  return st;
}

absl::Status MysqlServer::StartOnce() {
  child_.reset();
  std::vector<std::string> argv = {Mariadbd(),
                                   "--no-defaults",
                                   "--datadir=" + data_dir_,
                                   absl::StrCat("--port=", port_),
                                   "--socket=" + socket_,
                                   "--pid-file=" + pid_file_,
                                   "--log-error=" + log_file_};
  for (const std::string& a : server_args()) argv.push_back(a);
  if (options_.log_bin) {
    argv.insert(argv.end(), {"--log-bin=mysql-bin", "--log-slave-updates=ON", "--binlog-format=ROW"});
  }
  const uint64_t log_offset = fs::exists(log_file_) ? fs::file_size(log_file_) : 0;
  ChildOptions options;
  options.run_as = os_user_;
  options.log_file = dir_.Sub(options_.name + ".stderr");
  options.cwd = "/";
  absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Start(argv, options);
  if (!child.ok()) return child.status();
  child_ = *std::move(child);
  // Ours answers, not another test's server that took the port first
  // (ours then exits with "already in use" and is started on another).
  auto ours = [this] {
    absl::StatusOr<std::string> pid_file = Value("SELECT @@pid_file");
    return pid_file.ok() && *pid_file == pid_file_;
  };
  bool ready = PollUntil([&] { return !child_->Running() || ours(); }, kStartTimeout,
                         std::chrono::milliseconds(20));
  if (ready && child_->Running() && ours()) return absl::OkStatus();
  std::string log = FileTail(log_file_, 200000);
  log = log.size() > log_offset ? log.substr(log_offset) : log;
  const std::string tail = OutputTail(log, 1500);
  if (!child_->Running() && absl::StrContains(log, "already in use")) {
    return absl::UnavailableError(absl::StrCat("port ", port_, " was taken: ", tail));
  }
  child_.reset();
  return absl::InternalError(absl::StrCat("mariadbd on ", data_dir_, " port ", port_,
                                          ready ? " exited" : " did not answer within 120 s",
                                          "; log: ", tail));
}

absl::Status MysqlServer::Stop() {
  if (child_ != nullptr && child_->Running()) {
    absl::Status st = child_->Signal(SIGTERM);
    if (st.ok()) {
      absl::StatusOr<int> code = child_->Wait(std::chrono::seconds(60));
      if (!code.ok()) return code.status();
    }
  }
  absl::Status st = StopMysqlByPidFile(pid_file_);
  ReapAdoptedZombies();
  return st;
}

absl::StatusOr<MysqlResult> MysqlServer::Query(const std::string& sql) const {
  absl::StatusOr<std::unique_ptr<MysqlClient>> c =
      MysqlClient::Connect(RootLogin(port_), std::chrono::seconds(30));
  if (!c.ok()) return c.status();
  return (*c)->Query("running a test statement", sql);
}

absl::Status MysqlServer::Exec(const std::string& sql) const { return Query(sql).status(); }

absl::StatusOr<std::string> MysqlServer::Value(const std::string& sql) const {
  absl::StatusOr<MysqlResult> r = Query(sql);
  if (!r.ok()) return r.status();
  if (r->rows.empty() || r->rows[0].empty()) {
    return absl::NotFoundError(absl::StrCat("no rows from: ", sql));
  }
  return r->rows[0][0].value_or("");
}

absl::Status MysqlServer::ExecAs(const std::string& user, const std::string& password,
                                 const std::string& sql) const {
  MysqlLogin login = RootLogin(port_);
  login.user = user;
  login.password = password;
  absl::StatusOr<std::unique_ptr<MysqlClient>> c =
      MysqlClient::Connect(login, std::chrono::seconds(30));
  if (!c.ok()) return c.status();
  return (*c)->Exec("running a test statement as " + user, sql);
}

}  // namespace tandem::testing

#include "tests/harness/pg_server.h"

#include <libpq-fe.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "common/subprocess.h"

namespace tandem::testing {
namespace fs = std::filesystem;

namespace {

constexpr std::chrono::seconds kStartTimeout(30);

// The version number of /usr/lib/postgresql/<N> (0 when not a number).
int MajorVersion(const std::string& name) {
  int v = 0;
  return absl::SimpleAtoi(name, &v) ? v : 0;
}

std::string ProcComm(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/comm"));
  std::string comm;
  std::getline(in, comm);
  return comm;
}

// Children of `pid` (from /proc), for cleaning up after a SIGKILLed postmaster.
std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    int child = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &child)) continue;
    std::ifstream in(entry.path() / "stat");
    std::string line;
    std::getline(in, line);
    size_t paren = line.rfind(')');
    if (paren == std::string::npos || paren + 4 > line.size()) continue;
    std::string rest = line.substr(paren + 4);  // after ") S "
    int ppid = 0;
    if (absl::SimpleAtoi(rest.substr(0, rest.find(' ')), &ppid) && ppid == pid) {
      out.push_back(child);
    }
  }
  return out;
}

absl::Status LibpqError(const std::string& what, PGconn* conn, PGresult* res) {
  std::string msg;
  std::string state;
  if (res != nullptr) {
    const char* m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char* s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (m != nullptr) msg = m;
    if (s != nullptr) state = s;
  }
  if (msg.empty()) msg = PQerrorMessage(conn);
  absl::StripAsciiWhitespace(&msg);
  return absl::InternalError(
      absl::StrCat(what, state.empty() ? "" : absl::StrCat(" (SQLSTATE ", state, ")"), ": ", msg));
}

}  // namespace

absl::StatusOr<std::string> PostgresBinDir() {
  const std::string preferred = "/usr/lib/postgresql/15/bin";
  if (PathExists(preferred + "/postgres")) return preferred;
  int best = 0;
  std::string best_dir;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    int v = MajorVersion(entry.path().filename().string());
    std::string bin = entry.path().string() + "/bin";
    if (v > best && PathExists(bin + "/postgres")) {
      best = v;
      best_dir = bin;
    }
  }
  if (best_dir.empty()) {
    return absl::NotFoundError(
        "no PostgreSQL server tools: neither /usr/lib/postgresql/15/bin/postgres nor any "
        "/usr/lib/postgresql/<N>/bin/postgres exists (apt-get install postgresql-15)");
  }
  return best_dir;
}

std::string PostgresOsUser() { return ::geteuid() == 0 ? "postgres" : CurrentUserName(); }

absl::Status StopPostgresByPidFile(const std::string& data_dir, std::chrono::milliseconds timeout) {
  const std::string pid_file = data_dir + "/postmaster.pid";
  absl::StatusOr<std::string> content = ReadFile(pid_file);
  if (!content.ok()) {
    if (absl::IsNotFound(content.status())) return absl::OkStatus();
    return content.status();
  }
  int pid = 0;
  std::string first = content->substr(0, content->find('\n'));
  if (!absl::SimpleAtoi(first, &pid) || pid <= 0) {
    return absl::InternalError(absl::StrCat(pid_file, ": no pid on its first line"));
  }
  auto reap = [pid] {
    int status = 0;
    ::waitpid(pid, &status, WNOHANG);
  };
  if (!ProcessAlive(pid)) {
    reap();
    return absl::OkStatus();  // stale pid file (crashed or killed server)
  }
  std::string comm = ProcComm(pid);
  if (comm != "postgres" && comm != "postmaster") {
    return absl::OkStatus();  // the pid was reused by another program
  }
  ::kill(pid, SIGINT);
  if (!PollUntil([pid] { return !ProcessAlive(pid); }, timeout, std::chrono::milliseconds(20))) {
    for (pid_t child : ChildrenOf(pid)) ::kill(child, SIGKILL);
    ::kill(pid, SIGKILL);
    if (!PollUntil([pid] { return !ProcessAlive(pid); }, std::chrono::seconds(10),
                   std::chrono::milliseconds(20))) {
      return absl::InternalError(
          absl::StrCat("postgres pid ", pid, " of ", data_dir, " survives SIGKILL"));
    }
  }
  reap();
  return absl::OkStatus();
}

PgServer::PgServer(TempDir dir, std::string data_dir, std::string bin_dir, std::string os_user,
                   std::vector<std::string> extra_args)
    : dir_(std::move(dir)),
      data_dir_(std::move(data_dir)),
      bin_dir_(std::move(bin_dir)),
      os_user_(std::move(os_user)),
      extra_args_(std::move(extra_args)) {
  log_file_ = data_dir_ + ".server.log";
}

absl::StatusOr<std::unique_ptr<PgServer>> PgServer::Create(const PgServerOptions& options) {
  AdoptOrphans();
  absl::StatusOr<std::string> bin_dir = PostgresBinDir();
  if (!bin_dir.ok()) return bin_dir.status();
  const std::string os_user = PostgresOsUser();
  absl::StatusOr<UserIds> ids = LookupUser(os_user);
  if (!ids.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("PgServer: the OS user ", os_user,
                     " that runs PostgreSQL does not exist: ", ids.status().message()));
  }
  TempDir dir("tpg");
  // The server's OS user owns the temp dir: the unix socket and its lock
  // file go there, and so do the copies an engine makes beside data_dir.
  if (::chown(dir.path().c_str(), ids->uid, ids->gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", dir.path(), ": ", std::strerror(errno)));
  }
  const std::string data_dir = dir.Sub(options.name);
  if (::mkdir(data_dir.c_str(), 0700) != 0) {
    return absl::InternalError(absl::StrCat("mkdir ", data_dir, ": ", std::strerror(errno)));
  }
  if (::chown(data_dir.c_str(), ids->uid, ids->gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", data_dir, ": ", std::strerror(errno)));
  }
  RunOptions run;
  run.run_as = os_user;
  run.env = {{"LC_ALL", "C.UTF-8"}};
  run.timeout = std::chrono::seconds(120);
  absl::StatusOr<RunResult> initdb =
      Run({*bin_dir + "/initdb", "--no-sync", "-U", "postgres", "--auth=trust", "-E", "UTF8",
           "--locale=C.UTF-8", "--wal-segsize=1", "-D", data_dir},
          run);
  if (!initdb.ok()) return initdb.status();
  if (initdb->exit_code != 0) {
    return absl::InternalError(absl::StrCat("initdb of ", data_dir, " exited with ",
                                            initdb->exit_code, ": ", OutputTail(initdb->output)));
  }
  std::unique_ptr<PgServer> server(
      new PgServer(std::move(dir), data_dir, *bin_dir, os_user, options.extra_args));
  // Chosen now, so that a server an engine or agent starts later (start =
  // false) has its port known in advance.
  server->port_ = FreePort();
  if (options.start) {
    absl::Status st = server->Start();
    if (!st.ok()) return st;
  }
  return server;
}

PgServer::~PgServer() {
  absl::Status st = StopPostgresByPidFile(data_dir_);
  if (!st.ok()) std::fprintf(stderr, "tandem test harness: %s\n", st.ToString().c_str());
  child_.reset();
  ReapAdoptedZombies();
}

std::string PgServer::conninfo() const {
  return absl::StrCat("host=127.0.0.1 port=", port_,
                      " user=postgres dbname=postgres connect_timeout=5");
}

std::vector<std::string> PgServer::server_args() const {
  std::vector<std::string> args = {"-c", "listen_addresses=127.0.0.1",
                                   "-c", "unix_socket_directories=" + dir_.path(),
                                   "-c", "fsync=off",
                                   "-c", "shared_buffers=16MB",
                                   "-c", "max_connections=30",
                                   // pg_rewind (a slave's cheap rejoin) needs it.
                                   "-c", "wal_log_hints=on"};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  return args;
}

bool PgServer::Answers() const {
  if (port_ == 0) return false;
  return PQping(conninfo().c_str()) == PQPING_OK;
}

absl::Status PgServer::Start() {
  if (child_ != nullptr && child_->Running() && Answers()) return absl::OkStatus();
  absl::Status st;
  for (int attempt = 0; attempt < 3; ++attempt) {
    // A restart keeps the port (engines under test are configured with it)
    // unless it was taken meanwhile.
    if (attempt > 0 || port_ == 0) port_ = FreePort();
    st = StartOnce();
    if (!absl::IsUnavailable(st)) return st;  // Unavailable: the port was taken, try another
  }
  return st;
}

absl::Status PgServer::StartOnce() {
  child_.reset();
  std::vector<std::string> argv = {bin_dir_ + "/postgres", "-D", data_dir_, "-p",
                                   absl::StrCat(port_)};
  for (const std::string& a : server_args()) argv.push_back(a);
  const size_t log_offset = fs::exists(log_file_) ? fs::file_size(log_file_) : 0;
  ChildOptions options;
  options.run_as = os_user_;
  options.log_file = log_file_;
  options.env = {{"LC_ALL", "C.UTF-8"}};
  absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Start(argv, options);
  if (!child.ok()) return child.status();
  child_ = *std::move(child);
  // Ours answers, not another test's server that took the port first
  // (ours then exits with "could not bind" and is started on another).
  auto ours = [this] {
    absl::StatusOr<std::string> dir = Value("SELECT current_setting('data_directory')");
    return dir.ok() && *dir == data_dir_;
  };
  bool ready = PollUntil([&] { return !child_->Running() || ours(); }, kStartTimeout,
                         std::chrono::milliseconds(20));
  if (ready && child_->Running() && ours()) return absl::OkStatus();
  std::string log = FileTail(log_file_, 100000);
  log = log.size() > log_offset ? log.substr(std::min(log.size(), log_offset)) : log;
  std::string tail = OutputTail(log, 1500);
  if (!child_->Running() && (log.find("could not bind") != std::string::npos ||
                             log.find("already in use") != std::string::npos)) {
    return absl::UnavailableError(absl::StrCat("port ", port_, " was taken: ", tail));
  }
  child_.reset();
  return absl::InternalError(absl::StrCat("postgres on ", data_dir_, " port ", port_,
                                          ready ? " exited" : " did not answer within 30 s",
                                          "; log: ", tail));
}

absl::Status PgServer::Stop() {
  if (child_ != nullptr && child_->Running()) {
    absl::Status st = child_->Signal(SIGINT);
    if (st.ok()) {
      absl::StatusOr<int> code = child_->Wait(std::chrono::seconds(30));
      if (!code.ok()) return code.status();
    }
  }
  absl::Status st = StopPostgresByPidFile(data_dir_);
  ReapAdoptedZombies();
  return st;
}

absl::StatusOr<Rows> PgServer::Query(const std::string& sql) const {
  PGconn* conn = PQconnectdb(conninfo().c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    absl::Status st = LibpqError(absl::StrCat("connecting to 127.0.0.1:", port_), conn, nullptr);
    PQfinish(conn);
    return st;
  }
  PGresult* res = PQexec(conn, sql.c_str());
  ExecStatusType status = PQresultStatus(res);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    absl::Status st = LibpqError("query failed", conn, res);
    PQclear(res);
    PQfinish(conn);
    return st;
  }
  Rows rows;
  for (int r = 0; r < PQntuples(res); ++r) {
    std::vector<std::string> row;
    for (int c = 0; c < PQnfields(res); ++c) row.emplace_back(PQgetvalue(res, r, c));
    rows.push_back(std::move(row));
  }
  PQclear(res);
  PQfinish(conn);
  return rows;
}

absl::Status PgServer::Exec(const std::string& sql) const { return Query(sql).status(); }

absl::StatusOr<std::string> PgServer::Value(const std::string& sql) const {
  absl::StatusOr<Rows> rows = Query(sql);
  if (!rows.ok()) return rows.status();
  if (rows->empty() || rows->front().empty()) {
    return absl::NotFoundError(absl::StrCat("no rows from: ", sql));
  }
  return rows->front().front();
}

}  // namespace tandem::testing

#include "engines/postgresql/postgresql_engine.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/log.h"
#include "common/status_util.h"
#include "common/subprocess.h"
#include "engines/postgresql/pg_files.h"
#include "engines/postgresql/scram.h"
#include "engines/server_control.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using Rows = std::vector<std::vector<std::string>>;
using Clock = std::chrono::steady_clock;

constexpr char kAgentApplicationName[] = "tandem-agent";
// Where Debian's and Ubuntu's PostgreSQL put their Unix sockets (libpq's
// default there too), and the server log of their postgresql@V-C units.
constexpr char kStockSocketDir[] = "/var/run/postgresql";
constexpr char kStockUnitPrefix[] = "postgresql@";
constexpr char kStockLogDir[] = "/var/log/postgresql";
constexpr int kConnectTimeoutSeconds = 5;
// How long a reload, a session termination or a slot release may take.
constexpr std::chrono::seconds kSettleTimeout(10);
// pg_basebackup of a large data set takes as long as it takes.
constexpr std::chrono::hours kCopyTimeout(24 * 7);

// The libpq error of a failed statement or connection, as a status:
// connection trouble and server shutdown are Unavailable, a read-only server
// or missing privilege FailedPrecondition, anything else Internal.
absl::Status SqlError(std::string_view what, PGconn* conn, const PGresult* res) {
  std::string msg;
  std::string state;
  if (res != nullptr) {
    const char* m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char* s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (m != nullptr) msg = m;
    if (s != nullptr) state = s;
  }
  if (msg.empty() && conn != nullptr) msg = PQerrorMessage(conn);
  msg = Trimmed(msg);
  absl::StatusCode code = absl::StatusCode::kInternal;
  if (state.empty() || absl::StartsWith(state, "08") || absl::StartsWith(state, "57P") ||
      absl::StartsWith(state, "53")) {
    code = absl::StatusCode::kUnavailable;
  } else if (state == "25006" || state == "42501") {
    code = absl::StatusCode::kFailedPrecondition;
  }
  std::string suffix = state.empty() ? "" : absl::StrCat(" (SQLSTATE ", state, ")");
  return absl::Status(code, absl::StrCat("while ", AbslView(what), ": ", msg, suffix));
}

// The postmaster that holds `data_dir`'s postmaster.pid, when it is alive.
std::optional<pid_t> LivePostmasterPid(const std::string& data_dir) {
  absl::StatusOr<std::string> content = ReadFile(data_dir + "/postmaster.pid");
  if (!content.ok()) return std::nullopt;
  int pid = 0;
  if (!absl::SimpleAtoi(AbslView(content->substr(0, content->find('\n'))), &pid) || pid <= 0) {
    return std::nullopt;
  }
  if (::kill(pid, 0) != 0 && errno == ESRCH) return std::nullopt;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  if (stat) {
    std::string line;
    std::getline(stat, line);
    size_t paren = line.rfind(')');
    size_t open = line.find('(');
    if (paren == std::string::npos || open == std::string::npos || paren + 2 >= line.size()) {
      return std::nullopt;
    }
    char state = line[paren + 2];
    std::string comm = line.substr(open + 1, paren - open - 1);
    if (state == 'Z' || state == 'X') return std::nullopt;
    if (comm != "postgres" && comm != "postmaster") return std::nullopt;  // pid reused
  }
  return static_cast<pid_t>(pid);
}

bool IsExecutable(const std::string& path) {
  struct stat sb;
  return ::stat(path.c_str(), &sb) == 0 && S_ISREG(sb.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

bool PlainIdentifier(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

std::string QuoteIdent(const std::string& plain_identifier) {
  return absl::StrCat("\"", plain_identifier, "\"");
}

// A libpq connection with RAII.
struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnDeleter>;
struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

enum class Liveness { kUp, kDown, kStarting };

class PostgresqlEngine final : public Engine {
 public:
  PostgresqlEngine(EngineConfig config, std::string bin_dir, std::optional<UserIds> os_ids)
      : config_(std::move(config)), bin_dir_(std::move(bin_dir)), os_ids_(os_ids) {
    const fs::path data(config_.data_dir);
    parent_ = data.parent_path().string();
    const std::string base = data.filename().string();
    log_file_ =
        config_.log_file.empty() ? DefaultLogFile(config_, parent_, base) : config_.log_file;
    pgpass_file_ = absl::StrCat(parent_, "/.tandem-", base, ".pgpass");
    new_dir_ = config_.data_dir + ".tandem-new";
    basebackup_log_ = config_.data_dir + ".tandem-basebackup.log";
  }
  ~PostgresqlEngine() override { Disconnect(); }

  EngineType type() const override { return EngineType::kPostgresql; }
  absl::StatusOr<EngineFacts> Observe() override;
  absl::Status Start() override;
  absl::Status Stop() override;
  absl::Status Fence() override;
  absl::Status ServeSlaves(const std::vector<Peer>& slaves) override;
  absl::StatusOr<std::string> Bootstrap(const Peer& self, const Peer& upstream,
                                        const ProgressFn& progress) override;
  absl::Status Follow(const Peer& self, const Peer& upstream) override;
  absl::Status MakeWritable() override;
  absl::StatusOr<std::string> Rejoin(const Peer& self, const Peer& upstream) override;
  std::string DataParentDir() const override { return parent_; }
  absl::StatusOr<bool> HasReplayed(const std::string& position) override;

 private:
  // Where the agent reaches the server: engine.host, or for the default the
  // stock socket directory when the server's socket is there, else
  // 127.0.0.1 (engines/engine_config.h).
  std::string ConnHost() const {
    if (!config_.host.empty()) return config_.host;
    const std::string stock_socket = absl::StrCat(kStockSocketDir, "/.s.PGSQL.", config_.port);
    return PathExists(stock_socket) ? kStockSocketDir : "127.0.0.1";
  }
  static std::string Where(const std::string& host, uint32_t port) {
    if (!host.empty() && host[0] == '/') return absl::StrCat(host, "/.s.PGSQL.", port);
    return absl::StrCat(host, ":", port);
  }
  std::string Where() const { return Where(ConnHost(), config_.port); }
  // The server log of the default start; with a Debian unit postgresql@V-C,
  // the one its pg_ctlcluster writes.
  static std::string DefaultLogFile(const EngineConfig& config, const std::string& parent,
                                    const std::string& base) {
    absl::string_view unit = config.systemd_unit;
    if (absl::ConsumePrefix(&unit, kStockUnitPrefix)) {
      absl::ConsumeSuffix(&unit, ".service");
      return absl::StrCat(kStockLogDir, "/postgresql-", unit, ".log");
    }
    return absl::StrCat(parent, "/", base, ".log");
  }
  std::string DataFile(std::string_view name) const {
    return absl::StrCat(config_.data_dir, "/", AbslView(name));
  }
  std::string Tool(std::string_view name) const {
    return absl::StrCat(bin_dir_, "/", AbslView(name));
  }
  RunOptions ToolOptions() const;
  // TLS for the replication connection from `self` to `upstream` (engine.tls_*).
  std::optional<pg::ConninfoTls> Tls(const Peer& self, const Peer& upstream) const {
    if (!ReplicationTls(config_, self, upstream)) return std::nullopt;
    return pg::ConninfoTls{config_.tls_ca_file, config_.tls_cert_file, config_.tls_key_file};
  }

  // ---- connection
  Liveness Ping() const;
  absl::Status Connect();
  // Whether the open session (if any) still answers; drops it when not.
  bool SessionAnswers();
  void Disconnect();
  absl::StatusOr<Rows> Query(std::string_view what, const std::string& sql,
                             const std::vector<std::string>& params = {});
  absl::Status Exec(std::string_view what, const std::string& sql,
                    const std::vector<std::string>& params = {}) {
    return Query(what, sql, params).status();
  }
  // One statement at a time: ALTER SYSTEM refuses to run in the implicit
  // transaction of a multi-statement query.
  absl::Status ExecEach(std::string_view what, const std::vector<std::string>& statements) {
    for (const std::string& sql : statements) TANDEM_RETURN_IF_ERROR(Exec(what, sql));
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Value(std::string_view what, const std::string& sql,
                                    const std::vector<std::string>& params = {});
  // Unavailable unless the server answers.
  absl::Status RequireUp() const;
  // Reloads the configuration and waits until this session sees `name`'s
  // configured value (pg_settings.reset_val) equal to `want`.
  absl::Status ReloadAndWait(const std::vector<std::pair<std::string, std::string>>& wanted);
  // Terminates the sessions `pids_sql` selects and waits until they are gone.
  absl::Status TerminateAndWait(std::string_view what, const std::string& pids_sql);

  // ---- files
  absl::Status WriteKeepingOwner(const std::string& path, const std::string& content);
  absl::StatusOr<std::string> ControldataSystemId(const std::string& data_dir) const;
  absl::StatusOr<std::optional<std::string>> ReplicationPassword() const;
  // The passfile: one line for `upstream`'s host and port only.
  absl::Status EnsurePgpass(const Peer& upstream, const std::optional<std::string>& password);
  std::string Passfile(const std::optional<std::string>& password) const {
    return password.has_value() ? pgpass_file_ : "";
  }
  std::vector<std::string> ServedSlaves(const std::string& hba_text,
                                        const std::set<std::string>& slots) const;

  // ---- steps
  absl::StatusOr<EngineFacts> ObserveStopped(EngineFacts facts);
  absl::StatusOr<EngineFacts> ObserveRunning(EngineFacts facts);
  absl::Status EnsureReplicationSettings(size_t slave_count);
  absl::Status EnsureReplicationRole(const std::optional<std::string>& password);
  absl::Status EnsureHba(const std::vector<Peer>& slaves, const std::string& hba_file,
                         const std::optional<std::string>& password);
  absl::Status EnsureSlots(const std::vector<Peer>& slaves);
  // Runs `sql` on `upstream` as the replication role with psql (a
  // replication connection when `replication`): the login (SCRAM) and TLS
  // happen in that short-lived process, so OpenSSL's tables never stay in
  // the agent's memory. The rows, fields split on '|'; Unavailable with
  // psql's message when it fails.
  absl::StatusOr<std::vector<std::vector<std::string>>> UpstreamQuery(
      const Peer& self, const Peer& upstream, const std::optional<std::string>& password,
      bool replication, const std::string& sql) const;
  absl::StatusOr<std::string> CheckUpstreamServes(const Peer& self, const Peer& upstream,
                                                  const std::optional<std::string>& password,
                                                  const std::string& slot) const;
  // CHECKPOINT on `upstream` as the replication role (pg_checkpoint): a
  // master promoted a moment ago shows its new timeline in its control file
  // only after its first checkpoint, and pg_rewind reads the timeline there.
  absl::Status CheckpointUpstream(const Peer& self, const Peer& upstream,
                                  const std::optional<std::string>& password) const;
  // pg_rewind from `upstream` (a dry run first when `dry_run`); its output.
  absl::StatusOr<std::string> RunRewind(const Peer& self, const Peer& upstream,
                                        const std::optional<std::string>& password, bool dry_run);
  // FailedPrecondition when the local WAL after `fork` holds committed
  // transactions (a rewind would throw them away).
  absl::Status CheckNothingCommittedAfter(const pg::Divergence& fork, const Peer& upstream);
  // The replication password (into `password`) and its passfile, then
  // CheckUpstreamServes for this node's slot: the system identifier.
  absl::StatusOr<std::string> UpstreamServesUs(const Peer& self, const Peer& upstream,
                                               std::optional<std::string>* password);
  absl::Status CopyFromUpstream(const Peer& self, const Peer& upstream,
                                const std::optional<std::string>& password, const std::string& slot,
                                const ProgressFn& progress);
  absl::Status ConfigureStandby(const std::string& data_dir, const std::string& conninfo,
                                const std::string& slot);

  EngineConfig config_;
  std::string bin_dir_;
  std::optional<UserIds> os_ids_;  // chown target when the agent is root
  std::string parent_;
  std::string log_file_;
  std::string pgpass_file_;
  std::string new_dir_;
  std::string basebackup_log_;
  ConnPtr conn_;
  std::string hba_file_;  // last seen SHOW hba_file, for a stopped server
};

// ------------------------------------------------------------------ plumbing

RunOptions PostgresqlEngine::ToolOptions() const {
  RunOptions options;
  options.run_as = config_.os_user;
  options.cwd = "/";
  options.timeout = std::chrono::seconds(config_.timeout_seconds + 30);
  return options;
}

Liveness PostgresqlEngine::Ping() const {
  const std::string port = absl::StrCat(config_.port);
  const std::string timeout = absl::StrCat(kConnectTimeoutSeconds);
  const char* keys[] = {"host", "port", "user", "dbname", "connect_timeout", nullptr};
  const std::string host = ConnHost();
  const char* values[] = {host.c_str(), port.c_str(),    config_.user.c_str(),
                          "postgres",   timeout.c_str(), nullptr};
  switch (PQpingParams(keys, values, 0)) {
    case PQPING_OK: return Liveness::kUp;
    case PQPING_REJECT: return Liveness::kStarting;
    default: return Liveness::kDown;
  }
}

absl::Status PostgresqlEngine::RequireUp() const {
  switch (Ping()) {
    case Liveness::kUp: return absl::OkStatus();
    case Liveness::kStarting:
      return absl::UnavailableError(
          absl::StrCat("PostgreSQL at ", Where(), " is starting up or shutting down"));
    case Liveness::kDown: break;
  }
  return absl::UnavailableError(
      absl::StrCat("server is not running (nothing answers at ", Where(), ")"));
}

absl::Status PostgresqlEngine::Connect() {
  if (conn_ != nullptr && PQstatus(conn_.get()) == CONNECTION_OK) return absl::OkStatus();
  Disconnect();
  std::optional<std::string> password;
  if (!config_.password_file.empty()) {
    absl::StatusOr<std::string> pw = ReadSecretFile(config_.password_file);
    if (!pw.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("while reading engine.password_file: ", pw.status().message()));
    }
    password = *std::move(pw);
  }
  const std::string port = absl::StrCat(config_.port);
  const std::string timeout = absl::StrCat(kConnectTimeoutSeconds);
  std::vector<const char*> keys = {
      "host", "port", "user", "dbname", "connect_timeout", "application_name"};
  const std::string host = ConnHost();
  std::vector<const char*> values = {host.c_str(), port.c_str(),    config_.user.c_str(),
                                     "postgres",   timeout.c_str(), kAgentApplicationName};
  if (password.has_value()) {
    keys.push_back("password");
    values.push_back(password->c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  ConnPtr conn;
  auto connect = [&] { conn.reset(PQconnectdbParams(keys.data(), values.data(), 0)); };
  // Over the socket as os_user's namesake: the server's peer authentication
  // sees os_user (a stock host lets only that in, with no password).
  absl::Status as_user = LogsInAsOsUser(config_, host) && os_ids_.has_value()
                             ? WithThreadIdentity(*os_ids_, connect)
                             : (connect(), absl::OkStatus());
  if (password.has_value()) std::fill(password->begin(), password->end(), '\0');
  if (!as_user.ok()) return Context("logging in as " + config_.os_user, as_user);
  if (conn == nullptr) return absl::InternalError("libpq could not allocate a connection");
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    std::string msg = Trimmed(PQerrorMessage(conn.get()));
    switch (Ping()) {
      case Liveness::kDown:
        return absl::UnavailableError(
            absl::StrCat("PostgreSQL at ", Where(host, config_.port), " is not running: ", msg));
      case Liveness::kStarting:
        return absl::UnavailableError(absl::StrCat("PostgreSQL at ", Where(host, config_.port),
                                                   " is starting up or shutting down: ", msg));
      case Liveness::kUp: break;
    }
    if (absl::StrContains(msg, "too many") || absl::StrContains(msg, "connection slots")) {
      return absl::UnavailableError(
          absl::StrCat("PostgreSQL at ", Where(host, config_.port), ": ", msg));
    }
    return absl::FailedPreconditionError(absl::StrCat("PostgreSQL at ", Where(host, config_.port),
                                                      " refuses the agent's login as ",
                                                      config_.user, ": ", msg));
  }
  // The agent's own session must be able to write even on a fenced server;
  // Observe reads the configured value (pg_settings.reset_val), not this one.
  ResultPtr res(PQexec(conn.get(),
                       "SET default_transaction_read_only = off; "
                       "SET statement_timeout = 0; SET lock_timeout = '30s'"));
  if (PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    return SqlError("preparing the agent's session", conn.get(), res.get());
  }
  conn_ = std::move(conn);
  return absl::OkStatus();
}

void PostgresqlEngine::Disconnect() { conn_.reset(); }

bool PostgresqlEngine::SessionAnswers() {
  if (conn_ == nullptr || PQstatus(conn_.get()) != CONNECTION_OK) return false;
  // An empty query, with the connect timeout as its bound: a hung server
  // must not hang the pass (the ping then tells what it is).
  PGconn* conn = conn_.get();
  bool answered = PQsendQuery(conn, "") == 1;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(kConnectTimeoutSeconds);
  bool empty = false;
  while (answered) {
    while (answered && PQisBusy(conn)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd socket{PQsocket(conn), POLLIN, 0};
      answered = left.count() > 0 && ::poll(&socket, 1, static_cast<int>(left.count())) > 0 &&
                 PQconsumeInput(conn) == 1;
    }
    if (!answered) break;
    ResultPtr res(PQgetResult(conn));
    if (res == nullptr) break;  // the query's results are all in
    empty = PQresultStatus(res.get()) == PGRES_EMPTY_QUERY;
  }
  if (answered && empty) return true;
  Disconnect();
  return false;
}

absl::StatusOr<Rows> PostgresqlEngine::Query(std::string_view what, const std::string& sql,
                                             const std::vector<std::string>& params) {
  for (int attempt = 0;; ++attempt) {
    TANDEM_RETURN_IF_ERROR(Context(what, Connect()));
    std::vector<const char*> values;
    for (const std::string& p : params) values.push_back(p.c_str());
    ResultPtr res(params.empty()
                      ? PQexec(conn_.get(), sql.c_str())
                      : PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()),
                                     nullptr, values.data(), nullptr, nullptr, 0));
    ExecStatusType status = PQresultStatus(res.get());
    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
      Rows rows;
      for (int r = 0; r < PQntuples(res.get()); ++r) {
        std::vector<std::string> row;
        for (int c = 0; c < PQnfields(res.get()); ++c)
          row.emplace_back(PQgetvalue(res.get(), r, c));
        rows.push_back(std::move(row));
      }
      return rows;
    }
    if (PQstatus(conn_.get()) == CONNECTION_BAD) {
      // A kept connection goes stale when the server restarts: reconnect
      // once. Every statement the engine runs is idempotent.
      absl::Status st = SqlError(what, conn_.get(), res.get());
      Disconnect();
      if (attempt == 0) continue;
      return absl::UnavailableError(st.message());
    }
    return SqlError(what, conn_.get(), res.get());
  }
}

absl::StatusOr<std::string> PostgresqlEngine::Value(std::string_view what, const std::string& sql,
                                                    const std::vector<std::string>& params) {
  absl::StatusOr<Rows> rows = Query(what, sql, params);
  if (!rows.ok()) return rows.status();
  if (rows->empty() || rows->front().empty()) {
    return absl::InternalError(absl::StrCat("while ", AbslView(what), ": no result"));
  }
  return rows->front().front();
}

absl::Status PostgresqlEngine::ReloadAndWait(
    const std::vector<std::pair<std::string, std::string>>& wanted) {
  TANDEM_RETURN_IF_ERROR(Exec("reloading the configuration", "SELECT pg_reload_conf()"));
  std::string last;
  absl::Status error;
  // The postmaster signals every backend, this one included; a backend
  // applies the new values before its next statement.
  bool applied = PollFor(
      [&] {
        for (const auto& [name, want] : wanted) {
          absl::StatusOr<std::string> v = Value(
              "reading a setting", "SELECT reset_val FROM pg_settings WHERE name = $1", {name});
          if (!v.ok()) {
            error = v.status();
            return true;
          }
          if (*v != want) {
            last = absl::StrCat(name, " is '", *v, "', wanted '", want, "'");
            return false;
          }
        }
        return true;
      },
      kSettleTimeout, std::chrono::milliseconds(20));
  if (!error.ok()) return error;
  if (!applied) {
    return absl::FailedPreconditionError(
        absl::StrCat("after a configuration reload ", last,
                     ": it is set on the server's command line or in a file that overrides "
                     "postgresql.auto.conf"));
  }
  return absl::OkStatus();
}

absl::Status PostgresqlEngine::TerminateAndWait(std::string_view what,
                                                const std::string& pids_sql) {
  absl::StatusOr<Rows> pids = Query(what, pids_sql);
  if (!pids.ok()) return pids.status();
  if (pids->empty()) return absl::OkStatus();
  std::vector<std::string> list;
  for (const auto& row : *pids) list.push_back(row[0]);
  const std::string array = absl::StrCat("{", absl::StrJoin(list, ","), "}");
  TANDEM_RETURN_IF_ERROR(
      Exec(what, "SELECT pg_terminate_backend(p) FROM unnest($1::int[]) AS p", {array}));
  std::string left;
  absl::Status error;
  bool gone = PollFor(
      [&] {
        absl::StatusOr<std::string> n = Value(
            what, "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", {array});
        if (!n.ok()) {
          error = n.status();
          return true;
        }
        left = *n;
        return *n == "0";
      },
      kSettleTimeout, std::chrono::milliseconds(20));
  if (!error.ok()) return error;
  if (!gone) {
    return absl::UnavailableError(absl::StrCat("while ", AbslView(what), ": ", left,
                                               " session(s) still alive ", kSettleTimeout.count(),
                                               " s after termination"));
  }
  return absl::OkStatus();
}

absl::Status PostgresqlEngine::WriteKeepingOwner(const std::string& path,
                                                 const std::string& content) {
  struct stat sb;
  unsigned mode = 0600;
  std::optional<UserIds> owner = os_ids_;
  if (::stat(path.c_str(), &sb) == 0) {
    mode = sb.st_mode & 07777;
    owner = UserIds{sb.st_uid, sb.st_gid};
  }
  TANDEM_RETURN_IF_ERROR(WriteFileAtomic(path, content, mode));
  if (owner.has_value() && ::geteuid() == 0 && ::chown(path.c_str(), owner->uid, owner->gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> PostgresqlEngine::ControldataSystemId(
    const std::string& data_dir) const {
  RunOptions options = ToolOptions();
  options.env = {{"LC_ALL", "C"}, {"LANG", "C"}};
  options.timeout = std::chrono::seconds(30);
  absl::StatusOr<RunResult> result = Run({Tool("pg_controldata"), data_dir}, options);
  if (!result.ok()) return result.status();
  if (result->exit_code != 0) {
    return absl::InternalError(absl::StrCat("pg_controldata ", data_dir, " exited with ",
                                            result->exit_code, OutputReason(result->output)));
  }
  std::optional<std::string> id =
      pg::ControldataField(result->output, "Database system identifier");
  if (!id.has_value() || id->empty()) {
    return absl::InternalError(
        absl::StrCat("pg_controldata ", data_dir, " printed no database system identifier"));
  }
  return *id;
}

absl::StatusOr<std::optional<std::string>> PostgresqlEngine::ReplicationPassword() const {
  // Replication always logs in with a password (SCRAM): no trust rule.
  if (config_.replication_password_file.empty()) {
    return absl::FailedPreconditionError(
        "engine.replication_password_file is not set: replication logs in with a password "
        "(the same file on every node of the group; no trust access)");
  }
  absl::StatusOr<std::string> pw = ReadSecretFile(config_.replication_password_file);
  if (!pw.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("while reading engine.replication_password_file: ", pw.status().message()));
  }
  if (pw->empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "engine.replication_password_file ", config_.replication_password_file, " is empty"));
  }
  return std::optional<std::string>(*std::move(pw));
}

absl::Status PostgresqlEngine::EnsurePgpass(const Peer& upstream,
                                            const std::optional<std::string>& password) {
  if (!password.has_value()) return absl::OkStatus();
  const std::string content =
      pg::PgpassLine(upstream.host, upstream.port, config_.replication_user, *password);
  absl::StatusOr<std::string> current = ReadFile(pgpass_file_);
  struct stat sb;
  bool right_mode = ::stat(pgpass_file_.c_str(), &sb) == 0 && (sb.st_mode & 077) == 0 &&
                    (!os_ids_.has_value() || sb.st_uid == os_ids_->uid);
  if (current.ok() && *current == content && right_mode) return absl::OkStatus();
  TANDEM_RETURN_IF_ERROR(WriteFileAtomic(pgpass_file_, content, 0600));
  if (os_ids_.has_value() && ::chown(pgpass_file_.c_str(), os_ids_->uid, os_ids_->gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", pgpass_file_, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::vector<std::string> PostgresqlEngine::ServedSlaves(const std::string& hba_text,
                                                        const std::set<std::string>& slots) const {
  std::vector<std::string> served;
  for (const std::string& id : pg::HbaBlockSlaveIds(hba_text)) {
    if (slots.count(pg::SlotName(id)) != 0) served.push_back(id);
  }
  std::sort(served.begin(), served.end());
  served.erase(std::unique(served.begin(), served.end()), served.end());
  return served;
}

// ------------------------------------------------------------------ Observe

absl::StatusOr<EngineFacts> PostgresqlEngine::Observe() {
  EngineFacts facts;
  facts.has_data = PathExists(DataFile("PG_VERSION"));
  // The agent's open session answering is proof enough that the server is
  // up; a ping is a new connection (a backend forked on the server) each
  // pass, so it is used only when there is no session or it has gone.
  switch (SessionAnswers() ? Liveness::kUp : Ping()) {
    case Liveness::kStarting:
      return absl::UnavailableError(
          absl::StrCat("PostgreSQL at ", Where(), " is starting up or shutting down"));
    case Liveness::kDown:
      Disconnect();
      if (std::optional<pid_t> pid = LivePostmasterPid(config_.data_dir)) {
        return absl::UnavailableError(absl::StrCat("a postmaster (pid ", *pid, ") runs on ",
                                                   config_.data_dir, " but nothing answers at ",
                                                   Where()));
      }
      return ObserveStopped(std::move(facts));
    case Liveness::kUp: break;
  }
  return ObserveRunning(std::move(facts));
}

absl::StatusOr<bool> PostgresqlEngine::HasReplayed(const std::string& position) {
  // An LSN is two hex numbers: "16/B374D848".
  const size_t slash = position.find('/');
  const bool valid = slash != std::string::npos && slash > 0 && slash + 1 < position.size() &&
                     position.find_first_not_of("0123456789ABCDEFabcdef/") == std::string::npos &&
                     position.find('/', slash + 1) == std::string::npos;
  if (!valid) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", position, "\" is not a PostgreSQL WAL position (LSN)"));
  }
  absl::StatusOr<Rows> rows = Query("comparing the replay position", R"sql(
      SELECT coalesce((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                            ELSE pg_current_wal_lsn() END >= $1::pg_lsn)::text, 'false'))sql",
                                    {position});
  if (!rows.ok()) return rows.status();
  return rows->at(0)[0] == "true";
}

absl::StatusOr<EngineFacts> PostgresqlEngine::ObserveStopped(EngineFacts facts) {
  facts.running = false;
  if (!facts.has_data) return facts;
  facts.is_slave = PathExists(DataFile("standby.signal"));
  absl::StatusOr<std::string> auto_conf = ReadFile(DataFile("postgresql.auto.conf"));
  if (facts.is_slave && auto_conf.ok()) {
    facts.upstream =
        pg::UpstreamFromConninfo(pg::ConfValue(*auto_conf, "primary_conninfo").value_or(""));
  }
  absl::StatusOr<std::string> id = ControldataSystemId(config_.data_dir);
  if (id.ok()) facts.data_id = *id;
  facts.data_bytes = DirectorySize(config_.data_dir);
  const std::string hba = hba_file_.empty() ? DataFile("pg_hba.conf") : hba_file_;
  absl::StatusOr<std::string> hba_text = ReadFile(hba);
  if (hba_text.ok()) {
    std::set<std::string> slots;
    for (const std::string& sid : pg::HbaBlockSlaveIds(*hba_text)) {
      std::string name = pg::SlotName(sid);
      if (PathExists(DataFile("pg_replslot/" + name))) slots.insert(name);
    }
    facts.served_slaves = ServedSlaves(*hba_text, slots);
  }
  return facts;
}

absl::StatusOr<EngineFacts> PostgresqlEngine::ObserveRunning(EngineFacts facts) {
  absl::StatusOr<Rows> rows = Query("reading the server state", R"sql(
      SELECT pg_is_in_recovery()::text,
             (SELECT reset_val FROM pg_settings WHERE name = 'default_transaction_read_only'),
             (SELECT system_identifier::text FROM pg_control_system()),
             CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_replay_lsn()::text, '')
                  ELSE pg_current_wal_lsn()::text END,
             (SELECT coalesce(sum(pg_database_size(oid)), 0)::text FROM pg_database),
             current_setting('data_directory'),
             current_setting('hba_file'),
             current_setting('primary_conninfo'),
             (SELECT coalesce(string_agg(slot_name::text, ','), '') FROM pg_replication_slots
               WHERE slot_type = 'physical' AND slot_name LIKE 'tandem\_%'))sql");
  if (!rows.ok()) return rows.status();
  const std::vector<std::string>& r = rows->at(0);
  facts.running = true;
  facts.has_data = true;
  const bool in_recovery = r[0] == "true";
  facts.is_slave = in_recovery;
  facts.writable = !in_recovery && r[1] == "off";
  facts.data_id = r[2];
  facts.position = r[3];
  uint64_t bytes = 0;
  if (absl::SimpleAtoi(AbslView(r[4]), &bytes)) facts.data_bytes = bytes;
  std::error_code ec;
  if (fs::exists(r[5], ec) && fs::exists(config_.data_dir, ec) &&
      !fs::equivalent(r[5], config_.data_dir, ec) && !ec) {
    return absl::FailedPreconditionError(absl::StrCat("engine.port: the PostgreSQL answering at ",
                                                      Where(), " has data directory ", r[5],
                                                      ", not engine.data_dir ", config_.data_dir));
  }
  hba_file_ = r[6];
  std::set<std::string> slots;
  for (absl::string_view s : absl::StrSplit(AbslView(r[8]), ',', absl::SkipEmpty())) {
    slots.insert(std::string(s));
  }
  absl::StatusOr<std::string> hba_text = ReadFile(hba_file_);
  if (!hba_text.ok() && !absl::IsNotFound(hba_text.status())) {
    return Context("reading hba_file", hba_text.status());
  }
  facts.served_slaves = ServedSlaves(hba_text.value_or(""), slots);

  if (!in_recovery) return facts;
  absl::StatusOr<Rows> wr = Query("reading the walreceiver state", R"sql(
      SELECT coalesce(r.status, ''), coalesce(r.sender_host, ''), coalesce(r.sender_port::text, ''),
             coalesce(pg_wal_lsn_diff(coalesce(r.flushed_lsn, pg_last_wal_receive_lsn()),
                                      pg_last_wal_replay_lsn())::bigint::text, ''),
             coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::text, '')
        FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true)sql");
  if (!wr.ok()) return wr.status();
  const std::vector<std::string>& w = wr->at(0);
  facts.streaming = w[0] == "streaming";
  facts.upstream = !w[1].empty() ? absl::StrCat(w[1], ":", w[2]) : pg::UpstreamFromConninfo(r[7]);
  int64_t lag = 0;
  facts.lag_bytes = absl::SimpleAtoi(AbslView(w[3]), &lag) ? std::max<int64_t>(lag, 0) : -1;
  if (!facts.streaming) {
    facts.lag_seconds = -1;
  } else if (facts.lag_bytes > 0) {
    double seconds = 0;
    facts.lag_seconds = absl::SimpleAtod(AbslView(w[4]), &seconds) ? std::max(seconds, 0.0) : -1;
  } else {
    facts.lag_seconds = 0;
  }
  // Why the walreceiver cannot connect, when it is a reason that waiting
  // does not cure (the server log of the default start command, or
  // engine.log_file).
  if (!facts.streaming) facts.out_of_sync = pg::OutOfSyncFromLog(ReadTail(log_file_, 64 * 1024));
  return facts;
}

// ------------------------------------------------------------------ Start / Stop

absl::Status PostgresqlEngine::Start() {
  const auto timeout = std::chrono::seconds(config_.timeout_seconds);
  Liveness live = Ping();
  if (live == Liveness::kUp) return absl::OkStatus();
  auto wait_up = [&](std::string_view why) -> absl::Status {
    if (PollFor([&] { return Ping() == Liveness::kUp; }, timeout, std::chrono::milliseconds(50))) {
      return absl::OkStatus();
    }
    return absl::UnavailableError(absl::StrCat("PostgreSQL at ", Where(), " ", AbslView(why),
                                               " and does not answer after ",
                                               config_.timeout_seconds, " s"));
  };
  if (live == Liveness::kStarting) return wait_up("is starting up");
  if (!PathExists(DataFile("PG_VERSION"))) {
    return absl::FailedPreconditionError(
        absl::StrCat("engine.data_dir ", config_.data_dir,
                     " holds no database (no PG_VERSION): it needs a bootstrap"));
  }
  if (std::optional<pid_t> pid = LivePostmasterPid(config_.data_dir)) {
    return wait_up(absl::StrCat("has a running postmaster (pid ", *pid, ")"));
  }
  // A unit's pg_ctlcluster makes its own log.
  if (config_.systemd_unit.empty()) TANDEM_RETURN_IF_ERROR(EnsureServerLog(log_file_, os_ids_));
  const uint64_t log_offset = FileSize(log_file_);
  auto log_tail = [&] { return OutputTail(ReadTail(log_file_, 4000, log_offset), 1200); };
  std::string tool;
  if (CustomServerControl(config_, ServerAction::kStart)) {
    tool = ServerControlName(config_, ServerAction::kStart);
    TANDEM_RETURN_IF_ERROR(
        Context("starting PostgreSQL",
                RunServerControl(config_, ServerAction::kStart, log_file_,
                                 std::chrono::seconds(config_.timeout_seconds + 30))));
  } else {
    tool = "pg_ctl start";
    RunOptions options = ToolOptions();
    options.output_file = log_file_;  // the server keeps it open: never a pipe
    std::string server_options = absl::StrCat("-p ", config_.port);
    for (const std::string& arg : config_.server_args) {
      absl::StrAppend(&server_options, " ", pg::ShellQuote(arg));
    }
    absl::StatusOr<RunResult> result =
        Run({Tool("pg_ctl"), "-D", config_.data_dir, "-w", "-t",
             absl::StrCat(config_.timeout_seconds), "-o", server_options, "start"},
            options);
    if (!result.ok()) return Context("starting PostgreSQL", result.status());
    if (result->exit_code != 0) {
      return absl::InternalError(absl::StrCat("while starting PostgreSQL: ", tool, " exited with ",
                                              result->exit_code, "; log ", log_file_,
                                              OutputReason(log_tail(), 1200)));
    }
  }
  if (!PollFor([&] { return Ping() == Liveness::kUp; }, timeout, std::chrono::milliseconds(20))) {
    return absl::UnavailableError(absl::StrCat("PostgreSQL at ", Where(), " does not answer ",
                                               config_.timeout_seconds, " s after ", tool, "; log ",
                                               log_file_, OutputReason(log_tail(), 1200)));
  }
  return absl::OkStatus();
}

absl::Status PostgresqlEngine::Stop() {
  Disconnect();
  auto stopped = [&] {
    return Ping() == Liveness::kDown && !LivePostmasterPid(config_.data_dir).has_value();
  };
  // A unit is stopped even when its server looks down: systemd may be
  // starting it.
  if (config_.systemd_unit.empty() && stopped()) return absl::OkStatus();
  std::string tool;
  if (CustomServerControl(config_, ServerAction::kStop)) {
    tool = ServerControlName(config_, ServerAction::kStop);
    absl::Status st = RunServerControl(config_, ServerAction::kStop, log_file_,
                                       std::chrono::seconds(config_.timeout_seconds + 30));
    if (!st.ok() && !stopped()) return Context("stopping PostgreSQL", st);
  } else {
    tool = "pg_ctl stop";
    absl::StatusOr<RunResult> result =
        Run({Tool("pg_ctl"), "-D", config_.data_dir, "-m", "fast", "-w", "-t",
             absl::StrCat(config_.timeout_seconds), "stop"},
            ToolOptions());
    if (!result.ok()) return Context("stopping PostgreSQL", result.status());
    if (result->exit_code != 0 && !stopped()) {
      return absl::InternalError(absl::StrCat("while stopping PostgreSQL: ", tool, " exited with ",
                                              result->exit_code, OutputReason(result->output)));
    }
  }
  if (!PollFor(stopped, std::chrono::seconds(config_.timeout_seconds))) {
    return absl::UnavailableError(absl::StrCat("PostgreSQL at ", Where(), " still runs ",
                                               config_.timeout_seconds, " s after ", tool));
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------------ Fence

absl::Status PostgresqlEngine::Fence() {
  switch (Ping()) {
    case Liveness::kStarting: return RequireUp();
    case Liveness::kDown: {
      if (std::optional<pid_t> pid = LivePostmasterPid(config_.data_dir)) {
        return absl::UnavailableError(absl::StrCat("a postmaster (pid ", *pid, ") runs on ",
                                                   config_.data_dir, " but nothing answers at ",
                                                   Where()));
      }
      if (!PathExists(DataFile("PG_VERSION")) || PathExists(DataFile("standby.signal"))) {
        return absl::OkStatus();  // nothing to fence, or it comes up as a slave
      }
      // A stopped server comes up fenced: the setting goes into its files.
      const std::string path = DataFile("postgresql.auto.conf");
      absl::StatusOr<std::string> text = ReadFile(path);
      if (!text.ok() && !absl::IsNotFound(text.status())) {
        return Context("fencing a stopped server", text.status());
      }
      const std::string current = text.value_or("");
      if (pg::ConfValue(current, "default_transaction_read_only") ==
          std::optional<std::string>("on")) {
        return absl::OkStatus();
      }
      return Context(
          "fencing a stopped server",
          WriteKeepingOwner(path, pg::UpdateConf(current, {{"default_transaction_read_only",
                                                            std::string("on")}})));
    }
    case Liveness::kUp: break;
  }
  absl::StatusOr<Rows> rows = Query("reading the fence state", R"sql(
      SELECT pg_is_in_recovery()::text,
             (SELECT reset_val FROM pg_settings WHERE name = 'default_transaction_read_only'))sql");
  if (!rows.ok()) return rows.status();
  if ((*rows)[0][0] == "true") return absl::OkStatus();  // a slave is read-only
  if ((*rows)[0][1] != "on") {
    TANDEM_RETURN_IF_ERROR(
        Exec("fencing the server", "ALTER SYSTEM SET default_transaction_read_only = on"));
    TANDEM_RETURN_IF_ERROR(ReloadAndWait({{"default_transaction_read_only", "on"}}));
  }
  // Sessions opened before the fence keep their read-write default: end them.
  TANDEM_RETURN_IF_ERROR(TerminateAndWait("ending the sessions opened before the fence", R"sql(
      SELECT pid FROM pg_stat_activity
       WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())sql"));
  // A checkpoint now, before the position is reported: the slave taking
  // over replays it, so it is the last checkpoint the two share and
  // pg_rewind finds the WAL it starts from on this server (a later stop
  // is quicker too).
  return Exec("checkpointing the fenced server", "CHECKPOINT");
}

// ------------------------------------------------------------------ ServeSlaves

absl::Status PostgresqlEngine::EnsureReplicationSettings(size_t slave_count) {
  // pg_basebackup -X stream of a slave being rebuilt takes two WAL senders
  // while the others stream: one more than the slaves.
  const int64_t need = static_cast<int64_t>(slave_count) + 1;
  auto read = [&]() -> absl::StatusOr<std::vector<std::string>> {
    absl::StatusOr<Rows> rows = Query("reading the replication settings", R"sql(
        SELECT current_setting('wal_level'), current_setting('max_wal_senders'),
               current_setting('max_replication_slots'))sql");
    if (!rows.ok()) return rows.status();
    std::vector<std::string> problems;
    const std::vector<std::string>& r = (*rows)[0];
    int64_t senders = 0;
    int64_t slots = 0;
    if (r[0] != "replica" && r[0] != "logical") {
      problems.push_back(absl::StrCat("wal_level is ", r[0], " (needs replica)"));
    }
    if (!absl::SimpleAtoi(AbslView(r[1]), &senders) || senders < need) {
      problems.push_back(absl::StrCat("max_wal_senders is ", r[1], " (needs ", need, ")"));
    }
    if (!absl::SimpleAtoi(AbslView(r[2]), &slots) || slots < need) {
      problems.push_back(absl::StrCat("max_replication_slots is ", r[2], " (needs ", need, ")"));
    }
    return problems;
  };
  absl::StatusOr<std::vector<std::string>> problems = read();
  if (!problems.ok()) return problems.status();
  if (problems->empty()) return absl::OkStatus();
  const std::string list = absl::StrJoin(*problems, ", ");
  if (!config_.allow_restart) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot serve ", slave_count, " slave(s): ", list,
        "; changing this needs a restart of PostgreSQL, which engine.allow_restart permits"));
  }
  const std::string target = absl::StrCat(std::max<int64_t>(need, 10));
  TANDEM_RETURN_IF_ERROR(ExecEach(
      "changing the replication settings",
      {"ALTER SYSTEM SET wal_level = replica", "ALTER SYSTEM SET max_wal_senders = " + target,
       "ALTER SYSTEM SET max_replication_slots = " + target}));
  TANDEM_RETURN_IF_ERROR(Context("restarting PostgreSQL for the replication settings", Stop()));
  TANDEM_RETURN_IF_ERROR(Context("restarting PostgreSQL for the replication settings", Start()));
  problems = read();
  if (!problems.ok()) return problems.status();
  if (!problems->empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot serve ", slave_count, " slave(s): after a restart ", absl::StrJoin(*problems, ", "),
        ": set on the server's command line (engine.server_args, engine.start_command) or in a "
        "file that overrides postgresql.auto.conf"));
  }
  return absl::OkStatus();
}

absl::Status PostgresqlEngine::EnsureReplicationRole(const std::optional<std::string>& password) {
  const std::string& user = config_.replication_user;
  absl::StatusOr<Rows> rows =
      Query("reading the replication role",
            "SELECT rolcanlogin::text, rolreplication::text, coalesce(rolpassword, '') "
            "FROM pg_authid WHERE rolname = $1",
            {user});
  if (!rows.ok()) return rows.status();
  const bool exists = !rows->empty();
  const bool privileges_ok = exists && (*rows)[0][0] == "true" && (*rows)[0][1] == "true";
  const bool password_ok =
      !password.has_value() || (exists && pg::ScramVerifierMatches((*rows)[0][2], *password));
  if (exists && privileges_ok && password_ok) return absl::OkStatus();

  std::string password_clause;
  if (!password_ok) {
    TANDEM_RETURN_IF_ERROR(Connect());
    // Only a SCRAM verifier reaches the server (and its logs), never the password.
    char* verifier =
        PQencryptPasswordConn(conn_.get(), password->c_str(), user.c_str(), "scram-sha-256");
    if (verifier == nullptr) {
      return absl::InternalError(absl::StrCat("while encrypting the replication password: ",
                                              Trimmed(PQerrorMessage(conn_.get()))));
    }
    char* literal = PQescapeLiteral(conn_.get(), verifier, std::strlen(verifier));
    PQfreemem(verifier);
    if (literal == nullptr) return absl::InternalError("PQescapeLiteral failed");
    password_clause = absl::StrCat(" PASSWORD ", literal);
    PQfreemem(literal);
  }
  const std::string sql = absl::StrCat(exists ? "ALTER ROLE " : "CREATE ROLE ", QuoteIdent(user),
                                       " WITH LOGIN REPLICATION", password_clause);
  TANDEM_RETURN_IF_ERROR(
      Exec(exists ? "updating the replication role" : "creating the replication role", sql));
  // What pg_rewind reads from the master when a slave rejoins after a
  // switchover, granted as PostgreSQL's documentation lists it for a
  // non-superuser (no superuser for the replication account).
  std::vector<std::string> grants;
  for (const char* function :
       {"pg_ls_dir(text, boolean, boolean)", "pg_stat_file(text, boolean)",
        "pg_read_binary_file(text)", "pg_read_binary_file(text, bigint, bigint, boolean)"}) {
    grants.push_back(absl::StrCat("GRANT EXECUTE ON FUNCTION pg_catalog.", function, " TO ",
                                  QuoteIdent(user)));
  }
  TANDEM_RETURN_IF_ERROR(
      ExecEach("granting pg_rewind's functions to the replication role", grants));
  // And the checkpoint a rejoin asks of a newly promoted master (the role
  // exists from PostgreSQL 15 on).
  return Exec("granting pg_checkpoint to the replication role",
              absl::StrCat("DO $$BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
                           "'pg_checkpoint') AND NOT pg_has_role(",
                           "'", user, "'",  // a plain identifier (checked at start)
                           ", 'pg_checkpoint', 'MEMBER') THEN GRANT pg_checkpoint TO ",
                           QuoteIdent(user), "; END IF; END$$"));
}

absl::Status PostgresqlEngine::EnsureHba(const std::vector<Peer>& slaves,
                                         const std::string& hba_file,
                                         const std::optional<std::string>& password) {
  // A slave whose link is TLS (engine.tls_mode) may come only over TLS.
  Peer self;
  self.stack = config_.stack;
  std::vector<bool> tls;
  for (const Peer& slave : slaves) tls.push_back(ReplicationTls(config_, slave, self));
  (void)password;
  absl::StatusOr<std::string> block = pg::HbaBlock(slaves, tls, config_.replication_user);
  if (!block.ok()) return block.status();
  absl::StatusOr<std::string> current = ReadFile(hba_file);
  if (!current.ok()) return Context("reading hba_file", current.status());
  const std::string wanted = pg::ReplaceHbaBlock(*current, *block);
  if (wanted == *current) return absl::OkStatus();
  TANDEM_RETURN_IF_ERROR(Context("writing " + hba_file, WriteKeepingOwner(hba_file, wanted)));
  absl::StatusOr<Rows> errors =
      Query("checking pg_hba.conf",
            "SELECT line_number::text, error FROM pg_hba_file_rules WHERE error IS NOT NULL");
  if (!errors.ok()) return errors.status();
  if (!errors->empty()) {
    return absl::InternalError(absl::StrCat(hba_file, " line ", (*errors)[0][0], ": ",
                                            (*errors)[0][1], " (not reloaded)"));
  }
  return Exec("reloading pg_hba.conf", "SELECT pg_reload_conf()");
}

absl::Status PostgresqlEngine::EnsureSlots(const std::vector<Peer>& slaves) {
  std::set<std::string> wanted;
  for (const Peer& slave : slaves) wanted.insert(pg::SlotName(slave.id));
  absl::StatusOr<Rows> rows = Query("listing the replication slots", R"sql(
      SELECT slot_name::text FROM pg_replication_slots
       WHERE slot_type = 'physical' AND slot_name LIKE 'tandem\_%')sql");
  if (!rows.ok()) return rows.status();
  std::set<std::string> existing;
  for (const auto& row : *rows) existing.insert(row[0]);
  for (const std::string& name : wanted) {
    if (existing.count(name) != 0) continue;
    absl::Status st = Exec("creating replication slot " + name,
                           "SELECT pg_create_physical_replication_slot($1, true)", {name});
    if (!st.ok() && !absl::StrContains(st.message(), "42710")) return st;  // 42710: exists
  }
  for (const std::string& name : existing) {
    if (wanted.count(name) != 0) continue;
    // The slave's walsender holds the slot: end it (its pg_hba line is
    // already gone, so it cannot come back), then drop the slot.
    std::string what = "dropping replication slot " + name;
    absl::Status last;
    bool dropped = PollFor(
        [&] {
          last = TerminateAndWait(
              what, absl::StrCat("SELECT active_pid FROM pg_replication_slots WHERE slot_name = '",
                                 name, "' AND active_pid IS NOT NULL"));
          if (!last.ok()) return false;
          last = Exec(what, "SELECT pg_drop_replication_slot($1)", {name});
          if (last.ok() || absl::StrContains(last.message(), "42704")) {  // 42704: gone
            last = absl::OkStatus();
            return true;
          }
          return false;
        },
        kSettleTimeout, std::chrono::milliseconds(100));
    if (!dropped) {
      return absl::UnavailableError(
          absl::StrCat("while ", what, ": it stays in use: ", last.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status PostgresqlEngine::ServeSlaves(const std::vector<Peer>& slaves) {
  std::map<std::string, std::string> slot_owner;
  for (const Peer& slave : slaves) {
    if (slave.id.empty()) return absl::InvalidArgumentError("a slave has an empty id");
    auto [it, inserted] = slot_owner.emplace(pg::SlotName(slave.id), slave.id);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat("slaves ", it->second, " and ", slave.id,
                                                     " map to the same replication slot ",
                                                     it->first));
    }
    absl::StatusOr<std::string> addr = pg::HbaAddress(slave.host);
    if (!addr.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("slave ", slave.id, ": ", addr.status().message()));
    }
  }
  TANDEM_RETURN_IF_ERROR(RequireUp());
  absl::StatusOr<std::optional<std::string>> password =
      slaves.empty() ? std::optional<std::string>() : ReplicationPassword();
  if (!password.ok()) return password.status();
  absl::StatusOr<Rows> state = Query(
      "reading the server state", "SELECT pg_is_in_recovery()::text, current_setting('hba_file')");
  if (!state.ok()) return state.status();
  const bool in_recovery = (*state)[0][0] == "true";
  const std::string hba_file = (*state)[0][1];
  if (!slaves.empty()) {
    if (in_recovery) {
      return absl::FailedPreconditionError(
          "the server is a slave (in recovery): it serves slaves only once it is writable");
    }
    TANDEM_RETURN_IF_ERROR(EnsureReplicationSettings(slaves.size()));
    TANDEM_RETURN_IF_ERROR(EnsureReplicationRole(*password));
  }
  TANDEM_RETURN_IF_ERROR(EnsureHba(slaves, hba_file, *password));
  return EnsureSlots(slaves);
}

// ------------------------------------------------------------------ Bootstrap

absl::StatusOr<std::vector<std::vector<std::string>>> PostgresqlEngine::UpstreamQuery(
    const Peer& self, const Peer& upstream, const std::optional<std::string>& password,
    bool replication, const std::string& sql) const {
  std::string conninfo = absl::StrCat(
      pg::PrimaryConninfo(upstream, config_.replication_user, Passfile(password),
                          absl::StrCat(self.id, "-check"), Tls(self, upstream)),
      replication ? " dbname=replication replication=true" : " dbname=postgres",
      " connect_timeout=", kConnectTimeoutSeconds);
  RunOptions options = ToolOptions();
  options.timeout = std::chrono::seconds(60);
  options.env = {{"LC_ALL", "C"}};
  absl::StatusOr<RunResult> result = Run({Tool("psql"), "-X", "-A", "-t", "-q", "-v",
                                          "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql},
                                         options);
  if (!result.ok()) return result.status();
  if (result->exit_code != 0) {
    return absl::UnavailableError(std::string(Trimmed(OutputTail(result->output, 600))));
  }
  std::vector<std::vector<std::string>> rows;
  for (absl::string_view line : absl::StrSplit(result->output, '\n', absl::SkipEmpty())) {
    rows.push_back(absl::StrSplit(line, '|'));
  }
  return rows;
}

absl::StatusOr<std::string> PostgresqlEngine::CheckUpstreamServes(
    const Peer& self, const Peer& upstream, const std::optional<std::string>& password,
    const std::string& slot) const {
  const std::string who =
      absl::StrCat("master ", upstream.id, " at ", upstream.host, ":", upstream.port);
  absl::StatusOr<std::vector<std::vector<std::string>>> ident =
      UpstreamQuery(self, upstream, password, /*replication=*/true, "IDENTIFY_SYSTEM");
  if (!ident.ok() || ident->empty() || ident->front().empty() || ident->front()[0].empty()) {
    return absl::UnavailableError(absl::StrCat(
        who, " does not accept replication from this node yet: ",
        ident.ok() ? "IDENTIFY_SYSTEM returned nothing" : ident.status().message()));
  }
  const std::string system_id = ident->front()[0];
  absl::StatusOr<std::vector<std::vector<std::string>>> slot_row = UpstreamQuery(
      self, upstream, password, /*replication=*/true, absl::StrCat("READ_REPLICATION_SLOT ", slot));
  if (slot_row.ok()) {
    // slot_type|restart_lsn|restart_tli, all empty for a slot that does not exist.
    if (slot_row->empty() || slot_row->front().empty() || slot_row->front()[0].empty()) {
      return absl::UnavailableError(
          absl::StrCat(who, " does not serve this node yet: it has no replication slot ", slot));
    }
  } else if (!absl::StrContains(slot_row.status().message(), "syntax error")) {
    // Before PostgreSQL 15 the command does not exist: pg_basebackup -S then
    // reports a missing slot itself.
    return absl::UnavailableError(absl::StrCat(who, ": ", slot_row.status().message()));
  }
  return system_id;
}

absl::StatusOr<std::string> PostgresqlEngine::UpstreamServesUs(
    const Peer& self, const Peer& upstream, std::optional<std::string>* password) {
  absl::StatusOr<std::optional<std::string>> read = ReplicationPassword();
  if (!read.ok()) return read.status();
  *password = *std::move(read);
  TANDEM_RETURN_IF_ERROR(
      Context("writing the replication password file", EnsurePgpass(upstream, *password)));
  return CheckUpstreamServes(self, upstream, *password, pg::SlotName(self.id));
}

absl::Status PostgresqlEngine::CopyFromUpstream(const Peer& self, const Peer& upstream,
                                                const std::optional<std::string>& password,
                                                const std::string& slot,
                                                const ProgressFn& progress) {
  const std::string who =
      absl::StrCat("master ", upstream.id, " at ", upstream.host, ":", upstream.port);
  RunOptions options = ToolOptions();
  options.output_file = basebackup_log_;
  options.timeout = kCopyTimeout;
  options.env = {{"LC_ALL", "C"}, {"PGAPPNAME", self.id}, {"PGCONNECT_TIMEOUT", "10"}};
  if (password.has_value()) options.env.emplace_back("PGPASSFILE", pgpass_file_);
  for (const auto& [key, value] : pg::TlsParams(Tls(self, upstream))) {
    options.env.emplace_back(absl::StrCat("PG", absl::AsciiStrToUpper(key)), value);
  }
  const std::vector<std::string> argv = {Tool("pg_basebackup"),
                                         "-D",
                                         new_dir_,
                                         "-h",
                                         upstream.host,
                                         "-p",
                                         absl::StrCat(upstream.port),
                                         "-U",
                                         config_.replication_user,
                                         "-w",
                                         "-X",
                                         "stream",
                                         "-S",
                                         slot,
                                         "-c",
                                         "fast",
                                         "-P",
                                         "--no-sync",
                                         "-l",
                                         absl::StrCat("tandem bootstrap of ", self.id)};

  const auto deadline = Clock::now() + kSettleTimeout;
  for (int attempt = 1;; ++attempt) {
    // Our own partial copy from an earlier attempt (or one killed midway).
    std::error_code ec;
    fs::remove_all(new_dir_, ec);
    if (ec) return absl::InternalError(absl::StrCat("removing ", new_dir_, ": ", ec.message()));
    if (::mkdir(new_dir_.c_str(), 0700) != 0) {
      return absl::InternalError(absl::StrCat("mkdir ", new_dir_, ": ", std::strerror(errno)));
    }
    if (os_ids_.has_value() && ::chown(new_dir_.c_str(), os_ids_->uid, os_ids_->gid) != 0) {
      return absl::InternalError(absl::StrCat("chown ", new_dir_, ": ", std::strerror(errno)));
    }
    TANDEM_RETURN_IF_ERROR(WriteFileAtomic(basebackup_log_, "", 0640));

    // pg_basebackup runs on a helper thread; this thread reports its
    // progress (from its -P output), so `progress` runs on the caller's thread.
    absl::StatusOr<RunResult> result = absl::UnknownError("not run");
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::thread copier([&] {
      absl::StatusOr<RunResult> r = Run(argv, options);
      std::lock_guard<std::mutex> lock(mu);
      result = std::move(r);
      done = true;
      cv.notify_all();
    });
    std::pair<uint64_t, uint64_t> reported{0, 0};
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu);
        if (cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return done; })) break;
      }
      std::optional<std::pair<uint64_t, uint64_t>> p =
          pg::LastBasebackupProgress(ReadTail(basebackup_log_, 4096));
      if (p.has_value() && *p != reported && progress) {
        reported = *p;
        progress(p->first, p->second);
      }
    }
    copier.join();
    if (!result.ok()) {
      fs::remove_all(new_dir_, ec);
      return absl::UnavailableError(
          absl::StrCat("while copying from ", who, ": ", result.status().message()));
    }
    if (result->exit_code == 0) {
      // The copy reaches the disk before it replaces anything. One syncfs
      // instead of pg_basebackup's fsync of every file: measured 3-10x
      // faster on a busy disk, same guarantee (what PostgreSQL 17 offers
      // as --sync-method=syncfs).
      TANDEM_RETURN_IF_ERROR(SyncFilesystem(new_dir_));
      std::optional<std::pair<uint64_t, uint64_t>> p =
          pg::LastBasebackupProgress(ReadTail(basebackup_log_, 4096));
      if (progress) {
        uint64_t total = p.has_value() ? std::max(p->first, p->second) : DirectorySize(new_dir_);
        progress(total, total);
      }
      return absl::OkStatus();
    }
    const std::string output = ReadTail(basebackup_log_, 4000);
    fs::remove_all(new_dir_, ec);
    // The walsender of a slave stopped a moment ago may still hold the slot.
    if (absl::StrContains(output, "is active for PID") && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt));
      continue;
    }
    return absl::UnavailableError(absl::StrCat("while copying from ", who,
                                               ": pg_basebackup exited with ", result->exit_code,
                                               OutputReason(output, 800)));
  }
}

absl::Status PostgresqlEngine::ConfigureStandby(const std::string& data_dir,
                                                const std::string& conninfo,
                                                const std::string& slot) {
  const std::string signal = data_dir + "/standby.signal";
  if (!PathExists(signal)) TANDEM_RETURN_IF_ERROR(WriteKeepingOwner(signal, ""));
  const std::string auto_conf = data_dir + "/postgresql.auto.conf";
  absl::StatusOr<std::string> text = ReadFile(auto_conf);
  if (!text.ok() && !absl::IsNotFound(text.status())) return text.status();
  const std::string current = text.value_or("");
  const std::string wanted =
      pg::UpdateConf(current, {{"default_transaction_read_only", std::nullopt},
                               {"primary_conninfo", conninfo},
                               {"primary_slot_name", slot}});
  if (wanted == current) return absl::OkStatus();
  return WriteKeepingOwner(auto_conf, wanted);
}

absl::StatusOr<std::string> PostgresqlEngine::Bootstrap(const Peer& self, const Peer& upstream,
                                                        const ProgressFn& progress) {
  if (upstream.host.empty() || upstream.port == 0 || upstream.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("upstream ", upstream.id,
                                                   " has no usable host:port (\"", upstream.host,
                                                   ":", upstream.port, "\")"));
  }
  if (self.id.empty()) return absl::InvalidArgumentError("this node has an empty id");
  const std::string slot = pg::SlotName(self.id);

  // 1. Nothing local changes until the master is known to serve us (the
  // password file the check logs in with aside).
  std::optional<std::string> password;
  absl::StatusOr<std::string> upstream_id = UpstreamServesUs(self, upstream, &password);
  if (!upstream_id.ok()) return upstream_id.status();

  // 2. A running slave streams through the very slot the copy needs.
  switch (Ping()) {
    case Liveness::kStarting: return RequireUp();
    case Liveness::kUp: {
      absl::StatusOr<std::string> rec =
          Value("reading the recovery state", "SELECT pg_is_in_recovery()::text");
      if (!rec.ok()) return rec.status();
      if (*rec == "true") TANDEM_RETURN_IF_ERROR(Context("stopping the slave before its copy", Stop()));
      break;
    }
    case Liveness::kDown: break;
  }

  // 3. The copy, beside the data directory, configured as a standby there.
  TANDEM_RETURN_IF_ERROR(CopyFromUpstream(self, upstream, password, slot, progress));
  if (!PathExists(new_dir_ + "/PG_VERSION")) {
    return absl::InternalError(absl::StrCat("pg_basebackup left no PG_VERSION in ", new_dir_));
  }
  const std::string conninfo =
      pg::PrimaryConninfo(upstream, config_.replication_user, Passfile(password), self.id,
                          Tls(self, upstream));
  TANDEM_RETURN_IF_ERROR(
      Context("configuring the copy as a standby", ConfigureStandby(new_dir_, conninfo, slot)));
  if (::chmod(new_dir_.c_str(), 0700) != 0) {
    return absl::InternalError(absl::StrCat("chmod 0700 ", new_dir_, ": ", std::strerror(errno)));
  }
  if (os_ids_.has_value()) TANDEM_RETURN_IF_ERROR(ChownTree(new_dir_, *os_ids_));
  absl::StatusOr<std::string> data_id = ControldataSystemId(new_dir_);
  if (!data_id.ok()) return data_id.status();
  if (*data_id != *upstream_id) {
    return absl::InternalError(absl::StrCat("the copy has system identifier ", *data_id,
                                            " but master ", upstream.id, " reported ",
                                            *upstream_id));
  }

  // 4. Swap: the old data directory is moved aside, never deleted.
  TANDEM_RETURN_IF_ERROR(Context("stopping PostgreSQL before the swap", Stop()));
  absl::StatusOr<std::string> aside = SwapInDirectory(new_dir_, config_.data_dir, ".tandem-old-");
  if (!aside.ok()) return aside.status();
  return *data_id;
}

// ------------------------------------------------------------------ Follow

absl::Status PostgresqlEngine::Follow(const Peer& self, const Peer& upstream) {
  if (upstream.host.empty() || upstream.port == 0 || upstream.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("upstream ", upstream.id, " has no usable host:port"));
  }
  absl::StatusOr<std::optional<std::string>> password = ReplicationPassword();
  if (!password.ok()) return password.status();
  TANDEM_RETURN_IF_ERROR(
      Context("writing the replication password file", EnsurePgpass(upstream, *password)));
  const std::string conninfo =
      pg::PrimaryConninfo(upstream, config_.replication_user, Passfile(*password), self.id,
                          Tls(self, upstream));
  const std::string slot = pg::SlotName(self.id);

  switch (Ping()) {
    case Liveness::kStarting: return RequireUp();
    case Liveness::kDown: {
      if (std::optional<pid_t> pid = LivePostmasterPid(config_.data_dir)) {
        return absl::UnavailableError(absl::StrCat("a postmaster (pid ", *pid, ") runs on ",
                                                   config_.data_dir, " but nothing answers at ",
                                                   Where()));
      }
      if (!PathExists(DataFile("PG_VERSION"))) {
        return absl::FailedPreconditionError(absl::StrCat(
            "engine.data_dir ", config_.data_dir, " holds no database: it needs a bootstrap"));
      }
      // Without standby.signal the data may have diverged from the master
      // (a writable server, or a copy whose bootstrap did not finish).
      if (!PathExists(DataFile("standby.signal"))) {
        return absl::FailedPreconditionError(
            absl::StrCat("the data in ", config_.data_dir,
                         " is not a slave copy (no standby.signal): it becomes a slave of ",
                         upstream.id, " only through a bootstrap"));
      }
      return Context("configuring replication from " + upstream.id,
                     ConfigureStandby(config_.data_dir, conninfo, slot));
    }
    case Liveness::kUp: break;
  }
  absl::StatusOr<Rows> rows = Query("reading the replication settings", R"sql(
      SELECT pg_is_in_recovery()::text, current_setting('primary_conninfo'),
             current_setting('primary_slot_name'))sql");
  if (!rows.ok()) return rows.status();
  const std::vector<std::string>& r = (*rows)[0];
  if (r[0] != "true") {
    return absl::FailedPreconditionError(
        absl::StrCat("the server is writable (not in recovery): it becomes a slave of ",
                     upstream.id, " only through a bootstrap"));
  }
  if (r[1] == conninfo && r[2] == slot) return absl::OkStatus();
  TANDEM_RETURN_IF_ERROR(Connect());
  char* lit_conninfo = PQescapeLiteral(conn_.get(), conninfo.c_str(), conninfo.size());
  if (lit_conninfo == nullptr) return absl::InternalError("PQescapeLiteral failed");
  const std::vector<std::string> statements = {
      absl::StrCat("ALTER SYSTEM SET primary_conninfo = ", lit_conninfo),
      absl::StrCat("ALTER SYSTEM SET primary_slot_name = '", slot, "'")};
  PQfreemem(lit_conninfo);
  TANDEM_RETURN_IF_ERROR(ExecEach("configuring replication from " + upstream.id, statements));
  // PostgreSQL 13+ restarts the walreceiver when these change on reload.
  return ReloadAndWait({{"primary_conninfo", conninfo}, {"primary_slot_name", slot}});
}

// ------------------------------------------------------------------ MakeWritable

absl::Status PostgresqlEngine::MakeWritable() {
  TANDEM_RETURN_IF_ERROR(RequireUp());
  absl::StatusOr<std::string> rec =
      Value("reading the recovery state", "SELECT pg_is_in_recovery()::text");
  if (!rec.ok()) return rec.status();
  if (*rec == "true") {
    absl::StatusOr<std::string> promoted =
        Value("promoting the server",
              absl::StrCat("SELECT pg_promote(true, ", config_.timeout_seconds, ")::text"));
    if (!promoted.ok()) return promoted.status();
    if (*promoted != "true") {
      return absl::UnavailableError(
          absl::StrCat("promotion did not complete within ", config_.timeout_seconds, " s"));
    }
  }
  // Leftovers of the slave role and of a fence, also after a crash midway.
  absl::StatusOr<Rows> rows = Query("reading the writable state", R"sql(
      SELECT name, reset_val FROM pg_settings
       WHERE name IN ('primary_conninfo', 'primary_slot_name', 'default_transaction_read_only'))sql");
  if (!rows.ok()) return rows.status();
  std::vector<std::string> resets;
  std::vector<std::pair<std::string, std::string>> wanted;
  for (const auto& row : *rows) {
    if (row[0] == "default_transaction_read_only" ? row[1] == "on" : !row[1].empty()) {
      resets.push_back(absl::StrCat("ALTER SYSTEM RESET ", row[0]));
      wanted.emplace_back(row[0], row[0] == "default_transaction_read_only" ? "off" : "");
    }
  }
  if (resets.empty()) return absl::OkStatus();
  TANDEM_RETURN_IF_ERROR(ExecEach("making the server writable", resets));
  return ReloadAndWait(wanted);
}

// ------------------------------------------------------------------ Rejoin

absl::Status PostgresqlEngine::CheckpointUpstream(const Peer& self, const Peer& upstream,
                                                  const std::optional<std::string>& password) const {
  absl::StatusOr<std::vector<std::vector<std::string>>> done =
      UpstreamQuery(self, upstream, password, /*replication=*/false, "CHECKPOINT");
  if (done.ok()) return absl::OkStatus();
  const std::string why(done.status().message());
  if (absl::StrContains(why, "must be superuser") || absl::StrContains(why, "permission denied")) {
    return absl::PermissionDeniedError(absl::StrCat("checkpointing ", upstream.id, ": ", why));
  }
  return absl::UnavailableError(absl::StrCat("checkpointing ", upstream.id, ": ", why));
}

absl::StatusOr<std::string> PostgresqlEngine::RunRewind(const Peer& self, const Peer& upstream,
                                                        const std::optional<std::string>& password,
                                                        bool dry_run) {
  RunOptions options = ToolOptions();
  options.timeout = kCopyTimeout;
  options.env = {{"LC_ALL", "C"}, {"PGCONNECT_TIMEOUT", "10"}};
  const std::string source =
      absl::StrCat(pg::PrimaryConninfo(upstream, config_.replication_user, Passfile(*password),
                                       self.id, Tls(self, upstream)),
                   " dbname=postgres");
  std::vector<std::string> argv = {Tool("pg_rewind"), "-D", config_.data_dir,
                                   absl::StrCat("--source-server=", source)};
  if (dry_run) argv.push_back("--dry-run");
  absl::StatusOr<RunResult> result = Run(argv, options);
  if (!result.ok()) return result.status();
  if (result->exit_code != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("pg_rewind", dry_run ? " --dry-run" : "", " from ", upstream.id,
                     " exited with ", result->exit_code, OutputReason(result->output, 600)));
  }
  return result->output;
}

absl::Status PostgresqlEngine::CheckNothingCommittedAfter(const pg::Divergence& fork,
                                                          const Peer& upstream) {
  // The records this server wrote after the fork, on its own timeline.
  RunOptions options = ToolOptions();
  options.timeout = std::chrono::seconds(120);
  options.env = {{"LC_ALL", "C"}};
  absl::StatusOr<RunResult> control = Run({Tool("pg_controldata"), config_.data_dir}, options);
  if (!control.ok()) return control.status();
  const std::string timeline =
      pg::ControldataField(control->output, "Latest checkpoint's TimeLineID").value_or("");
  if (timeline.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("pg_controldata of ", config_.data_dir, " shows no timeline"));
  }
  // pg_waldump ends with an error at the end of the WAL; what it printed
  // until then is the answer.
  absl::StatusOr<RunResult> dump = Run({Tool("pg_waldump"), "-p", DataFile("pg_wal"), "-t",
                                        timeline, "-s", fork.lsn},
                                       options);
  if (!dump.ok()) return dump.status();
  if (dump->output.find("rmgr: ") == std::string::npos) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read this server's WAL after the fork at ", fork.lsn, ": ",
                     OutputTail(dump->output, 300)));
  }
  const int commits = pg::CountCommits(dump->output);
  if (commits > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        commits, " transaction(s) committed here after the fork at ", fork.lsn, " are not on ",
        upstream.id, "; a rewind would discard them (a full copy keeps them aside)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> PostgresqlEngine::Rejoin(const Peer& self, const Peer& upstream) {
  if (upstream.host.empty() || upstream.port == 0 || upstream.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("upstream ", upstream.id, " has no usable host:port"));
  }
  for (const char* tool : {"pg_rewind", "pg_waldump"}) {
    if (!IsExecutable(Tool(tool))) {
      return absl::UnimplementedError(absl::StrCat(bin_dir_, " has no ", tool));
    }
  }
  if (!PathExists(DataFile("PG_VERSION"))) {
    return absl::FailedPreconditionError("no database to rejoin with");
  }
  const std::string slot = pg::SlotName(self.id);

  // 1. The master serves this node and holds the same database system.
  std::optional<std::string> password;
  absl::StatusOr<std::string> upstream_id = UpstreamServesUs(self, upstream, &password);
  if (!upstream_id.ok()) return upstream_id.status();
  absl::StatusOr<std::string> local_id = ControldataSystemId(config_.data_dir);
  if (!local_id.ok()) return local_id.status();
  if (*local_id != *upstream_id) {
    return absl::FailedPreconditionError(absl::StrCat("this data is database system ", *local_id,
                                                      ", ", upstream.id, " is ", *upstream_id));
  }

  // 2. Never a writable server (the caller fenced it; look again), and
  // pg_rewind needs it stopped.
  switch (Ping()) {
    case Liveness::kStarting: return RequireUp();
    case Liveness::kUp: {
      absl::StatusOr<Rows> rows = Query("reading the server state", R"sql(
          SELECT pg_is_in_recovery()::text,
                 (SELECT reset_val FROM pg_settings WHERE name = 'default_transaction_read_only'))sql");
      if (!rows.ok()) return rows.status();
      if ((*rows)[0][0] != "true" && (*rows)[0][1] != "on") {
        return absl::FailedPreconditionError("refusing to rejoin a writable server");
      }
      TANDEM_RETURN_IF_ERROR(Context("stopping PostgreSQL before the rewind", Stop()));
      break;
    }
    case Liveness::kDown: break;
  }

  // 3. Rewind only what the master lacks, and only when none of it was
  // committed here. pg_rewind reads the master's timeline from its control
  // file: a checkpoint there first (without it, a master promoted a moment
  // ago still shows the old timeline and pg_rewind wrongly finds nothing
  // to rewind). Without pg_checkpoint (PostgreSQL < 15) the master's own
  // end-of-recovery checkpoint is what the rejoin relies on.
  if (absl::Status st = CheckpointUpstream(self, upstream, password); !st.ok()) {
    if (absl::IsUnavailable(st)) return st;
    LogWarning(absl::StrCat("rejoin: ", st.message()));
  }
  absl::StatusOr<std::string> dry = RunRewind(self, upstream, password, /*dry_run=*/true);
  if (!dry.ok()) return dry.status();
  if (!pg::RewindNotRequired(*dry)) {
    std::optional<pg::Divergence> fork = pg::RewindDivergence(*dry);
    if (!fork.has_value()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "pg_rewind --dry-run did not say where the servers diverged: ", OutputTail(*dry, 300)));
    }
    TANDEM_RETURN_IF_ERROR(CheckNothingCommittedAfter(*fork, upstream));
    absl::StatusOr<std::string> rewound = RunRewind(self, upstream, password, /*dry_run=*/false);
    if (!rewound.ok()) return rewound.status();
  }

  // 4. A standby of the new master, streaming.
  const std::string conninfo = pg::PrimaryConninfo(upstream, config_.replication_user,
                                                   Passfile(password), self.id, Tls(self, upstream));
  TANDEM_RETURN_IF_ERROR(Context("configuring the standby",
                                 ConfigureStandby(config_.data_dir, conninfo, slot)));
  TANDEM_RETURN_IF_ERROR(Start());
  absl::StatusOr<EngineFacts> facts = absl::UnavailableError("not observed");
  const bool streaming = PollFor(
      [&] {
        facts = Observe();
        return facts.ok() && (facts->streaming || !facts->out_of_sync.empty());
      },
      std::chrono::seconds(config_.timeout_seconds), std::chrono::milliseconds(200));
  if (streaming && facts->streaming) return *upstream_id;
  if (facts.ok() && !facts->out_of_sync.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("after the rejoin: out of sync: ", facts->out_of_sync));
  }
  return absl::UnavailableError(absl::StrCat("not streaming from ", upstream.id, " ",
                                             config_.timeout_seconds, " s after the rejoin"));
}

}  // namespace

// ------------------------------------------------------------------ factory

absl::StatusOr<std::unique_ptr<Engine>> MakePostgresqlEngine(const EngineConfig& config_in) {
  EngineConfig config = config_in;
  auto invalid = [](std::string_view field, const std::string& why) {
    return InvalidEngineField(field, why);
  };
  absl::StatusOr<std::optional<UserIds>> checked =
      ValidateEngineConfig(&config, EngineType::kPostgresql);
  if (!checked.ok()) return checked.status();
  const std::optional<UserIds> os_ids = *checked;
  if (!PlainIdentifier(config.replication_user)) {
    return invalid("replication_user",
                   absl::StrCat("must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 "
                                "characters), got \"",
                                config.replication_user, "\""));
  }
  // The server tools.
  std::string bin_dir = config.bin_dir;
  if (bin_dir.empty()) {
    int best = 0;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
      int v = 0;
      if (absl::SimpleAtoi(entry.path().filename().string(), &v) && v > best &&
          IsExecutable(entry.path().string() + "/bin/pg_ctl")) {
        best = v;
        bin_dir = entry.path().string() + "/bin";
      }
    }
    if (bin_dir.empty()) {
      const char* path_env = std::getenv("PATH");
      for (absl::string_view dir : absl::StrSplit(path_env == nullptr ? "" : path_env, ':')) {
        std::string candidate = absl::StrCat(dir, "/pg_ctl");
        if (!dir.empty() && IsExecutable(candidate)) {
          bin_dir = fs::canonical(candidate, ec).parent_path().string();
          if (ec) bin_dir = std::string(dir);
          break;
        }
      }
    }
    if (bin_dir.empty()) {
      return invalid("bin_dir",
                     "empty, and no PostgreSQL tools under /usr/lib/postgresql/<N>/bin "
                     "nor pg_ctl in PATH");
    }
  }
  for (const char* tool : {"pg_ctl", "pg_basebackup", "pg_controldata", "psql"}) {
    if (!IsExecutable(bin_dir + "/" + tool)) {
      return invalid("bin_dir", absl::StrCat(bin_dir, " has no executable ", tool));
    }
  }
  return std::unique_ptr<Engine>(new PostgresqlEngine(std::move(config), bin_dir, os_ids));
}

}  // namespace tandem

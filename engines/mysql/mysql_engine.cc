#include "engines/mysql/mysql_engine.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/status_util.h"
#include "common/subprocess.h"
#include "engines/mysql/mysql_client.h"
#include "engines/mysql/mysql_text.h"
#include "engines/mysql/stream_process.h"
#include "engines/server_control.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using mysql::Dialect;

constexpr std::chrono::seconds kConnectTimeout(5);
// Statements that may wait on locks or on the server (SHUTDOWN, FLUSH...).
constexpr std::chrono::seconds kStatementTimeout(60);
constexpr size_t kChunkBytes = 1 << 20;
// A copy of a large data set takes as long as it takes.
constexpr std::chrono::hours kCopyTimeout(24 * 7);
constexpr char kDefaultSeedMethod[] = "backup";
// The socket of Debian's and Ubuntu's mariadb.service (and libmariadb's
// default there).
constexpr char kStockSocket[] = "/run/mysqld/mysqld.sock";

void FsyncDir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

bool IsExecutable(const std::string& path) {
  struct stat sb;
  return ::stat(path.c_str(), &sb) == 0 && S_ISREG(sb.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// The first of `names` found in `bin_dir` (when set), else in PATH,
// /usr/sbin, /usr/bin, /usr/local/bin. "" when none is.
std::string FindTool(const std::string& bin_dir, std::initializer_list<const char*> names) {
  std::vector<std::string> dirs;
  if (!bin_dir.empty()) {
    dirs.push_back(bin_dir);
  } else {
    const char* path = std::getenv("PATH");
    for (absl::string_view d : absl::StrSplit(path == nullptr ? "" : path, ':', absl::SkipEmpty())) {
      dirs.emplace_back(d);
    }
    for (const char* d : {"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"}) {
      dirs.emplace_back(d);
    }
  }
  for (const char* name : names) {
    for (const std::string& dir : dirs) {
      std::string candidate = absl::StrCat(dir, "/", name);
      if (IsExecutable(candidate)) return candidate;
    }
  }
  return "";
}

// The server process named by a pid file, when it is alive and a mariadbd
// or mysqld (not a reused pid).
std::optional<pid_t> LiveServerPid(const std::string& pid_file) {
  absl::StatusOr<std::string> content = ReadFile(pid_file);
  if (!content.ok()) return std::nullopt;
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*content), &pid) || pid <= 0) {
    return std::nullopt;
  }
  if (::kill(pid, 0) != 0 && errno == ESRCH) return std::nullopt;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(stat, line);
  size_t open = line.find('(');
  size_t close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close + 2 >= line.size()) {
    return std::nullopt;
  }
  char state = line[close + 2];
  std::string comm = line.substr(open + 1, close - open - 1);
  if (state == 'Z' || state == 'X') return std::nullopt;
  if (comm != "mariadbd" && comm != "mysqld") return std::nullopt;
  return static_cast<pid_t>(pid);
}

// Bytes of the data set in a data directory: every file below it, except
// the top-level logs and runtime files (mysql::CountsAsData).
uint64_t DataBytes(const std::string& data_dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(data_dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code fec;
    if (!it->is_regular_file(fec)) continue;
    if (it.depth() == 0 && !mysql::CountsAsData(it->path().filename().string())) continue;
    total += it->file_size(fec);
  }
  return total;
}

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1000 && unit < 4) {
    value /= 1000;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, unit == 0 ? "%.0f %s" : "%.1f %s", value, units[unit]);
  return buf;
}

struct Tools {
  std::string mariadbd;
  std::string backup;      // mariadb-backup
  std::string mbstream;
  std::string dump;        // mariadb-dump
  std::string client;      // mariadb
  std::string install_db;  // mariadb-install-db
};

// What SHOW SLAVE STATUS says (flavour-independent).
struct ReplicaStatus {
  bool configured = false;
  mysql::Endpoint source;
  std::string user;
  bool io_running = false;
  bool sql_running = false;
  double seconds_behind = -1;
  int64_t lag_bytes = -1;
  std::string gtid_io_pos;
  std::string last_error;  // both threads' errors, for messages
  int io_errno = 0;
  std::string io_error;
  int sql_errno = 0;
  std::string sql_error;
  bool ssl = false;  // Master_SSL_Allowed
};

// The master as the replication login sees it.
struct UpstreamInfo {
  std::string server_id;
  std::string gtid_state;  // MariaDB: binary log state merged with gtid_slave_pos
  bool read_only = false;
};

// Receives the seed stream (after its header) on the slave and turns it into
// a prepared data directory; returns the GTID the copy is at.
class SeedConsumer {
 public:
  virtual ~SeedConsumer() = default;
  virtual absl::Status Feed(std::string_view chunk) = 0;
  virtual absl::StatusOr<std::string> Finish() = 0;
};

class MysqlEngine final : public Engine {
 public:
  MysqlEngine(EngineConfig config, Tools tools, std::optional<UserIds> os_ids,
              BackupSource* source)
      : config_(std::move(config)), tools_(std::move(tools)), os_ids_(os_ids), source_(source) {
    const fs::path data(config_.data_dir);
    parent_ = data.parent_path().string();
    base_ = data.filename().string();
    socket_ = absl::StrCat(parent_, "/", base_, ".sock");
    pid_file_ = absl::StrCat(parent_, "/", base_, ".pid");
    log_file_ = config_.log_file.empty() ? absl::StrCat(parent_, "/", base_, ".log") : config_.log_file;
    new_dir_ = config_.data_dir + kMysqlSideDirSuffix;
    seed_log_ = config_.data_dir + ".tandem-seed.log";
    served_file_ = absl::StrCat(parent_, "/.tandem-", base_, ".served");
    if (config_.seed_method.empty()) config_.seed_method = kDefaultSeedMethod;
  }

  EngineType type() const override { return EngineType::kMysql; }
  absl::StatusOr<EngineFacts> Observe() override;
  absl::Status Start() override;
  absl::Status Stop() override;
  absl::Status Fence() override;
  absl::Status ServeSlaves(const std::vector<Peer>& slaves) override;
  absl::StatusOr<std::string> Bootstrap(const Peer& self, const Peer& upstream,
                                        const ProgressFn& progress) override;
  absl::Status Follow(const Peer& self, const Peer& upstream) override;
  absl::Status MakeWritable() override;
  std::string DataParentDir() const override { return parent_; }
  absl::Status StreamBackup(const std::string& slave_id, const BackupSink& write) override;
  absl::StatusOr<bool> HasReplayed(const std::string& position) override;
  absl::StatusOr<std::string> Rejoin(const Peer& self, const Peer& upstream) override;

  // For the seed consumers.
  const EngineConfig& config() const { return config_; }
  const Tools& tools() const { return tools_; }
  const std::string& new_dir() const { return new_dir_; }
  const std::string& seed_log() const { return seed_log_; }
  const std::string& parent() const { return parent_; }
  const std::string& base() const { return base_; }
  RunOptions ToolOptions() const;
  StreamOptions StreamToolOptions() const;

 private:
  // Where the agent reaches its server: engine.host, or for the default the
  // endpoint of the last login (the stock socket or 127.0.0.1).
  std::string Where() const {
    const std::string& host = !config_.host.empty() ? config_.host : login_host_;
    if (host.empty()) return absl::StrCat("127.0.0.1:", config_.port);
    return host[0] == '/' ? host : absl::StrCat(host, ":", config_.port);
  }
  std::string DataFile(std::string_view name) const {
    return absl::StrCat(config_.data_dir, "/", AbslView(name));
  }
  bool HasData(const std::string& dir) const { return PathExists(dir + "/mysql"); }

  // ---- connection
  absl::StatusOr<std::string> Secret(std::string_view field, const std::string& path) const;
  // engine.replication_password_file: required and not empty.
  absl::StatusOr<std::string> ReplicationPassword() const;
  // The agent's login to its server at `host` (a socket path or a TCP host).
  absl::StatusOr<MysqlLogin> LocalLogin(const std::string& host) const;
  // Where the last successful login went (Connect), for tools that log in
  // the same way.
  std::string LoginHost() const {
    if (!config_.host.empty()) return config_.host;
    return login_host_.empty() ? "127.0.0.1" : login_host_;
  }
  absl::StatusOr<MysqlClient*> Connect();
  void Disconnect() {
    conn_.reset();
    dialect_.reset();
  }
  // The server answers at host:port (a refused login is an answer too).
  bool Answers();
  absl::Status RequireUp();
  // A statement on the kept connection, reconnecting once when it went stale
  // (a restarted server); every statement passed here is idempotent.
  absl::StatusOr<MysqlResult> Query(std::string_view what, const std::string& sql,
                                    std::string_view redact = {});
  absl::Status Exec(std::string_view what, const std::string& sql, std::string_view redact = {}) {
    return Query(what, sql, redact).status();
  }
  absl::StatusOr<std::string> Value(std::string_view what, const std::string& sql);
  // The kept connection's dialect (connecting first when needed; MariaDB's
  // when the server cannot be reached, whose statements then fail anyway).
  const Dialect& dialect();
  // `text` as a quoted SQL string literal.
  std::string Lit(std::string_view text);

  // ---- state
  absl::StatusOr<ReplicaStatus> ReadReplicaStatus();
  absl::StatusOr<std::optional<mysql::SeedMarker>> ReadSeedMarker(const std::string& dir) const;
  absl::StatusOr<mysql::ServedSlaves> ReadServed() const;
  absl::StatusOr<EngineFacts> ObserveStopped(EngineFacts facts,
                                             const std::optional<mysql::SeedMarker>& marker);
  absl::StatusOr<EngineFacts> ObserveRunning(EngineFacts facts,
                                             const std::optional<mysql::SeedMarker>& marker);
  absl::StatusOr<std::set<std::string>> ReplicationAccountHosts();

  // ---- steps
  absl::Status EnsurePrerequisites(size_t slave_count);
  // One replication account per host; `hosts` maps each to whether its
  // slaves must come over TLS (REQUIRE SSL).
  absl::Status EnsureAccounts(const std::map<std::string, bool>& hosts);
  absl::Status EnsureReadOnly(bool on);
  // Ends every client session but the agent's own and replication's.
  absl::Status EndClientSessions();
  // Whether this node replicates from `upstream` over TLS, and how.
  bool WantsTls(const Peer& self, const Peer& upstream) const {
    return ReplicationTls(config_, self, upstream);
  }
  mysql::SourceTls SourceTlsSettings(bool tls);
  // Logs in to `upstream` as the replication account (over TLS when `tls`)
  // and reads its server_id, GTID state and read_only. Unavailable when the
  // login does not work (yet).
  absl::StatusOr<UpstreamInfo> CheckUpstream(const Peer& upstream, const std::string& password,
                                             bool tls);
  // FailedPrecondition naming the transactions of this node that `upstream`
  // (as `info` describes it) does not have.
  absl::Status CheckNoErrant(const Peer& upstream, const UpstreamInfo& info);
  // Polls until the slave threads run against `upstream` and this node has
  // applied `target` (an upstream's GTID state); FailedPrecondition when
  // replication stops with an error that retrying cannot mend.
  absl::Status AwaitCaughtUp(const Peer& upstream, const std::string& target);
  absl::Status CheckServerIds(const Peer& upstream, const UpstreamInfo& info);
  absl::Status FetchCopy(const Peer& self, const Peer& upstream, const ProgressFn& progress,
                         std::string* gtid);
  absl::Status SwapIn();
  absl::Status FinishSeed(const Peer& self, const Peer& upstream, const std::string& gtid,
                          const std::string& password);
  // Re-points replication to `upstream` (described by `info`) by GTID:
  // refuses errant transactions, then this node replicates from after
  // everything it has (its binary log and its replicated position).
  absl::Status PointAt(const Peer& self, const Peer& upstream, const std::string& password,
                       const UpstreamInfo& info);
  absl::Status WriteKeepingOwner(const std::string& path, const std::string& content,
                                 unsigned mode);
  absl::Status LaunchServer();

  EngineConfig config_;
  Tools tools_;
  std::optional<UserIds> os_ids_;  // chown target when the agent is root
  BackupSource* source_;
  std::string parent_;
  std::string base_;
  std::string socket_;
  std::string pid_file_;
  std::string log_file_;
  std::string new_dir_;
  std::string seed_log_;
  std::string served_file_;
  std::unique_ptr<MysqlClient> conn_;
  std::string login_host_;  // engine.host, or the endpoint the default picked
  std::optional<Dialect> dialect_;
};

// ------------------------------------------------------------------ plumbing

RunOptions MysqlEngine::ToolOptions() const {
  RunOptions options;
  options.run_as = config_.os_user;
  options.cwd = "/";
  options.env = {{"LC_ALL", "C"}};
  options.timeout = std::chrono::seconds(config_.timeout_seconds + 30);
  return options;
}

StreamOptions MysqlEngine::StreamToolOptions() const {
  StreamOptions options;
  options.run_as = config_.os_user;
  options.env = {{"LC_ALL", "C"}};
  return options;
}

absl::StatusOr<std::string> MysqlEngine::Secret(std::string_view field,
                                                const std::string& path) const {
  if (path.empty()) return std::string();
  absl::StatusOr<std::string> secret = ReadSecretFile(path);
  if (!secret.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("while reading engine.", AbslView(field), ": ", secret.status().message()));
  }
  return secret;
}

absl::StatusOr<std::string> MysqlEngine::ReplicationPassword() const {
  // Replication accounts always have a password: never a passwordless one.
  if (config_.replication_password_file.empty()) {
    return absl::FailedPreconditionError(
        "engine.replication_password_file is not set: replication logs in with a password (the "
        "same file on every node of the group; no passwordless account)");
  }
  absl::StatusOr<std::string> password =
      Secret("replication_password_file", config_.replication_password_file);
  if (password.ok() && password->empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "engine.replication_password_file ", config_.replication_password_file, " is empty"));
  }
  return password;
}

absl::StatusOr<MysqlLogin> MysqlEngine::LocalLogin(const std::string& host) const {
  absl::StatusOr<std::string> password = Secret("password_file", config_.password_file);
  if (!password.ok()) return password.status();
  MysqlLogin login;
  if (!host.empty() && host[0] == '/') {
    login.unix_socket = host;
  } else {
    login.host = host;
  }
  login.port = config_.port;
  login.user = config_.user;
  login.password = *std::move(password);
  return login;
}

absl::StatusOr<MysqlClient*> MysqlEngine::Connect() {
  if (conn_ != nullptr) return conn_.get();
  // The default: the stock socket when the server there is this one (it
  // listens on engine.port), else TCP on 127.0.0.1.
  std::vector<std::string> hosts;
  if (!config_.host.empty()) {
    hosts = {config_.host};
  } else {
    if (PathExists(kStockSocket)) hosts.push_back(kStockSocket);
    hosts.push_back("127.0.0.1");
  }
  absl::Status failed;
  for (const std::string& host : hosts) {
    const bool stock_guess = config_.host.empty() && host == kStockSocket;
    absl::StatusOr<MysqlLogin> login = LocalLogin(host);
    if (!login.ok()) return login.status();
    absl::StatusOr<std::unique_ptr<MysqlClient>> client = absl::UnknownError("not connected");
    auto connect = [&] { client = MysqlClient::Connect(*login, kStatementTimeout); };
    // Over the socket as os_user's namesake: unix_socket authentication
    // then sees that OS user.
    absl::Status as_user = LogsInAsOsUser(config_, host) && os_ids_.has_value()
                               ? WithThreadIdentity(*os_ids_, connect)
                               : (connect(), absl::OkStatus());
    std::fill(login->password.begin(), login->password.end(), '\0');
    if (!as_user.ok()) return Context("logging in as " + config_.os_user, as_user);
    if (!client.ok()) {
      // A stale socket file: try TCP.
      if (stock_guess && absl::IsUnavailable(client.status())) continue;
      if (absl::IsFailedPrecondition(client.status())) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the server at ", host[0] == '/' ? host : absl::StrCat(host, ":", config_.port),
            " refuses the agent's login as ", config_.user, ": ", client.status().message()));
      }
      return client.status();
    }
    if (stock_guess) {
      // Another server's socket (a second instance on this host): not ours.
      absl::StatusOr<std::string> port = (*client)->Value("reading the port", "SELECT @@port");
      if (!port.ok() || *port != absl::StrCat(config_.port)) continue;
    }
    conn_ = *std::move(client);
    login_host_ = host;
    dialect_.emplace(mysql::ParseServerVersion(conn_->server_version()));
    return conn_.get();
  }
  return absl::UnavailableError("no local server answers");  // not reached: TCP is last
}

bool MysqlEngine::Answers() {
  if (conn_ != nullptr) {
    if (conn_->Query("checking the server", "SELECT 1").ok()) return true;
    Disconnect();
  }
  absl::StatusOr<MysqlClient*> c = Connect();
  return c.ok() || !absl::IsUnavailable(c.status());
}

absl::Status MysqlEngine::RequireUp() {
  absl::StatusOr<MysqlClient*> c = Connect();
  if (c.ok()) return absl::OkStatus();
  if (absl::IsUnavailable(c.status())) {
    return absl::UnavailableError(
        absl::StrCat("the server is not running (nothing answers at ", Where(), "): ",
                     c.status().message()));
  }
  return c.status();
}

absl::StatusOr<MysqlResult> MysqlEngine::Query(std::string_view what, const std::string& sql,
                                               std::string_view redact) {
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<MysqlClient*> c = Connect();
    if (!c.ok()) return Context(what, c.status());
    absl::StatusOr<MysqlResult> r = (*c)->Query(what, sql, redact);
    if (r.ok() || !absl::IsUnavailable(r.status())) return r;
    Disconnect();
    if (attempt > 0) return r;
  }
}

const Dialect& MysqlEngine::dialect() {
  static const Dialect kFallback(mysql::ServerVersion{mysql::Flavor::kMariadb, 10, 11, 0});
  if (!dialect_.has_value()) (void)Connect();
  return dialect_.has_value() ? *dialect_ : kFallback;
}

std::string MysqlEngine::Lit(std::string_view text) {
  if (conn_ == nullptr) (void)Connect();
  if (conn_ != nullptr) return conn_->Quote(text);
  std::string out = "'";
  for (char c : text) {
    if (c == '\\' || c == '\'') out.push_back(c);
    out.push_back(c);
  }
  return out + "'";
}

absl::StatusOr<std::string> MysqlEngine::Value(std::string_view what, const std::string& sql) {
  absl::StatusOr<MysqlResult> r = Query(what, sql);
  if (!r.ok()) return r.status();
  if (r->rows.empty() || r->rows[0].empty()) {
    return absl::InternalError(absl::StrCat("while ", AbslView(what), ": no row returned"));
  }
  return r->rows[0][0].value_or("");
}

absl::Status MysqlEngine::WriteKeepingOwner(const std::string& path, const std::string& content,
                                            unsigned mode) {
  TANDEM_RETURN_IF_ERROR(WriteFileAtomic(path, content, mode));
  if (os_ids_.has_value() && ::chown(path.c_str(), os_ids_->uid, os_ids_->gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<ReplicaStatus> MysqlEngine::ReadReplicaStatus() {
  absl::StatusOr<MysqlClient*> c = Connect();
  if (!c.ok()) return c.status();
  const Dialect d = dialect();
  absl::StatusOr<MysqlResult> r = Query("reading the replication status", d.ShowReplicaStatus());
  if (!r.ok()) return r.status();
  ReplicaStatus s;
  if (r->rows.empty()) return s;
  auto get = [&](std::string_view name) { return r->Get(0, d.Column(name)); };
  s.source.host = get("Master_Host");
  s.configured = !s.source.host.empty();
  if (!s.configured) return s;
  (void)absl::SimpleAtoi(get("Master_Port"), &s.source.port);
  s.user = get("Master_User");
  s.io_running = get("Slave_IO_Running") == "Yes";
  s.sql_running = get("Slave_SQL_Running") == "Yes";
  double seconds = 0;
  if (!r->IsNull(0, d.Column("Seconds_Behind_Master")) &&
      absl::SimpleAtod(get("Seconds_Behind_Master"), &seconds)) {
    s.seconds_behind = seconds;
  }
  int64_t read_pos = 0;
  int64_t exec_pos = 0;
  if (get("Master_Log_File") == get("Relay_Master_Log_File") &&
      absl::SimpleAtoi(get("Read_Master_Log_Pos"), &read_pos) &&
      absl::SimpleAtoi(get("Exec_Master_Log_Pos"), &exec_pos)) {
    s.lag_bytes = std::max<int64_t>(0, read_pos - exec_pos);
  }
  s.gtid_io_pos = get("Gtid_IO_Pos");
  s.io_error = get("Last_IO_Error");
  s.sql_error = get("Last_SQL_Error");
  (void)absl::SimpleAtoi(get("Last_IO_Errno"), &s.io_errno);
  (void)absl::SimpleAtoi(get("Last_SQL_Errno"), &s.sql_errno);
  s.ssl = get("Master_SSL_Allowed") == "Yes";
  std::vector<std::string> errors;
  if (!s.io_error.empty()) errors.push_back("IO thread: " + s.io_error);
  if (!s.sql_error.empty()) errors.push_back("SQL thread: " + s.sql_error);
  s.last_error = absl::StrJoin(errors, "; ");
  return s;
}

absl::StatusOr<std::optional<mysql::SeedMarker>> MysqlEngine::ReadSeedMarker(
    const std::string& dir) const {
  absl::StatusOr<std::string> content = ReadFile(absl::StrCat(dir, "/", kMysqlSeedMarkerFile));
  if (absl::IsNotFound(content.status())) return std::optional<mysql::SeedMarker>();
  if (!content.ok()) return content.status();
  absl::StatusOr<mysql::SeedMarker> marker = mysql::ParseSeedMarker(*content);
  if (!marker.ok()) {
    return absl::InternalError(absl::StrCat(dir, "/", kMysqlSeedMarkerFile, ": ",
                                            marker.status().message()));
  }
  return std::optional<mysql::SeedMarker>(*std::move(marker));
}

absl::StatusOr<mysql::ServedSlaves> MysqlEngine::ReadServed() const {
  absl::StatusOr<std::string> content = ReadFile(served_file_);
  if (absl::IsNotFound(content.status())) return mysql::ServedSlaves();
  if (!content.ok()) return content.status();
  return mysql::ParseServedSlaves(*content);
}

absl::StatusOr<std::set<std::string>> MysqlEngine::ReplicationAccountHosts() {
  absl::StatusOr<MysqlClient*> c = Connect();
  if (!c.ok()) return c.status();
  absl::StatusOr<MysqlResult> r =
      Query("listing the replication accounts",
            absl::StrCat("SELECT Host FROM mysql.user WHERE User = ",
                         Lit(config_.replication_user)));
  if (!r.ok()) return r.status();
  std::set<std::string> hosts;
  for (size_t i = 0; i < r->rows.size(); ++i) hosts.insert(r->Get(i, "Host"));
  return hosts;
}

// ------------------------------------------------------------------ Observe

absl::StatusOr<EngineFacts> MysqlEngine::Observe() {
  EngineFacts facts;
  facts.has_data = HasData(config_.data_dir);
  absl::StatusOr<std::optional<mysql::SeedMarker>> marker = ReadSeedMarker(config_.data_dir);
  if (!marker.ok()) return marker.status();
  if (!Answers()) {
    Disconnect();
    if (std::optional<pid_t> pid = LiveServerPid(pid_file_)) {
      return absl::UnavailableError(absl::StrCat("a server (pid ", *pid, ") runs on ",
                                                 config_.data_dir, " but nothing answers at ",
                                                 Where(), " yet"));
    }
    return ObserveStopped(std::move(facts), *marker);
  }
  return ObserveRunning(std::move(facts), *marker);
}

absl::StatusOr<EngineFacts> MysqlEngine::ObserveStopped(
    EngineFacts facts, const std::optional<mysql::SeedMarker>& marker) {
  facts.running = false;
  if (!facts.has_data) return facts;
  absl::StatusOr<std::string> info = ReadFile(DataFile("master.info"));
  std::optional<mysql::Endpoint> source;
  if (info.ok()) source = mysql::ParseMasterInfo(*info);
  if (!source.has_value() && marker.has_value()) source = marker->upstream;
  if (source.has_value()) {
    facts.is_slave = true;
    facts.upstream = absl::StrCat(source->host, ":", source->port);
  }
  facts.data_bytes = DataBytes(config_.data_dir);
  absl::StatusOr<mysql::ServedSlaves> served = ReadServed();
  if (!served.ok()) return served.status();
  for (const auto& [id, host] : *served) facts.served_slaves.push_back(id);
  std::sort(facts.served_slaves.begin(), facts.served_slaves.end());
  return facts;
}

absl::StatusOr<EngineFacts> MysqlEngine::ObserveRunning(
    EngineFacts facts, const std::optional<mysql::SeedMarker>& marker) {
  absl::StatusOr<MysqlClient*> c = Connect();
  if (!c.ok()) return Context("observing the server", c.status());
  absl::StatusOr<MysqlResult> vars = Query("reading the server state", dialect().ObserveSql());
  if (!vars.ok()) return vars.status();
  facts.running = true;
  facts.has_data = true;
  std::error_code ec;
  const std::string datadir = vars->Get(0, "datadir");
  if (fs::exists(datadir, ec) && fs::exists(config_.data_dir, ec) &&
      !fs::equivalent(datadir, config_.data_dir, ec) && !ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("engine.port: the server answering at ", Where(), " has datadir ", datadir,
                     ", not engine.data_dir ", config_.data_dir));
  }
  absl::StatusOr<ReplicaStatus> rs = ReadReplicaStatus();
  if (!rs.ok()) return rs.status();
  facts.position = vars->Get(0, "gtid_current_pos");
  if (dialect().mariadb()) {
    // Everything this server has: its binary log and, for a copy seeded
    // from a backup (whose binary log starts empty), what it replicated.
    // A fenced master reports it; the slave taking over replays up to it.
    absl::StatusOr<mysql::GtidState> binlog = mysql::ParseGtidState(vars->Get(0, "gtid_binlog_pos"));
    absl::StatusOr<mysql::GtidState> applied = mysql::ParseGtidState(vars->Get(0, "gtid_slave_pos"));
    if (binlog.ok() && applied.ok()) {
      facts.position = mysql::FormatGtidState(mysql::LatestPerDomain(*binlog, *applied));
    }
  }
  if (rs->configured) {
    facts.is_slave = true;
    facts.upstream = absl::StrCat(rs->source.host, ":", rs->source.port);
    facts.streaming = rs->io_running && rs->sql_running;
    facts.lag_seconds = facts.streaming ? rs->seconds_behind : -1;
    facts.lag_bytes = facts.streaming ? rs->lag_bytes : -1;
    facts.link_error = rs->last_error;
    if (!vars->Get(0, "gtid_slave_pos").empty()) facts.position = vars->Get(0, "gtid_slave_pos");
    mysql::ReplicationHealth health;
    health.sql_running = rs->sql_running;
    health.sql_errno = rs->sql_errno;
    health.sql_error = rs->sql_error;
    health.io_errno = rs->io_errno;
    health.io_error = rs->io_error;
    uint32_t server_id = 0;
    absl::StatusOr<mysql::GtidState> binlog = mysql::ParseGtidState(vars->Get(0, "gtid_binlog_pos"));
    absl::StatusOr<mysql::GtidState> applied = mysql::ParseGtidState(vars->Get(0, "gtid_slave_pos"));
    if (dialect().mariadb() && binlog.ok() && applied.ok() &&
        absl::SimpleAtoi(vars->Get(0, "server_id"), &server_id)) {
      health.local_writes = mysql::LocalWrites(*binlog, *applied, server_id);
    }
    facts.out_of_sync = mysql::OutOfSyncReason(health);
  } else if (marker.has_value()) {
    // A seeded copy whose replication is not set up yet: a slave-to-be.
    facts.is_slave = true;
    facts.upstream = absl::StrCat(marker->upstream.host, ":", marker->upstream.port);
  }
  facts.writable = !facts.is_slave && vars->Get(0, "read_only") == "0";
  facts.data_bytes = DataBytes(config_.data_dir);
  absl::StatusOr<mysql::ServedSlaves> served = ReadServed();
  if (!served.ok()) return served.status();
  if (!served->empty()) {
    absl::StatusOr<std::set<std::string>> hosts = ReplicationAccountHosts();
    if (!hosts.ok()) return hosts.status();
    for (const auto& [id, host] : *served) {
      if (hosts->count(host) != 0) facts.served_slaves.push_back(id);
    }
    std::sort(facts.served_slaves.begin(), facts.served_slaves.end());
  }
  return facts;
}

// ------------------------------------------------------------------ Start / Stop

absl::Status MysqlEngine::LaunchServer() {
  if (CustomServerControl(config_, ServerAction::kStart)) {
    const bool unit = !config_.systemd_unit.empty();
    if (!unit) TANDEM_RETURN_IF_ERROR(EnsureServerLog(log_file_, os_ids_));
    return Context("starting the server",
                   RunServerControl(config_, ServerAction::kStart, unit ? "" : log_file_,
                                    std::chrono::seconds(config_.timeout_seconds + 30)));
  }
  TANDEM_RETURN_IF_ERROR(EnsureServerLog(log_file_, os_ids_));
  RunOptions options = ToolOptions();
  options.output_file = log_file_;  // the server keeps it open: never a pipe
  options.timeout = std::chrono::seconds(30);
  options.kill_with_parent = false;  // the server outlives the agent
  // The shell backgrounds mariadbd and exits: the server is reparented, and
  // keeps running when the agent stops.
  std::vector<std::string> argv = {"/bin/sh", "-c", "umask 007; \"$0\" \"$@\" </dev/null &",
                                   tools_.mariadbd,
                                   "--no-defaults",
                                   "--datadir=" + config_.data_dir,
                                   absl::StrCat("--port=", config_.port),
                                   "--socket=" + socket_,
                                   "--pid-file=" + pid_file_,
                                   "--log-error=" + log_file_,
                                   // Always read-only at start: MakeWritable
                                   // opens it, once the agent knows it may.
                                   "--read-only=ON",
                                   "--log-bin=mysql-bin",
                                   "--log-slave-updates=ON",
                                   "--binlog-format=ROW"};
  argv.insert(argv.end(), config_.server_args.begin(), config_.server_args.end());
  absl::StatusOr<RunResult> result = Run(argv, options);
  if (!result.ok()) return Context("starting the server", result.status());
  if (result->exit_code != 0) {
    return absl::InternalError(absl::StrCat("while starting the server: the launch exited with ",
                                            result->exit_code, OutputReason(result->output)));
  }
  return absl::OkStatus();
}

absl::Status MysqlEngine::Start() {
  if (Answers()) return absl::OkStatus();
  const auto timeout = std::chrono::seconds(config_.timeout_seconds);
  const uint64_t log_offset = FileSize(log_file_);
  // A unit's server logs to the journal (RunServerControl quotes it when
  // the unit fails).
  const bool unit = !config_.systemd_unit.empty();
  auto log_tail = [&] {
    if (unit) return std::string();
    return absl::StrCat("; log ", log_file_,
                        OutputReason(ReadTail(log_file_, 4000, log_offset), 1200));
  };
  if (!CustomServerControl(config_, ServerAction::kStart)) {
    if (!HasData(config_.data_dir)) {
      return absl::FailedPreconditionError(
          absl::StrCat("engine.data_dir ", config_.data_dir,
                       " holds no database (no mysql/ directory): it needs a bootstrap"));
    }
    if (std::optional<pid_t> pid = LiveServerPid(pid_file_)) {
      if (PollFor([&] { return Answers(); }, timeout)) return absl::OkStatus();
      return absl::UnavailableError(absl::StrCat("a server (pid ", *pid, ") runs on ",
                                                 config_.data_dir, " but does not answer at ",
                                                 Where(), " after ", config_.timeout_seconds, " s"));
    }
  }
  TANDEM_RETURN_IF_ERROR(LaunchServer());
  bool aborted = false;
  const bool up = PollFor(
      [&] {
        if (Answers()) return true;
        // mariadbd logs "[ERROR] Aborting" when it gives up (port taken,
        // bad option, ...): no need to wait for the timeout.
        aborted = !unit && absl::StrContains(ReadTail(log_file_, 1 << 16, log_offset), "Aborting");
        return aborted;
      },
      timeout, std::chrono::milliseconds(25));
  if (up && !aborted) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      "the server at ", Where(), aborted ? " aborted its start" : " does not answer",
      aborted ? "" : absl::StrCat(" ", config_.timeout_seconds, " s after its start"), log_tail()));
}

absl::Status MysqlEngine::Stop() {
  const auto timeout = std::chrono::seconds(config_.timeout_seconds);
  std::string pid_file = pid_file_;
  const bool custom = CustomServerControl(config_, ServerAction::kStop);
  if (Answers()) {
    absl::StatusOr<std::string> file = Value("reading the pid file name", "SELECT @@pid_file");
    if (!file.ok()) return file.status();
    pid_file = *file;
    if (custom) {
      Disconnect();
      TANDEM_RETURN_IF_ERROR(
          Context("stopping the server",
                  RunServerControl(config_, ServerAction::kStop,
                                   config_.systemd_unit.empty() ? log_file_ : "",
                                   std::chrono::seconds(config_.timeout_seconds + 30))));
    } else {
      absl::StatusOr<MysqlClient*> c = Connect();
      if (!c.ok()) return Context("stopping the server", c.status());
      // The connection ends with the server: a lost connection is success.
      absl::Status st = (*c)->Exec("stopping the server", "SHUTDOWN");
      Disconnect();
      if (!st.ok() && !absl::IsUnavailable(st)) return st;
    }
  } else if (!config_.systemd_unit.empty()) {
    // Down, or not answering yet: the unit may still be (re)starting it.
    TANDEM_RETURN_IF_ERROR(
        Context("stopping the server",
                RunServerControl(config_, ServerAction::kStop, "",
                                 std::chrono::seconds(config_.timeout_seconds + 30))));
  } else if (std::optional<pid_t> pid = LiveServerPid(pid_file_); pid.has_value() && !custom) {
    // Started but not answering (still starting, or stuck): SIGTERM is a
    // normal shutdown for mariadbd.
    ::kill(*pid, SIGTERM);
  }
  Disconnect();
  const bool stopped = PollFor(
      [&] {
        if (LiveServerPid(pid_file).has_value()) return false;
        return !Answers();
      },
      timeout, std::chrono::milliseconds(25));
  if (!stopped) {
    return absl::UnavailableError(absl::StrCat("the server at ", Where(), " still runs ",
                                               config_.timeout_seconds, " s after its shutdown"));
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------------ Fence

absl::Status MysqlEngine::EnsureReadOnly(bool on) {
  absl::StatusOr<MysqlResult> ro = Query("reading read_only", dialect().ReadOnlySql());
  if (!ro.ok()) return ro.status();
  if (on ? ro->Get(0, "fenced") == "1" : ro->Get(0, "any_read_only") == "0") {
    return absl::OkStatus();
  }
  for (const std::string& sql : dialect().SetReadOnly(on)) {
    TANDEM_RETURN_IF_ERROR(Exec(on ? "fencing the server" : "making the server writable", sql));
  }
  return absl::OkStatus();
}

absl::Status MysqlEngine::Fence() {
  if (!Answers()) {
    if (std::optional<pid_t> pid = LiveServerPid(pid_file_)) {
      return absl::UnavailableError(absl::StrCat("a server (pid ", *pid, ") runs on ",
                                                 config_.data_dir, " but nothing answers at ",
                                                 Where()));
    }
    return absl::OkStatus();  // it starts read-only
  }
  TANDEM_RETURN_IF_ERROR(RequireUp());
  absl::StatusOr<ReplicaStatus> rs = ReadReplicaStatus();
  if (!rs.ok()) return rs.status();
  TANDEM_RETURN_IF_ERROR(EnsureReadOnly(true));
  // A slave's readers may stay; a fenced master's or standalone's sessions
  // end: an open transaction is rolled back instead of committing later
  // (read_only refuses that commit anyway), accounts that read_only does not
  // bind (READ_ONLY ADMIN, SUPER on MySQL 5.7) lose their session, and
  // applications reconnect, to wherever their env file then points.
  if (!rs->configured) TANDEM_RETURN_IF_ERROR(EndClientSessions());
  return absl::OkStatus();
}

absl::Status MysqlEngine::EndClientSessions() {
  // Not this session, nor replication (binlog dump threads of the slaves,
  // this server's own slave threads), nor the server's own threads.
  absl::StatusOr<MysqlResult> sessions = Query(
      "listing the client sessions",
      "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
      "AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', 'Slave_IO', 'Slave_SQL', "
      "'Slave_worker') AND USER NOT IN ('system user', 'event_scheduler')");
  if (!sessions.ok()) return sessions.status();
  for (size_t i = 0; i < sessions->rows.size(); ++i) {
    absl::Status killed = Exec("ending a client session",
                               absl::StrCat("KILL CONNECTION ", sessions->Get(i, "ID")));
    // 1094: unknown thread (it ended by itself meanwhile).
    if (!killed.ok() && !absl::StrContains(killed.message(), "error 1094")) return killed;
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------------ ServeSlaves

absl::Status MysqlEngine::EnsurePrerequisites(size_t slave_count) {
  auto read = [&]() -> absl::StatusOr<std::vector<std::string>> {
    absl::StatusOr<MysqlResult> r = Query("reading the replication settings",
                                          dialect().ObserveSql());
    if (!r.ok()) return r.status();
    std::vector<std::string> problems;
    if (r->Get(0, "log_bin") != "1") {
      problems.push_back("log_bin is OFF (slaves replicate from the binary log)");
    }
    if (r->Get(0, "log_slave_updates") != "1") {
      problems.push_back("log_slave_updates is OFF (a slave promoted later needs it)");
    }
    return problems;
  };
  absl::StatusOr<std::string> server_id = Value("reading server_id", "SELECT @@server_id");
  if (!server_id.ok()) return server_id.status();
  if (*server_id == "0") {
    return absl::FailedPreconditionError(
        "cannot serve slaves: server_id is 0; give every node of the group its own "
        "server id (--server-id in engine.server_args, or server-id in the server's "
        "configuration)");
  }
  absl::StatusOr<std::vector<std::string>> problems = read();
  if (!problems.ok()) return problems.status();
  if (problems->empty()) return absl::OkStatus();
  const std::string list = absl::StrJoin(*problems, ", ");
  if (!config_.allow_restart) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot serve ", slave_count, " slave(s): ", list, "; changing this needs a restart of ",
        dialect().Name(), ", which engine.allow_restart permits (the default start enables them)"));
  }
  // The server comes back read-only (see Start): a master that was
  // writable before the restart is writable after it.
  absl::StatusOr<MysqlResult> ro = Query("reading read_only", dialect().ReadOnlySql());
  if (!ro.ok()) return ro.status();
  const bool was_writable = ro->Get(0, "any_read_only") == "0";
  TANDEM_RETURN_IF_ERROR(Context("restarting the server for the replication settings", Stop()));
  TANDEM_RETURN_IF_ERROR(Context("restarting the server for the replication settings", Start()));
  if (was_writable) TANDEM_RETURN_IF_ERROR(EnsureReadOnly(false));
  problems = read();
  if (!problems.ok()) return problems.status();
  if (!problems->empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot serve ", slave_count, " slave(s): after a restart ", absl::StrJoin(*problems, ", "),
        ": it is set on the server's command line or in its configuration (engine.server_args, "
        "engine.start_command, engine.systemd_unit)"));
  }
  return absl::OkStatus();
}

absl::Status MysqlEngine::EnsureAccounts(const std::map<std::string, bool>& hosts) {
  absl::StatusOr<MysqlClient*> c = Connect();
  if (!c.ok()) return c.status();
  const std::string user = Lit(config_.replication_user);
  absl::StatusOr<MysqlResult> rows = Query(
      "reading the replication accounts",
      absl::StrCat("SELECT Host, authentication_string, Repl_slave_priv, ssl_type FROM mysql.user "
                   "WHERE User = ",
                   user));
  if (!rows.ok()) return rows.status();
  struct Account {
    std::string hash;
    bool can_replicate = false;
    bool requires_ssl = false;
  };
  std::map<std::string, Account> existing;
  for (size_t i = 0; i < rows->rows.size(); ++i) {
    existing[rows->Get(i, "Host")] = {rows->Get(i, "authentication_string"),
                                      rows->Get(i, "Repl_slave_priv") == "Y",
                                      !rows->Get(i, "ssl_type").empty()};
  }
  // Only accounts to create or update need the password (a master whose
  // last slave left needs none).
  absl::StatusOr<std::string> password =
      hosts.empty() ? absl::StatusOr<std::string>(std::string()) : ReplicationPassword();
  if (!password.ok()) return password.status();
  const std::string hash = hosts.empty() ? std::string() : mysql::NativePasswordHash(*password);
  std::fill(password->begin(), password->end(), '\0');
  const std::string hash_literal = Lit(hash);
  for (const auto& [host, tls] : hosts) {
    const std::string account = absl::StrCat(user, "@", Lit(host));
    auto it = existing.find(host);
    if (it == existing.end()) {
      TANDEM_RETURN_IF_ERROR(Exec("creating the replication account for " + host,
                              dialect().CreateUser(account, hash_literal)));
    } else if (it->second.hash != hash) {
      TANDEM_RETURN_IF_ERROR(Exec("setting the replication password for " + host,
                              dialect().SetPassword(account, hash_literal)));
    }
    if (it == existing.end() || !it->second.can_replicate) {
      TANDEM_RETURN_IF_ERROR(Exec("granting replication to " + host,
                              absl::StrCat("GRANT REPLICATION SLAVE ON *.* TO ", account)));
    }
    const bool requires_ssl = it != existing.end() && it->second.requires_ssl;
    if (tls != requires_ssl) {
      TANDEM_RETURN_IF_ERROR(Exec(
          tls ? "requiring TLS of the replication account for " + host
              : "dropping the TLS requirement of the replication account for " + host,
          absl::StrCat("ALTER USER ", account, tls ? " REQUIRE SSL" : " REQUIRE NONE")));
    }
  }
  for (const auto& [host, unused] : existing) {
    if (hosts.count(host) != 0) continue;
    // A departed slave: its account goes, and so does its binlog dump
    // session (dropping an account does not end its sessions).
    absl::StatusOr<MysqlResult> sessions = Query(
        "listing the sessions of a departed slave",
        absl::StrCat("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ", user,
                     " AND (HOST = ", Lit(host), " OR HOST LIKE ",
                     Lit(absl::StrCat(host, ":%")), ")"));
    if (!sessions.ok()) return sessions.status();
    TANDEM_RETURN_IF_ERROR(Exec("dropping the replication account for " + host,
                            absl::StrCat("DROP USER IF EXISTS ", user, "@", Lit(host))));
    for (size_t i = 0; i < sessions->rows.size(); ++i) {
      absl::Status killed = Exec("ending a departed slave's session",
                                 absl::StrCat("KILL CONNECTION ", sessions->Get(i, "ID")));
      // 1094: unknown thread (it ended by itself meanwhile).
      if (!killed.ok() && !absl::StrContains(killed.message(), "error 1094")) return killed;
    }
  }
  return absl::OkStatus();
}

absl::Status MysqlEngine::ServeSlaves(const std::vector<Peer>& slaves) {
  mysql::ServedSlaves record;
  std::map<std::string, bool> hosts;  // account host -> REQUIRE SSL
  Peer self;
  self.stack = config_.stack;
  for (const Peer& slave : slaves) {
    if (slave.id.empty() || slave.id.find_first_of(" \t\n") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("invalid slave id \"", slave.id, "\""));
    }
    if (!mysql::ValidAccountHost(slave.host)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "slave ", slave.id, ": \"", slave.host, "\" cannot be the host of a MySQL account"));
    }
    // Without its own stack (engine.stack unset) a master with tls_mode
    // between-stacks cannot tell which slaves are in another stack.
    const bool tls = config_.tls_mode == "always" ||
                     (!config_.stack.empty() && ReplicationTls(config_, slave, self));
    // Across stacks the address a slave's connections come from (NAT, an
    // egress gateway) is often not the one this stack reaches it at: a
    // slave that must come over TLS gets the account for any host, bound by
    // TLS and its password instead. Within a stack the address is the key.
    const std::string host = tls && !config_.stack.empty() && slave.stack != config_.stack
                                 ? std::string("%")
                                 : slave.host;
    record.emplace_back(slave.id, host);
    hosts[host] = hosts[host] || tls;
  }
  TANDEM_RETURN_IF_ERROR(RequireUp());
  if (!slaves.empty()) {
    absl::StatusOr<ReplicaStatus> rs = ReadReplicaStatus();
    if (!rs.ok()) return rs.status();
    if (rs->configured) {
      return absl::FailedPreconditionError(
          "the server is a slave (replication is configured): it serves slaves only once it is "
          "writable");
    }
    TANDEM_RETURN_IF_ERROR(EnsurePrerequisites(slaves.size()));
  }
  TANDEM_RETURN_IF_ERROR(EnsureAccounts(hosts));
  const std::string content = mysql::FormatServedSlaves(record);
  absl::StatusOr<std::string> current = ReadFile(served_file_);
  if (current.ok() && *current == content) return absl::OkStatus();
  return Context("recording the served slaves", WriteFileAtomic(served_file_, content, 0644));
}

// ------------------------------------------------------------------ StreamBackup

absl::Status MysqlEngine::StreamBackup(const std::string& slave_id, const BackupSink& write) {
  TANDEM_RETURN_IF_ERROR(RequireUp());
  if (!dialect().SupportsSeeding()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "seeding a slave from ", dialect().Name(),
        " is not supported (it needs MariaDB's mariadb-backup or mariadb-dump)"));
  }
  absl::StatusOr<std::string> log_bin = Value("reading log_bin", "SELECT @@log_bin");
  if (!log_bin.ok()) return log_bin.status();
  if (*log_bin != "1") {
    return absl::FailedPreconditionError(
        "log_bin is OFF: a copy for a slave needs the binary log (its position is a GTID)");
  }
  const bool physical = config_.seed_method != "dump";
  const std::string tool = physical ? tools_.backup : tools_.dump;
  if (tool.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no ", physical ? "mariadb-backup" : "mariadb-dump",
        " on this host (engine.seed_method: ", config_.seed_method, ")"));
  }
  const uint64_t estimate = DataBytes(config_.data_dir);

  // A private work dir: the option file with the password and the tool's log.
  // Backups run one at a time (agent/transfer_server.h): any other work dir
  // is the leftover of an agent killed mid-backup, with a password in it.
  const std::string work_prefix = absl::StrCat(".tandem-", base_, ".backup-");
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(parent_, ec)) {
    if (absl::StartsWith(entry.path().filename().string(), work_prefix)) {
      std::error_code rm;
      fs::remove_all(entry.path(), rm);
    }
  }
  std::string templ = absl::StrCat(parent_, "/", work_prefix, "XXXXXX");
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", templ, ": ", std::strerror(errno)));
  }
  const std::string work(buf.data());
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{work};
  if (os_ids_.has_value() && ::chown(work.c_str(), os_ids_->uid, os_ids_->gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", work, ": ", std::strerror(errno)));
  }
  // The tool logs in as the agent did (Value above connected).
  absl::StatusOr<MysqlLogin> login = LocalLogin(LoginHost());
  if (!login.ok()) return login.status();
  // Socket authentication compares the login with the tool's OS user: a
  // login that is not os_user's (root on a stock host) is the agent's own.
  const bool agents_login =
      !login->unix_socket.empty() && login->password.empty() && config_.user != config_.os_user;
  const std::string defaults = work + "/client.cnf";
  absl::Status written = WriteKeepingOwner(defaults, mysql::ClientDefaultsFile(*login), 0600);
  std::fill(login->password.begin(), login->password.end(), '\0');
  TANDEM_RETURN_IF_ERROR(written);
  const std::string tool_log = work + "/tool.log";

  std::vector<std::string> argv;
  if (physical) {
    argv = {tool, "--defaults-file=" + defaults, "--backup", "--stream=xbstream",
            "--target-dir=" + work + "/target"};
  } else {
    argv = {tool,           "--defaults-file=" + defaults,
            "--single-transaction", "--gtid",
            "--master-data=2",      "--all-databases",
            "--routines",           "--events",
            "--triggers",           "--hex-blob",
            "--max-allowed-packet=1G"};
  }
  StreamOptions options = StreamToolOptions();
  if (agents_login) options.run_as.clear();
  options.pipe_stdout = true;
  options.log_file = tool_log;
  absl::StatusOr<std::unique_ptr<StreamProcess>> proc = StreamProcess::Start(argv, options);
  if (!proc.ok()) return Context("starting the backup for " + slave_id, proc.status());

  absl::Status st = write(mysql::SeedStreamHeader(physical ? mysql::SeedFormat::kXbstream
                                                           : mysql::SeedFormat::kSql),
                          estimate);
  std::string chunk;
  while (st.ok()) {
    absl::StatusOr<bool> more = (*proc)->Read(&chunk, kChunkBytes);
    if (!more.ok()) {
      st = more.status();
      break;
    }
    if (!*more) break;
    st = write(chunk, estimate);
  }
  if (!st.ok()) {
    (*proc)->Kill();
    (void)(*proc)->Wait(std::chrono::seconds(10));
    return st;
  }
  absl::StatusOr<int> code = (*proc)->Wait(std::chrono::minutes(10));
  if (!code.ok()) return Context("finishing the backup", code.status());
  if (*code != 0) {
    return absl::InternalError(absl::StrCat("while streaming the backup for ", slave_id, ": ",
                                            physical ? "mariadb-backup" : "mariadb-dump",
                                            " exited with ", *code,
                                            OutputReason(ReadTail(tool_log, 4000), 800)));
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------------ seed consumers

// mbstream -x into the side directory, then mariadb-backup --prepare.
class XbstreamConsumer : public SeedConsumer {
 public:
  explicit XbstreamConsumer(const MysqlEngine& engine) : engine_(engine) {}

  absl::Status Start() {
    if (engine_.tools().mbstream.empty() || engine_.tools().backup.empty()) {
      return absl::FailedPreconditionError(
          "the master streams a mariadb-backup copy, but mbstream or mariadb-backup is missing "
          "on this host (install mariadb-backup)");
    }
    StreamOptions options = engine_.StreamToolOptions();
    options.pipe_stdin = true;
    options.log_file = engine_.seed_log();
    options.cwd = engine_.new_dir();
    absl::StatusOr<std::unique_ptr<StreamProcess>> proc = StreamProcess::Start(
        {engine_.tools().mbstream, "-x", "-C", engine_.new_dir()}, options);
    if (!proc.ok()) return proc.status();
    proc_ = *std::move(proc);
    return absl::OkStatus();
  }

  absl::Status Feed(std::string_view chunk) override {
    absl::Status st = proc_->Write(chunk);
    if (!st.ok()) {
      return absl::InternalError(absl::StrCat("mbstream -x failed: ", st.message(), "; ",
                                              OutputTail(ReadTail(engine_.seed_log(), 4000), 600)));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Finish() override {
    proc_->CloseStdin();
    absl::StatusOr<int> code = proc_->Wait(std::chrono::minutes(30));
    if (!code.ok()) return code.status();
    if (*code != 0) {
      return absl::InternalError(
          absl::StrCat("mbstream -x exited with ", *code,
                       OutputReason(ReadTail(engine_.seed_log(), 4000), 600)));
    }
    RunOptions options = engine_.ToolOptions();
    options.output_file = engine_.seed_log();
    options.timeout = kCopyTimeout;
    absl::StatusOr<RunResult> prepared = Run(
        {engine_.tools().backup, "--no-defaults", "--prepare", "--target-dir=" + engine_.new_dir()},
        options);
    if (!prepared.ok()) return Context("preparing the copy", prepared.status());
    if (prepared->exit_code != 0) {
      return absl::InternalError(
          absl::StrCat("mariadb-backup --prepare exited with ", prepared->exit_code,
                       OutputReason(ReadTail(engine_.seed_log(), 4000), 800)));
    }
    for (const char* name : {"mariadb_backup_binlog_info", "xtrabackup_binlog_info"}) {
      absl::StatusOr<std::string> info = ReadFile(absl::StrCat(engine_.new_dir(), "/", name));
      if (!info.ok()) continue;
      std::optional<std::string> gtid = mysql::GtidFromBinlogInfo(*info);
      if (gtid.has_value()) return *gtid;
    }
    return absl::FailedPreconditionError(
        "the backup has no binlog position (no xtrabackup_binlog_info nor "
        "mariadb_backup_binlog_info): is log_bin on on the master?");
  }

 private:
  const MysqlEngine& engine_;
  std::unique_ptr<StreamProcess> proc_;
};

// A scratch server on the side directory (no network, no binary log, no
// grant checks) that the `mariadb` client loads the dump into.
class SqlConsumer : public SeedConsumer {
 public:
  explicit SqlConsumer(const MysqlEngine& engine)
      : engine_(engine),
        socket_(absl::StrCat(engine.parent(), "/", engine.base(), ".tandem-load.sock")),
        pid_file_(absl::StrCat(engine.parent(), "/", engine.base(), ".tandem-load.pid")) {}

  ~SqlConsumer() override {
    loader_.reset();
    if (server_ != nullptr) {
      server_->Kill();
      (void)server_->Wait(std::chrono::seconds(30));
    }
  }

  absl::Status Start() {
    const Tools& t = engine_.tools();
    if (t.install_db.empty() || t.client.empty() || t.mariadbd.empty()) {
      return absl::FailedPreconditionError(
          "the master streams a dump, but mariadb-install-db, mariadb or mariadbd is missing on "
          "this host");
    }
    RunOptions options = engine_.ToolOptions();
    options.output_file = engine_.seed_log();
    options.timeout = std::chrono::minutes(10);
    absl::StatusOr<RunResult> installed =
        Run({t.install_db, "--no-defaults", "--datadir=" + engine_.new_dir(),
             "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"},
            options);
    if (!installed.ok()) return Context("initialising the copy", installed.status());
    if (installed->exit_code != 0) {
      return absl::InternalError(
          absl::StrCat("mariadb-install-db exited with ", installed->exit_code,
                       OutputReason(ReadTail(engine_.seed_log(), 4000), 600)));
    }
    std::error_code ec;
    fs::remove(socket_, ec);
    StreamOptions server_options = engine_.StreamToolOptions();
    server_options.log_file = engine_.seed_log();
    absl::StatusOr<std::unique_ptr<StreamProcess>> server = StreamProcess::Start(
        {t.mariadbd, "--no-defaults", "--datadir=" + engine_.new_dir(), "--skip-networking",
         "--socket=" + socket_, "--pid-file=" + pid_file_, "--skip-log-bin", "--skip-grant-tables",
         "--skip-slave-start", "--innodb-flush-log-at-trx-commit=2",
         "--max-allowed-packet=1G"},
        server_options);
    if (!server.ok()) return Context("starting the loading server", server.status());
    server_ = *std::move(server);
    MysqlLogin login;
    login.unix_socket = socket_;
    login.user = "root";
    const bool up = PollFor(
        [&] {
          if (MysqlClient::Connect(login, kConnectTimeout).ok()) return true;
          absl::StatusOr<int> exited = server_->Wait(std::chrono::milliseconds(0));
          return exited.ok();
        },
        std::chrono::seconds(engine_.config().timeout_seconds), std::chrono::milliseconds(25));
    if (!up || !MysqlClient::Connect(login, kConnectTimeout).ok()) {
      return absl::UnavailableError(absl::StrCat(
          "the loading server on ", engine_.new_dir(), " did not come up: ",
          OutputTail(ReadTail(engine_.seed_log(), 4000), 800)));
    }
    StreamOptions loader_options = engine_.StreamToolOptions();
    loader_options.pipe_stdin = true;
    loader_options.log_file = engine_.seed_log();
    absl::StatusOr<std::unique_ptr<StreamProcess>> loader = StreamProcess::Start(
        {t.client, "--no-defaults", "--socket=" + socket_, "--user=root", "--binary-mode",
         "--max-allowed-packet=1G"},
        loader_options);
    if (!loader.ok()) return Context("starting the loader", loader.status());
    loader_ = *std::move(loader);
    return absl::OkStatus();
  }

  absl::Status Feed(std::string_view chunk) override {
    sniffer_.Feed(chunk);
    absl::Status st = loader_->Write(chunk);
    if (!st.ok()) {
      return absl::InternalError(absl::StrCat("loading the dump failed: ", st.message(), "; ",
                                              OutputTail(ReadTail(engine_.seed_log(), 4000), 600)));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Finish() override {
    loader_->CloseStdin();
    absl::StatusOr<int> code = loader_->Wait(kCopyTimeout);
    if (!code.ok()) return code.status();
    if (*code != 0) {
      return absl::InternalError(
          absl::StrCat("loading the dump: mariadb exited with ", *code,
                       OutputReason(ReadTail(engine_.seed_log(), 4000), 800)));
    }
    MysqlLogin login;
    login.unix_socket = socket_;
    login.user = "root";
    absl::StatusOr<std::unique_ptr<MysqlClient>> c = MysqlClient::Connect(login, kStatementTimeout);
    if (!c.ok()) return Context("stopping the loading server", c.status());
    absl::Status st = (*c)->Exec("stopping the loading server", "SHUTDOWN");
    if (!st.ok() && !absl::IsUnavailable(st)) return st;
    c->reset();
    absl::StatusOr<int> stopped = server_->Wait(std::chrono::minutes(10));
    if (!stopped.ok()) return Context("stopping the loading server", stopped.status());
    server_.reset();
    if (!sniffer_.gtid().has_value()) {
      return absl::FailedPreconditionError(
          "the dump carries no GTID position (mariadb-dump --gtid --master-data=2): is log_bin on "
          "on the master?");
    }
    return *sniffer_.gtid();
  }

 private:
  const MysqlEngine& engine_;
  const std::string socket_;
  const std::string pid_file_;
  std::unique_ptr<StreamProcess> server_;
  std::unique_ptr<StreamProcess> loader_;
  mysql::DumpGtidSniffer sniffer_;
};

// ------------------------------------------------------------------ Bootstrap

mysql::SourceTls MysqlEngine::SourceTlsSettings(bool tls) {
  mysql::SourceTls out;
  out.enabled = tls;
  if (!tls) return out;
  auto literal = [&](const std::string& path) { return path.empty() ? std::string() : Lit(path); };
  out.ca_literal = literal(config_.tls_ca_file);
  out.cert_literal = literal(config_.tls_cert_file);
  out.key_literal = literal(config_.tls_key_file);
  return out;
}

absl::StatusOr<UpstreamInfo> MysqlEngine::CheckUpstream(const Peer& upstream,
                                                        const std::string& password, bool tls) {
  const std::string who =
      absl::StrCat("master ", upstream.id, " at ", upstream.host, ":", upstream.port);
  MysqlLogin login;
  login.host = upstream.host;
  login.port = upstream.port;
  login.user = config_.replication_user;
  login.password = password;
  login.tls = tls;
  if (tls) {
    login.tls_ca_file = config_.tls_ca_file;
    login.tls_cert_file = config_.tls_cert_file;
    login.tls_key_file = config_.tls_key_file;
  }
  absl::StatusOr<std::unique_ptr<MysqlClient>> c = MysqlClient::Connect(login, kConnectTimeout);
  std::fill(login.password.begin(), login.password.end(), '\0');
  if (!c.ok()) {
    return absl::UnavailableError(absl::StrCat(
        who, " does not accept this node's replication login", tls ? " over TLS" : "", " yet: ",
        c.status().message()));
  }
  Dialect d(mysql::ParseServerVersion((*c)->server_version()));
  absl::StatusOr<MysqlResult> r = (*c)->Query("reading the master's position", d.GtidStateSql());
  if (!r.ok() || r->rows.empty()) {
    return absl::UnavailableError(absl::StrCat(
        who, ": ", r.ok() ? std::string("no position returned") : std::string(r.status().message())));
  }
  UpstreamInfo out{r->rows[0][0].value_or(""), r->rows[0][1].value_or("")};
  absl::StatusOr<MysqlResult> ro = (*c)->Query("reading the master's read_only", d.ReadOnlySql());
  if (!ro.ok()) return absl::UnavailableError(absl::StrCat(who, ": ", ro.status().message()));
  out.read_only = ro->Get(0, "any_read_only") != "0";
  if (d.mariadb()) {
    // What the master has seen: its binary log and, for a master that was
    // seeded itself, the position it was seeded at.
    absl::StatusOr<mysql::GtidState> binlog = mysql::ParseGtidState(out.gtid_state);
    absl::StatusOr<mysql::GtidState> slave_pos = mysql::ParseGtidState(r->rows[0][2].value_or(""));
    if (binlog.ok() && slave_pos.ok()) {
      std::vector<std::string> merged;
      for (const auto& [key, seq] : mysql::MergeGtidStates(*binlog, *slave_pos)) {
        merged.push_back(absl::StrCat(key.first, "-", key.second, "-", seq));
      }
      out.gtid_state = absl::StrJoin(merged, ",");
    }
  }
  return out;
}

absl::Status MysqlEngine::CheckServerIds(const Peer& upstream, const UpstreamInfo& info) {
  absl::StatusOr<std::string> own = Value("reading server_id", "SELECT @@server_id");
  if (!own.ok()) return own.status();
  if (*own == info.server_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "this node and its master ", upstream.id, " both have server_id ", *own,
        ": give every node of the group its own server id (--server-id in engine.server_args, or "
        "server-id in the server's configuration)"));
  }
  return absl::OkStatus();
}

absl::Status MysqlEngine::FetchCopy(const Peer& self, const Peer& upstream,
                                    const ProgressFn& progress, std::string* gtid) {
  std::error_code ec;
  fs::remove_all(new_dir_, ec);  // our own leftover from an attempt cut short
  if (ec) return absl::InternalError(absl::StrCat("removing ", new_dir_, ": ", ec.message()));
  if (::mkdir(new_dir_.c_str(), 0750) != 0) {
    return absl::InternalError(absl::StrCat("mkdir ", new_dir_, ": ", std::strerror(errno)));
  }
  if (os_ids_.has_value() && ::chown(new_dir_.c_str(), os_ids_->uid, os_ids_->gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", new_dir_, ": ", std::strerror(errno)));
  }
  TANDEM_RETURN_IF_ERROR(WriteKeepingOwner(seed_log_, "", 0640));

  std::string header;
  std::unique_ptr<SeedConsumer> consumer;
  uint64_t done = 0;
  bool disk_checked = false;
  BackupSink sink = [&](std::string_view chunk, uint64_t total) -> absl::Status {
    if (!disk_checked && total > 0) {
      // Before the first byte lands: a copy that cannot fit must not fill
      // the disk the current data lives on.
      disk_checked = true;
      absl::StatusOr<uint64_t> free_bytes = FreeDiskBytes(parent_);
      if (!free_bytes.ok()) return free_bytes.status();
      if (*free_bytes < 2 * total) {
        return absl::FailedPreconditionError(absl::StrCat(
            "not enough free disk on ", parent_, ": ", HumanBytes(*free_bytes), " free, need ",
            HumanBytes(2 * total), " (twice the size of ", upstream.id, "'s backup, ",
            HumanBytes(total), ")"));
      }
    }
    done += chunk.size();
    absl::Status st;
    if (consumer == nullptr) {
      header.append(chunk.data(), chunk.size());
      absl::StatusOr<std::optional<std::pair<mysql::SeedFormat, size_t>>> parsed =
          mysql::ParseSeedStreamHeader(header);
      if (!parsed.ok()) return parsed.status();
      if (!parsed->has_value()) return absl::OkStatus();
      if ((*parsed)->first == mysql::SeedFormat::kXbstream) {
        auto c = std::make_unique<XbstreamConsumer>(*this);
        st = c->Start();
        consumer = std::move(c);
      } else {
        auto c = std::make_unique<SqlConsumer>(*this);
        st = c->Start();
        consumer = std::move(c);
      }
      if (st.ok()) st = consumer->Feed(std::string_view(header).substr((*parsed)->second));
      header.clear();
    } else {
      st = consumer->Feed(chunk);
    }
    if (st.ok() && progress) progress(done, std::max(done, total));
    return st;
  };
  absl::Status fetched = source_->Fetch(upstream, self.id, sink);
  if (fetched.ok() && consumer == nullptr) {
    fetched = absl::UnavailableError("the stream ended before its header");
  }
  absl::StatusOr<std::string> position = absl::UnknownError("not finished");
  if (fetched.ok()) position = consumer->Finish();
  consumer.reset();  // stops whatever tool is left
  if (!fetched.ok() || !position.ok()) {
    fs::remove_all(new_dir_, ec);
    absl::Status st = fetched.ok() ? position.status() : fetched;
    return Context("copying from " + upstream.id, st);
  }
  *gtid = *position;
  if (progress) progress(done, done);
  return absl::OkStatus();
}

absl::Status MysqlEngine::SwapIn() {
  TANDEM_RETURN_IF_ERROR(Context("stopping the server before the swap", Stop()));
  return SwapInDirectory(new_dir_, config_.data_dir, kMysqlOldDirInfix).status();
}

absl::Status MysqlEngine::FinishSeed(const Peer& self, const Peer& upstream,
                                     const std::string& gtid, const std::string& password) {
  const std::string what = "setting up replication from " + upstream.id;
  const bool tls = WantsTls(self, upstream);
  TANDEM_RETURN_IF_ERROR(Context("starting the seeded copy", Start()));
  absl::StatusOr<MysqlClient*> c = Connect();
  if (!c.ok()) return Context(what, c.status());
  absl::StatusOr<ReplicaStatus> rs = ReadReplicaStatus();
  if (!rs.ok()) return rs.status();
  const bool configured = rs->configured && rs->source.host == upstream.host &&
                          rs->source.port == upstream.port && rs->ssl == tls;
  if (!configured) {
    absl::StatusOr<UpstreamInfo> info = CheckUpstream(upstream, password, tls);
    if (!info.ok()) return info.status();
    TANDEM_RETURN_IF_ERROR(CheckServerIds(upstream, *info));
    if (rs->configured) {
      TANDEM_RETURN_IF_ERROR(Exec(what, dialect().StopReplica()));
      TANDEM_RETURN_IF_ERROR(Exec(what, dialect().ResetReplicaAll()));
    }
    // The position first, then the source: a copy whose source is set is
    // known to have its position too (a resumed attempt skips both).
    for (const std::string& sql : dialect().SeedPosition(Lit(gtid))) {
      TANDEM_RETURN_IF_ERROR(Exec(what, sql));
    }
    TANDEM_RETURN_IF_ERROR(Exec(what,
                            dialect().ChangeSource(Lit(upstream.host), upstream.port,
                                                   Lit(config_.replication_user),
                                                   Lit(password), SourceTlsSettings(tls)),
                            password));
  }
  TANDEM_RETURN_IF_ERROR(EnsureReadOnly(true));
  TANDEM_RETURN_IF_ERROR(Exec(what, dialect().StartReplica()));
  std::error_code ec;
  fs::remove(DataFile(kMysqlSeedMarkerFile), ec);
  if (ec) return absl::InternalError(absl::StrCat("removing the seed marker: ", ec.message()));
  FsyncDir(config_.data_dir);
  return absl::OkStatus();
}

absl::StatusOr<std::string> MysqlEngine::Bootstrap(const Peer& self, const Peer& upstream,
                                                   const ProgressFn& progress) {
  if (upstream.host.empty() || upstream.port == 0 || upstream.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("upstream ", upstream.id,
                                                   " has no usable host:port (\"", upstream.host,
                                                   ":", upstream.port, "\")"));
  }
  if (self.id.empty()) return absl::InvalidArgumentError("this node has an empty id");
  absl::StatusOr<std::string> password = ReplicationPassword();
  if (!password.ok()) return password.status();

  // An earlier attempt swapped its copy in and was cut short before the
  // replication was set up: finish it instead of copying again.
  absl::StatusOr<std::optional<mysql::SeedMarker>> marker = ReadSeedMarker(config_.data_dir);
  if (!marker.ok()) return marker.status();
  if (marker->has_value() && (*marker)->upstream_id == upstream.id) {
    TANDEM_RETURN_IF_ERROR(FinishSeed(self, upstream, (*marker)->gtid, *password));
    return std::string();
  }

  if (source_ == nullptr) {
    return absl::FailedPreconditionError(
        "this engine has no backup source (the agent gives it one): cannot seed a slave");
  }
  if (upstream.transfer_port == 0 || upstream.transfer_port > 65535) {
    return absl::UnavailableError(absl::StrCat(
        "master ", upstream.id, "'s agent has registered no transfer port: set transfer_listen "
        "in its agent.yaml (waiting for it)"));
  }
  // 1. Nothing local changes until the master is known to serve us.
  absl::StatusOr<UpstreamInfo> info = CheckUpstream(upstream, *password, WantsTls(self, upstream));
  if (!info.ok()) return info.status();
  if (Answers()) TANDEM_RETURN_IF_ERROR(CheckServerIds(upstream, *info));

  // 2. The copy, beside the data directory.
  std::string gtid;
  TANDEM_RETURN_IF_ERROR(FetchCopy(self, upstream, progress, &gtid));
  mysql::SeedMarker seed{upstream.id, {upstream.host, upstream.port}, gtid};
  TANDEM_RETURN_IF_ERROR(WriteKeepingOwner(absl::StrCat(new_dir_, "/", kMysqlSeedMarkerFile),
                                       mysql::FormatSeedMarker(seed), 0640));
  if (os_ids_.has_value()) TANDEM_RETURN_IF_ERROR(ChownTree(new_dir_, *os_ids_));
  TANDEM_RETURN_IF_ERROR(SyncFilesystem(new_dir_));

  // 3. Swap: the old data directory is moved aside, never deleted.
  TANDEM_RETURN_IF_ERROR(SwapIn());

  // 4. Replication from the copy's position.
  TANDEM_RETURN_IF_ERROR(FinishSeed(self, upstream, gtid, *password));
  return std::string();
}

// ------------------------------------------------------------------ Follow

absl::Status MysqlEngine::CheckNoErrant(const Peer& upstream, const UpstreamInfo& info) {
  // Errant transactions: what this node wrote itself (or got elsewhere)
  // and the new master lacks would make the two diverge silently.
  absl::StatusOr<MysqlResult> local = Query("reading this node's position", dialect().GtidStateSql());
  if (!local.ok()) return local.status();
  const std::string local_state = local->rows.empty() ? "" : local->rows[0][1].value_or("");
  std::vector<std::string> errant;
  if (dialect().mariadb()) {
    absl::StatusOr<mysql::GtidState> mine = mysql::ParseGtidState(local_state);
    absl::StatusOr<mysql::GtidState> theirs = mysql::ParseGtidState(info.gtid_state);
    if (!mine.ok()) return Context("reading this node's position", mine.status());
    if (!theirs.ok()) return Context("reading the master's position", theirs.status());
    errant = mysql::ErrantGtids(*mine, *theirs);
  } else {
    absl::StatusOr<std::string> missing =
        Value("computing errant transactions",
              absl::StrCat("SELECT GTID_SUBTRACT(", Lit(local_state), ", ", Lit(info.gtid_state),
                           ")"));
    if (!missing.ok()) return missing.status();
    if (!missing->empty()) errant.push_back(*missing);
  }
  if (!errant.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "refusing to replicate from ", upstream.id, ": this node has transactions that ",
        upstream.id, " does not have (errant GTIDs ", absl::StrJoin(errant, ", "),
        "; the master is at ", info.gtid_state.empty() ? "nothing" : info.gtid_state,
        "): they would diverge; rebuild this node from its master (tandemctl resync)"));
  }
  return absl::OkStatus();
}

absl::Status MysqlEngine::PointAt(const Peer& self, const Peer& upstream,
                                  const std::string& password, const UpstreamInfo& info) {
  const std::string what = "re-pointing replication to " + upstream.id;
  TANDEM_RETURN_IF_ERROR(CheckServerIds(upstream, info));
  TANDEM_RETURN_IF_ERROR(CheckNoErrant(upstream, info));
  TANDEM_RETURN_IF_ERROR(EnsureReadOnly(true));
  TANDEM_RETURN_IF_ERROR(Exec(what, dialect().StopReplica()));
  if (dialect().mariadb()) {
    // Replicate from after everything this node has: a demoted master's
    // own transactions are in its binary log only, a slave's in both (or in
    // gtid_slave_pos only, for a copy whose binary log starts empty).
    absl::StatusOr<MysqlResult> vars = Query("reading this node's position", dialect().ObserveSql());
    if (!vars.ok()) return vars.status();
    absl::StatusOr<mysql::GtidState> binlog = mysql::ParseGtidState(vars->Get(0, "gtid_binlog_pos"));
    absl::StatusOr<mysql::GtidState> applied = mysql::ParseGtidState(vars->Get(0, "gtid_slave_pos"));
    if (!binlog.ok()) return Context("reading this node's position", binlog.status());
    if (!applied.ok()) return Context("reading this node's position", applied.status());
    const std::string start = mysql::FormatGtidState(mysql::LatestPerDomain(*binlog, *applied));
    if (start != vars->Get(0, "gtid_slave_pos")) {
      for (const std::string& sql : dialect().SeedPosition(Lit(start))) {
        TANDEM_RETURN_IF_ERROR(Exec(what, sql));
      }
    }
  }
  const bool tls = WantsTls(self, upstream);
  TANDEM_RETURN_IF_ERROR(Exec(what,
                              dialect().ChangeSource(Lit(upstream.host), upstream.port,
                                                     Lit(config_.replication_user), Lit(password),
                                                     SourceTlsSettings(tls)),
                              password));
  return Exec(what, dialect().StartReplica());
}

absl::Status MysqlEngine::Follow(const Peer& self, const Peer& upstream) {
  if (upstream.host.empty() || upstream.port == 0 || upstream.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("upstream ", upstream.id, " has no usable host:port"));
  }
  absl::StatusOr<std::string> password = ReplicationPassword();
  if (!password.ok()) return password.status();
  TANDEM_RETURN_IF_ERROR(Start());  // read-only when it was down
  absl::StatusOr<std::optional<mysql::SeedMarker>> marker = ReadSeedMarker(config_.data_dir);
  if (!marker.ok()) return marker.status();
  if (marker->has_value()) return FinishSeed(self, upstream, (*marker)->gtid, *password);
  absl::StatusOr<ReplicaStatus> rs = ReadReplicaStatus();
  if (!rs.ok()) return rs.status();
  if (!rs->configured) {
    return absl::FailedPreconditionError(
        absl::StrCat("the server is not a slave (no replication configured): it becomes a slave of ",
                     upstream.id, " only through a bootstrap"));
  }
  const bool tls = WantsTls(self, upstream);
  if (rs->source.host != upstream.host || rs->source.port != upstream.port ||
      rs->user != config_.replication_user || rs->ssl != tls) {
    absl::StatusOr<UpstreamInfo> info = CheckUpstream(upstream, *password, tls);
    if (!info.ok()) return info.status();
    return PointAt(self, upstream, *password, *info);
  }
  TANDEM_RETURN_IF_ERROR(EnsureReadOnly(true));
  if (!rs->io_running || !rs->sql_running) {
    TANDEM_RETURN_IF_ERROR(Exec("starting replication from " + upstream.id, dialect().StartReplica()));
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------------ Rejoin

absl::Status MysqlEngine::AwaitCaughtUp(const Peer& upstream, const std::string& target) {
  absl::StatusOr<mysql::GtidState> wanted = mysql::ParseGtidState(target);
  const auto deadline = Clock::now() + std::chrono::seconds(config_.timeout_seconds);
  std::string last = "the slave threads have not started";
  for (;;) {
    absl::StatusOr<ReplicaStatus> rs = ReadReplicaStatus();
    if (!rs.ok()) return rs.status();
    mysql::ReplicationHealth health;
    health.sql_running = rs->sql_running;
    health.sql_errno = rs->sql_errno;
    health.sql_error = rs->sql_error;
    health.io_errno = rs->io_errno;
    health.io_error = rs->io_error;
    const std::string broken = mysql::OutOfSyncReason(health);
    if (!broken.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("replication from ", upstream.id, " fails: ", broken));
    }
    if (rs->io_running && rs->sql_running) {
      // MySQL's GTID sets are not MariaDB's: there, running threads suffice.
      if (!dialect().mariadb() || !wanted.ok()) return absl::OkStatus();
      absl::StatusOr<MysqlResult> vars = Query("reading the position", dialect().ObserveSql());
      if (!vars.ok()) return vars.status();
      mysql::GtidState local;
      for (const char* column : {"gtid_slave_pos", "gtid_binlog_pos"}) {
        absl::StatusOr<mysql::GtidState> part = mysql::ParseGtidState(vars->Get(0, column));
        if (part.ok()) local = mysql::MergeGtidStates(local, *part);
      }
      if (mysql::PositionReached(local, *wanted)) return absl::OkStatus();
      last = absl::StrCat("applied up to ", mysql::FormatGtidState(local), ", ", upstream.id,
                          " was at ", target);
    } else {
      last = absl::StrCat("IO thread ", rs->io_running ? "running" : "not running", ", SQL thread ",
                          rs->sql_running ? "running" : "not running",
                          rs->last_error.empty() ? "" : ": ", rs->last_error);
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::UnavailableError(absl::StrCat("replication from ", upstream.id,
                                             " has not caught up within ", config_.timeout_seconds,
                                             " s: ", last));
}

absl::StatusOr<std::string> MysqlEngine::Rejoin(const Peer& self, const Peer& upstream) {
  if (upstream.host.empty() || upstream.port == 0 || upstream.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("upstream ", upstream.id, " has no usable host:port"));
  }
  absl::StatusOr<std::string> password = ReplicationPassword();
  if (!password.ok()) return password.status();
  TANDEM_RETURN_IF_ERROR(Start());  // read-only when it was down
  absl::StatusOr<std::optional<mysql::SeedMarker>> marker = ReadSeedMarker(config_.data_dir);
  if (!marker.ok()) return marker.status();
  if (marker->has_value()) {
    if ((*marker)->upstream_id != upstream.id) {
      return absl::FailedPreconditionError(absl::StrCat(
          "this node holds a copy of ", (*marker)->upstream_id,
          " whose replication never started: it cannot rejoin ", upstream.id));
    }
    TANDEM_RETURN_IF_ERROR(FinishSeed(self, upstream, (*marker)->gtid, *password));
    return std::string();
  }
  absl::StatusOr<ReplicaStatus> rs = ReadReplicaStatus();
  if (!rs.ok()) return rs.status();
  absl::StatusOr<MysqlResult> ro = Query("reading read_only", dialect().ReadOnlySql());
  if (!ro.ok()) return ro.status();
  if (!rs->configured && ro->Get(0, "any_read_only") == "0") {
    return absl::FailedPreconditionError(
        "refusing to rejoin: the server is writable (it is fenced first)");
  }
  const bool tls = WantsTls(self, upstream);
  // The upstream must be the group's writable master: a promoted slave is
  // made writable only once it has replayed all its fenced master had, and
  // before that the fenced master's last transactions would look errant.
  absl::StatusOr<UpstreamInfo> info = absl::UnavailableError("not asked yet");
  const bool ready = PollFor(
      [&] {
        info = CheckUpstream(upstream, *password, tls);
        return info.ok() && !info->read_only;
      },
      std::chrono::seconds(config_.timeout_seconds), std::chrono::milliseconds(200));
  if (!ready) {
    if (!info.ok()) return info.status();
    return absl::UnavailableError(absl::StrCat(upstream.id, " is still read-only after ",
                                               config_.timeout_seconds,
                                               " s: it is not the writable master yet"));
  }
  const bool streaming = rs->configured && rs->source.host == upstream.host &&
                         rs->source.port == upstream.port && rs->user == config_.replication_user &&
                         rs->ssl == tls && rs->io_running && rs->sql_running &&
                         rs->sql_errno == 0 && rs->io_errno == 0;
  if (streaming) {
    TANDEM_RETURN_IF_ERROR(CheckNoErrant(upstream, *info));
    TANDEM_RETURN_IF_ERROR(EnsureReadOnly(true));
  } else {
    TANDEM_RETURN_IF_ERROR(PointAt(self, upstream, *password, *info));
  }
  TANDEM_RETURN_IF_ERROR(AwaitCaughtUp(upstream, info->gtid_state));
  return std::string();  // MySQL data sets carry no identity
}

// ------------------------------------------------------------------ MakeWritable

absl::Status MysqlEngine::MakeWritable() {
  TANDEM_RETURN_IF_ERROR(Start());
  std::error_code ec;
  if (fs::remove(DataFile(kMysqlSeedMarkerFile), ec)) FsyncDir(config_.data_dir);
  absl::StatusOr<ReplicaStatus> rs = ReadReplicaStatus();
  if (!rs.ok()) return rs.status();
  if (rs->configured) {
    const std::string what = "ending replication";
    if (rs->sql_running) {
      // What was received is applied before the node stands alone.
      TANDEM_RETURN_IF_ERROR(Exec(what, dialect().StopReplicaIo()));
      absl::StatusOr<ReplicaStatus> after = ReadReplicaStatus();
      if (!after.ok()) return after.status();
      if (!after->gtid_io_pos.empty() && after->sql_running) {
        absl::StatusOr<std::string> waited =
            Value("waiting for the received transactions to be applied",
                  dialect().WaitApplied(Lit(after->gtid_io_pos), config_.timeout_seconds));
        if (!waited.ok()) return waited.status();
        if (*waited != "0") {
          return absl::UnavailableError(absl::StrCat(
              "the slave has not applied what it received (up to ", after->gtid_io_pos,
              ") within ", config_.timeout_seconds, " s"));
        }
      }
    }
    TANDEM_RETURN_IF_ERROR(Exec(what, dialect().StopReplica()));
    TANDEM_RETURN_IF_ERROR(Exec(what, dialect().ResetReplicaAll()));
  }
  return EnsureReadOnly(false);
}

// ------------------------------------------------------------------ HasReplayed

absl::StatusOr<bool> MysqlEngine::HasReplayed(const std::string& position) {
  TANDEM_RETURN_IF_ERROR(RequireUp());
  if (!dialect().mariadb()) {
    absl::StatusOr<std::string> subset =
        Value("comparing positions", dialect().PositionReachedSql(Lit(position)));
    if (!subset.ok()) return subset.status();
    return *subset == "1";
  }
  absl::StatusOr<mysql::GtidState> target = mysql::ParseGtidState(position);
  if (!target.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("position \"", position, "\": ", target.status().message()));
  }
  absl::StatusOr<MysqlResult> vars = Query("reading the position", dialect().ObserveSql());
  if (!vars.ok()) return vars.status();
  mysql::GtidState local;
  for (const char* column : {"gtid_slave_pos", "gtid_binlog_pos"}) {
    absl::StatusOr<mysql::GtidState> part = mysql::ParseGtidState(vars->Get(0, column));
    if (!part.ok()) return Context("reading the position", part.status());
    local = mysql::MergeGtidStates(local, *part);
  }
  return mysql::PositionReached(local, *target);
}

}  // namespace

// ------------------------------------------------------------------ factory

absl::StatusOr<std::unique_ptr<Engine>> MakeMysqlEngine(const EngineConfig& config_in,
                                                        BackupSource* source) {
  EngineConfig config = config_in;
  auto invalid = [](std::string_view field, const std::string& why) {
    return InvalidEngineField(field, why);
  };
  absl::StatusOr<std::optional<UserIds>> checked = ValidateEngineConfig(&config, EngineType::kMysql);
  if (!checked.ok()) return checked.status();
  const std::optional<UserIds> os_ids = *checked;
  // Unix socket paths are limited to 107 bytes (the scratch server's is the
  // longest the engine makes).
  const std::string longest_socket = config.data_dir + ".tandem-load.sock";
  if (longest_socket.size() > 100) {
    return invalid("data_dir", absl::StrCat("path too long for the server's unix socket (",
                                            longest_socket, " would be ", longest_socket.size(),
                                            " bytes, at most 100)"));
  }
  if (!mysql::PlainIdentifier(config.replication_user, 32)) {
    return invalid("replication_user",
                   absl::StrCat("must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 32 "
                                "characters), got \"",
                                config.replication_user, "\""));
  }
  if (config.seed_method.empty()) config.seed_method = kDefaultSeedMethod;
  if (config.seed_method != "backup" && config.seed_method != "dump") {
    return invalid("seed_method",
                   absl::StrCat("must be backup or dump, got \"", config.seed_method, "\""));
  }
  const bool default_start = !CustomServerControl(config, ServerAction::kStart);
  if (config.os_user.empty() && ::geteuid() == 0 && default_start) {
    return invalid("os_user",
                   "must be set when the agent runs as root (mariadbd and its tools run as that "
                   "user, e.g. mysql)");
  }
  if (default_start) {
    static constexpr const char* kReserved[] = {
        "datadir", "port", "socket", "pid-file", "pid_file", "log-error", "log_error",
        "no-defaults", "defaults-file", "defaults-extra-file", "user"};
    for (const std::string& arg : config.server_args) {
      absl::string_view name = arg;
      if (!absl::ConsumePrefix(&name, "--")) continue;
      name = name.substr(0, name.find('='));
      for (const char* reserved : kReserved) {
        if (name == reserved) {
          return invalid("server_args",
                         absl::StrCat("--", reserved,
                                      " is set by the engine's start (from engine.data_dir, "
                                      "engine.port, engine.log_file, engine.os_user); remove it"));
        }
      }
    }
  }
  if (!config.bin_dir.empty() && !fs::is_directory(config.bin_dir)) {
    return invalid("bin_dir", absl::StrCat(config.bin_dir, " is not a directory"));
  }
  Tools tools;
  tools.mariadbd = FindTool(config.bin_dir, {"mariadbd", "mysqld"});
  tools.backup = FindTool(config.bin_dir, {"mariadb-backup", "mariabackup"});
  tools.mbstream = FindTool(config.bin_dir, {"mbstream"});
  tools.dump = FindTool(config.bin_dir, {"mariadb-dump", "mysqldump"});
  tools.client = FindTool(config.bin_dir, {"mariadb", "mysql"});
  tools.install_db = FindTool(config.bin_dir, {"mariadb-install-db", "mysql_install_db"});
  const std::string where = config.bin_dir.empty() ? "PATH, /usr/sbin or /usr/bin" : config.bin_dir;
  auto need = [&](const std::string& path, const char* name, const char* why) -> absl::Status {
    if (!path.empty()) return absl::OkStatus();
    return invalid("bin_dir", absl::StrCat("no ", name, " in ", where, " (needed ", why, ")"));
  };
  if (default_start) TANDEM_RETURN_IF_ERROR(need(tools.mariadbd, "mariadbd", "to start the server"));
  if (config.seed_method == "backup") {
    TANDEM_RETURN_IF_ERROR(need(tools.backup, "mariadb-backup", "by engine.seed_method backup"));
    TANDEM_RETURN_IF_ERROR(need(tools.mbstream, "mbstream", "by engine.seed_method backup"));
  } else {
    TANDEM_RETURN_IF_ERROR(need(tools.dump, "mariadb-dump", "by engine.seed_method dump"));
    TANDEM_RETURN_IF_ERROR(need(tools.client, "mariadb", "by engine.seed_method dump"));
    TANDEM_RETURN_IF_ERROR(need(tools.install_db, "mariadb-install-db", "by engine.seed_method dump"));
    TANDEM_RETURN_IF_ERROR(need(tools.mariadbd, "mariadbd", "by engine.seed_method dump"));
  }
  return std::unique_ptr<Engine>(new MysqlEngine(std::move(config), std::move(tools), os_ids, source));
}

}  // namespace tandem

// Pure helpers of the MySQL engine: no I/O, no server, deterministic (tested
// in mysql_text_test.cc).
//
// Dialect is the one place that knows where MySQL 8 differs from MariaDB
// (statement names, SHOW REPLICA STATUS columns, read-only variables, GTID
// positioning, password hashes); the engine builds every such statement
// through it. Only MariaDB (10.11) is tested; the MySQL branches follow the
// MySQL 8.0 manual.
#ifndef TANDEM_ENGINES_MYSQL_MYSQL_TEXT_H_
#define TANDEM_ENGINES_MYSQL_MYSQL_TEXT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engines/mysql/mysql_client.h"

namespace tandem::mysql {

// ------------------------------------------------------------------ flavour

enum class Flavor { kMariadb, kMysql };

struct ServerVersion {
  Flavor flavor = Flavor::kMariadb;
  int major = 0;
  int minor = 0;
  int patch = 0;

  bool AtLeast(int ma, int mi, int pa) const {
    return std::make_tuple(major, minor, patch) >= std::make_tuple(ma, mi, pa);
  }
};

// From SELECT VERSION(): "10.11.6-MariaDB-0+deb12u1-log" is MariaDB 10.11.6,
// "8.0.36" (or "8.0.36-0ubuntu0.22.04.1") is MySQL 8.0.36. A version
// without "MariaDB" is MySQL.
ServerVersion ParseServerVersion(std::string_view version);

// TLS of a slave's replication connection (see ReplicationTls in
// engines/engine_config.h). Literals are already quoted; "" = not set.
struct SourceTls {
  bool enabled = false;
  std::string ca_literal;    // the CA that signed the master's certificate
  std::string cert_literal;  // client certificate, for masters that ask for one
  std::string key_literal;
};

// Statements and names that differ between the flavours. Literals passed in
// are already quoted (MysqlClient::Quote).
class Dialect {
 public:
  explicit Dialect(ServerVersion version) : v_(version) {}

  Flavor flavor() const { return v_.flavor; }
  bool mariadb() const { return v_.flavor == Flavor::kMariadb; }
  // "MariaDB 10.11.6" / "MySQL 8.0.36".
  std::string Name() const;

  // One row with the columns server_id, log_bin, binlog_format,
  // gtid_binlog_pos, gtid_slave_pos, gtid_current_pos, read_only, datadir,
  // log_slave_updates, gtid_binlog_state (values 0/1 for booleans). MySQL has
  // one executed set: it fills the three positions and the state with it.
  std::string ObserveSql() const;
  // One row: server_id, the binary log state (MariaDB @@gtid_binlog_state,
  // MySQL @@gtid_executed) and the replicated position (MariaDB
  // @@gtid_slave_pos, MySQL ''), which errant transactions are computed from.
  std::string GtidStateSql() const;

  std::string ShowReplicaStatus() const;
  // The SHOW REPLICA STATUS column that MariaDB calls `mariadb_name`
  // (Slave_IO_Running -> Replica_IO_Running, Master_Host -> Source_Host,
  // Gtid_IO_Pos -> Retrieved_Gtid_Set on MySQL 8.0.22+).
  std::string Column(std::string_view mariadb_name) const;
  std::string StartReplica() const;
  std::string StopReplica() const;
  std::string StopReplicaIo() const;
  std::string ResetReplicaAll() const;
  // Replication from host:port with GTID positioning (MariaDB:
  // MASTER_USE_GTID=slave_pos; MySQL: SOURCE_AUTO_POSITION=1). TLS is always
  // stated, on or off (CHANGE MASTER keeps what is not stated): on, the
  // master's certificate is verified against the CA and must name the host.
  std::string ChangeSource(const std::string& host_literal, uint32_t port,
                           const std::string& user_literal,
                           const std::string& password_literal,
                           const SourceTls& tls = {}) const;
  // Statements that make a fresh copy start replicating after GTID
  // `gtid_literal` (MariaDB: gtid_slave_pos; MySQL: RESET MASTER +
  // gtid_purged).
  std::vector<std::string> SeedPosition(const std::string& gtid_literal) const;
  // SELECT returning 0 once every GTID of `gtid_literal` is applied, or
  // non-zero after `seconds`.
  std::string WaitApplied(const std::string& gtid_literal, int seconds) const;
  // read_only (MySQL: super_read_only too, which also binds SUPER accounts).
  std::vector<std::string> SetReadOnly(bool on) const;
  // One row: `fenced` 1 when SetReadOnly(true) holds, `any_read_only` 0 when
  // SetReadOnly(false) holds.
  std::string ReadOnlySql() const;

  // Accounts with a mysql_native_password hash ("*<40 hex>", see
  // NativePasswordHash); `hash_literal` empty: no password.
  std::string CreateUser(const std::string& account, const std::string& hash_literal) const;
  std::string SetPassword(const std::string& account, const std::string& hash_literal) const;

  // MySQL: one row, 1 when every GTID of `position_literal` is executed.
  std::string PositionReachedSql(const std::string& position_literal) const;

  // Whether a slave of this flavour can be seeded by the engine
  // (mariadb-backup / mariadb-dump are MariaDB tools).
  bool SupportsSeeding() const { return mariadb(); }

 private:
  ServerVersion v_;
};

// ------------------------------------------------------------------ GTIDs

// MariaDB GTID state: (domain, server_id) -> last sequence number, as
// @@gtid_binlog_state lists it ("0-1-10,0-2-3,1-1-5").
using GtidState = std::map<std::pair<uint32_t, uint32_t>, uint64_t>;

// InvalidArgument naming the bad element. "" is the empty state.
absl::StatusOr<GtidState> ParseGtidState(std::string_view text);

// Per (domain, server) the larger sequence number of the two: what a server
// has seen, from its binary log state and its replicated position (a seeded
// copy's binary log starts empty, its position holds the seed).
GtidState MergeGtidStates(const GtidState& a, const GtidState& b);

// The transactions of `local` that `upstream` does not have, one "D-S-N"
// per (domain, server) whose last sequence number in `local` is beyond what
// `upstream` has from that server (or that `upstream` never saw). Empty when
// `local` is contained in `upstream`. Sorted.
std::vector<std::string> ErrantGtids(const GtidState& local, const GtidState& upstream);

// One GTID per domain: of the two, the one with the higher sequence number
// (`a`'s on a tie). What a server that becomes a slave starts replicating
// after: its binary log position merged with its replicated position.
GtidState LatestPerDomain(const GtidState& a, const GtidState& b);

// "D-S-N,..." in (domain, server) order; "" for the empty state.
std::string FormatGtidState(const GtidState& state);

// Transactions a slave wrote itself after the last one it applied from its
// master (errant transactions), from its own state only: per domain, the
// last GTID of its binary log (`binlog_pos`) when it carries the slave's own
// `server_id` and is beyond the domain's GTID in `slave_pos` (or the domain
// is not in `slave_pos`). With GTID strict mode (and log_slave_updates) a
// local write on a slave always shows here until the next transaction of
// its master clashes with it. Sorted "D-S-N".
std::vector<std::string> LocalWrites(const GtidState& binlog_pos, const GtidState& slave_pos,
                                     uint32_t server_id);

// What SHOW SLAVE STATUS and the GTID positions say about a slave's ability
// to follow its master by itself.
struct ReplicationHealth {
  bool sql_running = false;
  int sql_errno = 0;
  std::string sql_error;
  int io_errno = 0;
  std::string io_error;
  std::vector<std::string> local_writes;  // LocalWrites
};

// Why the slave can no longer follow its master by itself (one line, at
// most about 400 characters), or "" when it can: transactions written on
// the slave itself, an SQL thread stopped by an error (a clash with such a
// write, a row missing, ...), an IO thread refused by the master with error
// 1236 (the master no longer has the binary logs or the GTIDs this slave
// needs). Connection errors of the IO thread are transient: not out of sync.
std::string OutOfSyncReason(const ReplicationHealth& health);

// Whether a server at `local` has applied everything up to `target` (a
// position as EngineFacts::position reports it): in each domain of
// `target`, `local` has reached at least its sequence number (GTID strict
// mode keeps sequence numbers growing within a domain).
bool PositionReached(const GtidState& local, const GtidState& target);

// ------------------------------------------------------------------ files

// The GTID of a mariadb-backup binlog info file (xtrabackup_binlog_info or
// mariadb_backup_binlog_info): "mysql-bin.000001\t1645\t0-1-7" -> "0-1-7";
// "" when the line has no GTID column; nullopt when the content is empty.
std::optional<std::string> GtidFromBinlogInfo(std::string_view content);

struct Endpoint {
  std::string host;
  uint32_t port = 0;

  bool operator==(const Endpoint&) const = default;
};

// The master host and port of a MariaDB master.info file (line 4 host,
// line 7 port); nullopt for an empty or unreadable one.
std::optional<Endpoint> ParseMasterInfo(std::string_view content);

// A copy seeded from `upstream_id` whose replication is not configured yet.
// Kept as a small file in the data directory between the swap and START
// SLAVE, so that an agent killed in between resumes instead of copying again.
struct SeedMarker {
  std::string upstream_id;
  Endpoint upstream;
  std::string gtid;  // where replication starts ("" = from the beginning)

  bool operator==(const SeedMarker&) const = default;
};
std::string FormatSeedMarker(const SeedMarker& marker);
absl::StatusOr<SeedMarker> ParseSeedMarker(std::string_view content);

// The record of the slaves a master serves: one "<id> <host>" per line.
using ServedSlaves = std::vector<std::pair<std::string, std::string>>;
std::string FormatServedSlaves(ServedSlaves slaves);  // sorted, deduplicated
ServedSlaves ParseServedSlaves(std::string_view content);

// ------------------------------------------------------------------ seed stream

// What a seed stream carries after its one-line header.
enum class SeedFormat {
  kXbstream,  // mariadb-backup --stream=xbstream (for mbstream -x)
  kSql,       // mariadb-dump output (for the mariadb client)
};
std::string_view SeedFormatName(SeedFormat format);
// "TANDEM-MYSQL-SEED 1 xbstream\n".
std::string SeedStreamHeader(SeedFormat format);
// Reads the header at the start of a stream. Returns the format and the
// header's length once `prefix` holds a whole line, nullopt while it holds
// only part of one (under 128 bytes); InvalidArgument when it is not a seed
// stream header.
absl::StatusOr<std::optional<std::pair<SeedFormat, size_t>>> ParseSeedStreamHeader(
    std::string_view prefix);

// Finds "-- SET GLOBAL gtid_slave_pos='<gtid>';" (what mariadb-dump --gtid
// --master-data=2 writes) in a dump fed chunk by chunk, whatever the chunk
// boundaries; keeps at most a short line prefix in memory.
class DumpGtidSniffer {
 public:
  void Feed(std::string_view chunk);
  // The GTID once its line was seen ("" is a valid empty position).
  const std::optional<std::string>& gtid() const { return gtid_; }

 private:
  void EndLine();
  std::string line_;          // the start of the current line (bounded)
  bool line_truncated_ = false;
  std::optional<std::string> gtid_;
};

// ------------------------------------------------------------------ misc

// Whether a file at the top of a data directory counts towards the data
// size (what a copy transfers): not binary or relay logs, not the redo log
// or temporary tablespace, not pid/socket/error files.
bool CountsAsData(std::string_view file_name);

// The mysql_native_password hash of `password`: "*" + upper-case hex of
// SHA1(SHA1(password)). Only this reaches the server, never the password.
std::string NativePasswordHash(std::string_view password);

// A host part of an account that needs no quoting trouble: letters, digits,
// '.', ':', '-', '_', '%' (1-255 characters).
bool ValidAccountHost(std::string_view host);
// [A-Za-z_][A-Za-z0-9_]*, 1..max_length characters.
bool PlainIdentifier(std::string_view text, size_t max_length);

// A client option file ([client] group) for the server tools, so that the
// password never goes on a command line: user, password, and host/port
// (protocol=tcp) or the socket.
std::string ClientDefaultsFile(const MysqlLogin& login);

}  // namespace tandem::mysql

#endif  // TANDEM_ENGINES_MYSQL_MYSQL_TEXT_H_

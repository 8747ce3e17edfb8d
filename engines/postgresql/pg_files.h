// The text the PostgreSQL engine reads and writes: slot names, connection
// strings, postgresql.auto.conf, the managed block of pg_hba.conf, .pgpass
// lines, and the output of pg_basebackup -P and pg_controldata.
//
// Pure functions: no I/O, deterministic; unit-tested in pg_files_test.cc.
#ifndef TANDEM_ENGINES_POSTGRESQL_PG_FILES_H_
#define TANDEM_ENGINES_POSTGRESQL_PG_FILES_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/types.h"

namespace tandem::pg {

// Replication slots the engine manages carry this prefix; others are left alone.
inline constexpr std::string_view kSlotPrefix = "tandem_";

// "tandem_" + the slave id lowercased, every character outside [a-z0-9_]
// replaced by '_'. Names longer than PostgreSQL's 63 bytes are cut and end
// with 8 hex digits of a hash of the id, so they stay distinct.
std::string SlotName(std::string_view slave_id);

// ---- libpq connection strings ("key=value key='quoted value'")

// `value` as a conninfo value: bare when it has no space, quote or
// backslash (and is not empty), else single-quoted with \' and \\.
std::string QuoteConninfoValue(std::string_view value);
// Parses a conninfo string; nullopt when it is malformed (unterminated quote,
// a key without '=').
std::optional<std::map<std::string, std::string>> ParseConninfo(std::string_view conninfo);
// "host:port" of a conninfo (port 5432 when absent); "" when it has no host.
std::string UpstreamFromConninfo(std::string_view conninfo);

// TLS settings of a replication connection (engine.tls_*): a slave with
// these verifies its master's certificate and that it names the host it
// connects to (sslmode=verify-full).
struct ConninfoTls {
  std::string ca_file;
  std::string cert_file;  // optional client certificate
  std::string key_file;
};

// libpq's TLS keywords for `tls` (sslmode, sslrootcert, sslcert, sslkey), in
// that order; empty for nullopt (libpq's defaults).
std::vector<std::pair<std::string, std::string>> TlsParams(const std::optional<ConninfoTls>& tls);

// primary_conninfo of a slave of `upstream`: host, port, user, passfile (only
// when `passfile` is not empty), application_name = `application_name`,
// then TlsParams(tls).
std::string PrimaryConninfo(const Peer& upstream, std::string_view user, std::string_view passfile,
                            std::string_view application_name,
                            const std::optional<ConninfoTls>& tls = std::nullopt);

// ---- postgresql.auto.conf / postgresql.conf syntax

// `value` quoted the way ALTER SYSTEM writes it: '...' with ' and \ doubled.
std::string QuoteConfValue(std::string_view value);
// The value of the last setting of `name` (case-insensitive) in a
// configuration file's text, unquoted; nullopt when it is not set.
std::optional<std::string> ConfValue(std::string_view text, std::string_view name);
// The text with every line setting one of the changed names removed and,
// for each change with a value, "name = 'value'" appended (in the order
// given). A change with nullopt only removes. Other lines stay as they are.
std::string UpdateConf(
    std::string_view text,
    const std::vector<std::pair<std::string, std::optional<std::string>>>& changes);

// ---- pg_hba.conf

inline constexpr std::string_view kHbaBegin =
    "# BEGIN tandem (managed by tandem-agent; do not edit)";
inline constexpr std::string_view kHbaEnd = "# END tandem";

// The pg_hba address of a slave host: an IPv4 address gets /32, an IPv6
// address /128, a host name stays as it is. InvalidArgument for an empty
// host or one with whitespace, quotes, '#' or ','.
absl::StatusOr<std::string> HbaAddress(std::string_view host);
// The managed block (with its BEGIN/END lines, ending in '\n') that lets
// `repl_user` replicate from each slave's address with a password
// (scram-sha-256; never trust), and connect to database postgres
// (pg_rewind), two lines per slave ending with "# tandem slave <id>":
// `hostssl` for a slave whose `tls` is set (its link must be TLS), `host`
// otherwise. "" for no slaves.
absl::StatusOr<std::string> HbaBlock(const std::vector<Peer>& slaves, const std::vector<bool>& tls,
                                     std::string_view repl_user);
// `hba` with every managed block removed and `block` put at the top (first
// match wins in pg_hba.conf, so the managed rules come before any reject).
std::string ReplaceHbaBlock(std::string_view hba, std::string_view block);
// Slave ids listed in the managed block(s) of `hba`, in file order, once each.
std::vector<std::string> HbaBlockSlaveIds(std::string_view hba);

// ---- other files and outputs

// A .pgpass line for `user` at `host`:`port` only (any database), with ':'
// and '\' escaped, ending in '\n': the password goes to that server alone.
std::string PgpassLine(std::string_view host, uint32_t port, std::string_view user,
                       std::string_view password);
// The last "done/total kB" progress of pg_basebackup -P output, in bytes.
std::optional<std::pair<uint64_t, uint64_t>> LastBasebackupProgress(std::string_view output);
// A field of pg_controldata output (run with LC_ALL=C), e.g.
// "Database system identifier"; nullopt when absent.
std::optional<std::string> ControldataField(std::string_view output, std::string_view field);
// Why a standby can no longer follow its master, from the tail of its
// server log (C locale messages): "" unless the last replication event is
// one of: a WAL segment the master already removed, a timeline fork (the
// master's timeline forked off before this server's recovery point, or is
// not in its history), another database system identifier, a standby ahead
// of its master. A server start ("entering standby mode") or a successful
// connection ("started streaming WAL") afterwards clears it.
std::string OutOfSyncFromLog(std::string_view log);

// pg_rewind --dry-run output: where the servers diverged ("0/3000060" and its
// timeline), or nullopt when it says no rewind is required (or says neither).
struct Divergence {
  std::string lsn;
  uint32_t timeline = 0;
};
std::optional<Divergence> RewindDivergence(std::string_view output);
// True when the output says the servers did not diverge.
bool RewindNotRequired(std::string_view output);
// How many transaction commits pg_waldump's output lists.
int CountCommits(std::string_view waldump_output);

// `arg` single-quoted for /bin/sh (pg_ctl -o runs the server through a shell).
std::string ShellQuote(std::string_view arg);

}  // namespace tandem::pg

#endif  // TANDEM_ENGINES_POSTGRESQL_PG_FILES_H_

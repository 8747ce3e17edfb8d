#include "engines/mysql/mysql_text.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tandem::mysql {
namespace {

absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

constexpr char kSeedHeaderMagic[] = "TANDEM-MYSQL-SEED";
constexpr size_t kMaxHeader = 128;
constexpr char kDumpGtidPrefix[] = "-- SET GLOBAL gtid_slave_pos='";
constexpr size_t kMaxSniffedLine = 512;

// Value of an option file entry, double-quoted with \\ and \" escaped.
std::string OptionValue(std::string_view value) {
  std::string out = "\"";
  for (char c : value) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace

// ------------------------------------------------------------------ flavour

ServerVersion ParseServerVersion(std::string_view version) {
  ServerVersion v;
  const absl::string_view text = AbslView(version);
  v.flavor = absl::StrContains(absl::AsciiStrToLower(text), "mariadb") ? Flavor::kMariadb
                                                                      : Flavor::kMysql;
  // MariaDB 10 once announced itself as "5.5.5-10.x.y-MariaDB" to old clients.
  absl::string_view numbers = text;
  absl::ConsumePrefix(&numbers, "5.5.5-");
  std::vector<absl::string_view> parts = absl::StrSplit(numbers, absl::MaxSplits('.', 2));
  auto leading_int = [](absl::string_view s) {
    int n = 0;
    size_t i = 0;
    while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) {
      n = n * 10 + (s[i] - '0');
      ++i;
    }
    return n;
  };
  if (parts.size() > 0) v.major = leading_int(parts[0]);
  if (parts.size() > 1) v.minor = leading_int(parts[1]);
  if (parts.size() > 2) v.patch = leading_int(parts[2]);
  return v;
}

std::string Dialect::Name() const {
  return absl::StrCat(mariadb() ? "MariaDB " : "MySQL ", v_.major, ".", v_.minor, ".", v_.patch);
}

std::string Dialect::ObserveSql() const {
  if (mariadb()) {
    return "SELECT @@server_id AS server_id, @@log_bin AS log_bin, "
           "@@binlog_format AS binlog_format, @@gtid_binlog_pos AS gtid_binlog_pos, "
           "@@gtid_slave_pos AS gtid_slave_pos, @@gtid_current_pos AS gtid_current_pos, "
           "@@read_only AS read_only, @@datadir AS datadir, "
           "@@log_slave_updates AS log_slave_updates, "
           "@@gtid_binlog_state AS gtid_binlog_state";
  }
  const char* updates =
      v_.AtLeast(8, 0, 26) ? "@@log_replica_updates" : "@@log_slave_updates";
  return absl::StrCat(
      "SELECT @@server_id AS server_id, @@log_bin AS log_bin, "
      "@@binlog_format AS binlog_format, @@gtid_executed AS gtid_binlog_pos, "
      "'' AS gtid_slave_pos, @@gtid_executed AS gtid_current_pos, "
      "(@@read_only OR @@super_read_only) AS read_only, @@datadir AS datadir, ",
      updates, " AS log_slave_updates, @@gtid_executed AS gtid_binlog_state");
}

std::string Dialect::GtidStateSql() const {
  return mariadb() ? "SELECT @@server_id, @@gtid_binlog_state, @@gtid_slave_pos"
                   : "SELECT @@server_id, @@gtid_executed, ''";
}

std::string Dialect::ShowReplicaStatus() const {
  if (mariadb()) return "SHOW SLAVE STATUS";
  return v_.AtLeast(8, 0, 22) ? "SHOW REPLICA STATUS" : "SHOW SLAVE STATUS";
}

std::string Dialect::Column(std::string_view mariadb_name) const {
  std::string name(mariadb_name);
  if (mariadb() || !v_.AtLeast(8, 0, 22)) return name;
  if (name == "Gtid_IO_Pos") return "Retrieved_Gtid_Set";
  for (auto [from, to] : {std::pair<std::string, std::string>{"Slave", "Replica"},
                          {"Master", "Source"}}) {
    size_t pos = 0;
    while ((pos = name.find(from, pos)) != std::string::npos) {
      name.replace(pos, from.size(), to);
      pos += to.size();
    }
  }
  return name;
}

std::string Dialect::StartReplica() const {
  return mariadb() || !v_.AtLeast(8, 0, 22) ? "START SLAVE" : "START REPLICA";
}
std::string Dialect::StopReplica() const {
  return mariadb() || !v_.AtLeast(8, 0, 22) ? "STOP SLAVE" : "STOP REPLICA";
}
std::string Dialect::StopReplicaIo() const { return StopReplica() + " IO_THREAD"; }
std::string Dialect::ResetReplicaAll() const {
  return mariadb() || !v_.AtLeast(8, 0, 22) ? "RESET SLAVE ALL" : "RESET REPLICA ALL";
}

std::string Dialect::ChangeSource(const std::string& host_literal, uint32_t port,
                                  const std::string& user_literal,
                                  const std::string& password_literal,
                                  const SourceTls& tls) const {
  const bool source_names = !mariadb() && v_.AtLeast(8, 0, 23);
  const char* p = source_names ? "SOURCE_" : "MASTER_";
  std::string ssl;
  if (tls.enabled) {
    ssl = absl::StrCat(", ", p, "SSL=1, ", p, "SSL_CA=", tls.ca_literal.empty() ? "''" : tls.ca_literal,
                       ", ", p, "SSL_VERIFY_SERVER_CERT=1");
    absl::StrAppend(&ssl, ", ", p, "SSL_CERT=", tls.cert_literal.empty() ? "''" : tls.cert_literal,
                    ", ", p, "SSL_KEY=", tls.key_literal.empty() ? "''" : tls.key_literal);
  } else {
    ssl = absl::StrCat(", ", p, "SSL=0, ", p, "SSL_VERIFY_SERVER_CERT=0");
  }
  if (mariadb()) {
    return absl::StrCat("CHANGE MASTER TO MASTER_HOST=", host_literal, ", MASTER_PORT=", port,
                        ", MASTER_USER=", user_literal, ", MASTER_PASSWORD=", password_literal,
                        ", MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1", ssl);
  }
  if (source_names) {
    return absl::StrCat("CHANGE REPLICATION SOURCE TO SOURCE_HOST=", host_literal,
                        ", SOURCE_PORT=", port, ", SOURCE_USER=", user_literal,
                        ", SOURCE_PASSWORD=", password_literal,
                        ", SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, GET_SOURCE_PUBLIC_KEY=1",
                        ssl);
  }
  return absl::StrCat("CHANGE MASTER TO MASTER_HOST=", host_literal, ", MASTER_PORT=", port,
                      ", MASTER_USER=", user_literal, ", MASTER_PASSWORD=", password_literal,
                      ", MASTER_AUTO_POSITION=1, MASTER_CONNECT_RETRY=1", ssl);
}

std::vector<std::string> Dialect::SeedPosition(const std::string& gtid_literal) const {
  if (mariadb()) return {absl::StrCat("SET GLOBAL gtid_slave_pos = ", gtid_literal)};
  return {"RESET MASTER", absl::StrCat("SET GLOBAL gtid_purged = ", gtid_literal)};
}

std::string Dialect::WaitApplied(const std::string& gtid_literal, int seconds) const {
  if (mariadb()) return absl::StrCat("SELECT MASTER_GTID_WAIT(", gtid_literal, ", ", seconds, ")");
  return absl::StrCat("SELECT WAIT_FOR_EXECUTED_GTID_SET(", gtid_literal, ", ", seconds, ")");
}

std::vector<std::string> Dialect::SetReadOnly(bool on) const {
  if (mariadb()) return {on ? "SET GLOBAL read_only = ON" : "SET GLOBAL read_only = OFF"};
  if (on) return {"SET GLOBAL super_read_only = ON"};
  return {"SET GLOBAL super_read_only = OFF", "SET GLOBAL read_only = OFF"};
}

std::string Dialect::PositionReachedSql(const std::string& position_literal) const {
  return absl::StrCat("SELECT GTID_SUBSET(", position_literal, ", @@GLOBAL.gtid_executed)");
}

std::string Dialect::ReadOnlySql() const {
  if (mariadb()) return "SELECT @@global.read_only AS fenced, @@global.read_only AS any_read_only";
  return "SELECT @@global.super_read_only AS fenced, "
         "(@@global.read_only OR @@global.super_read_only) AS any_read_only";
}

std::string Dialect::CreateUser(const std::string& account,
                                const std::string& hash_literal) const {
  if (hash_literal.empty()) return absl::StrCat("CREATE USER ", account);
  if (mariadb()) return absl::StrCat("CREATE USER ", account, " IDENTIFIED BY PASSWORD ", hash_literal);
  return absl::StrCat("CREATE USER ", account, " IDENTIFIED WITH mysql_native_password AS ",
                      hash_literal);
}

std::string Dialect::SetPassword(const std::string& account,
                                 const std::string& hash_literal) const {
  if (hash_literal.empty()) return absl::StrCat("ALTER USER ", account, " IDENTIFIED BY ''");
  if (mariadb()) return absl::StrCat("ALTER USER ", account, " IDENTIFIED BY PASSWORD ", hash_literal);
  return absl::StrCat("ALTER USER ", account, " IDENTIFIED WITH mysql_native_password AS ",
                      hash_literal);
}

// ------------------------------------------------------------------ GTIDs

absl::StatusOr<GtidState> ParseGtidState(std::string_view text) {
  GtidState state;
  for (absl::string_view item : absl::StrSplit(AbslView(text), ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    std::vector<absl::string_view> parts = absl::StrSplit(item, '-');
    uint32_t domain = 0;
    uint32_t server = 0;
    uint64_t seq = 0;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &domain) ||
        !absl::SimpleAtoi(parts[1], &server) || !absl::SimpleAtoi(parts[2], &seq)) {
      return absl::InvalidArgumentError(
          absl::StrCat("not a MariaDB GTID (domain-server-sequence): \"", item, "\""));
    }
    uint64_t& slot = state[{domain, server}];
    slot = std::max(slot, seq);
  }
  return state;
}

GtidState MergeGtidStates(const GtidState& a, const GtidState& b) {
  GtidState out = a;
  for (const auto& [key, seq] : b) out[key] = std::max(out[key], seq);
  return out;
}

std::vector<std::string> ErrantGtids(const GtidState& local, const GtidState& upstream) {
  std::vector<std::string> errant;
  for (const auto& [key, seq] : local) {
    auto it = upstream.find(key);
    if (it == upstream.end() || it->second < seq) {
      errant.push_back(absl::StrCat(key.first, "-", key.second, "-", seq));
    }
  }
  std::sort(errant.begin(), errant.end());
  return errant;
}

GtidState LatestPerDomain(const GtidState& a, const GtidState& b) {
  std::map<uint32_t, std::pair<uint32_t, uint64_t>> latest;  // domain -> (server, seq)
  for (const GtidState* state : {&b, &a}) {  // a last: it wins ties
    for (const auto& [key, seq] : *state) {
      auto it = latest.find(key.first);
      if (it == latest.end() || seq >= it->second.second) latest[key.first] = {key.second, seq};
    }
  }
  GtidState out;
  for (const auto& [domain, last] : latest) out[{domain, last.first}] = last.second;
  return out;
}

std::string FormatGtidState(const GtidState& state) {
  std::vector<std::string> parts;
  for (const auto& [key, seq] : state) parts.push_back(absl::StrCat(key.first, "-", key.second, "-", seq));
  return absl::StrJoin(parts, ",");
}

std::vector<std::string> LocalWrites(const GtidState& binlog_pos, const GtidState& slave_pos,
                                     uint32_t server_id) {
  std::map<uint32_t, uint64_t> applied;  // domain -> sequence number
  for (const auto& [key, seq] : slave_pos) applied[key.first] = std::max(applied[key.first], seq);
  std::vector<std::string> out;
  for (const auto& [key, seq] : LatestPerDomain(binlog_pos, {})) {
    if (key.second != server_id) continue;
    auto it = applied.find(key.first);
    if (it == applied.end() || it->second < seq) {
      out.push_back(absl::StrCat(key.first, "-", key.second, "-", seq));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

// One line of at most `max` characters.
std::string OneLine(std::string_view text, size_t max) {
  std::string out;
  for (char c : text) out.push_back(c == '\n' || c == '\r' || c == '\t' ? ' ' : c);
  absl::string_view trimmed = absl::StripAsciiWhitespace(out);
  std::string result(trimmed);
  if (result.size() > max) result = result.substr(0, max - 3) + "...";
  return result;
}

}  // namespace

std::string OutOfSyncReason(const ReplicationHealth& health) {
  std::vector<std::string> reasons;
  if (!health.local_writes.empty()) {
    reasons.push_back(absl::StrCat("transactions written on this slave itself (errant GTIDs ",
                                   absl::StrJoin(health.local_writes, ","),
                                   ") that its master does not have"));
  }
  if (!health.sql_running && health.sql_errno != 0) {
    reasons.push_back(absl::StrCat("replication stopped on SQL error ", health.sql_errno, ": ",
                                   OneLine(health.sql_error, 200)));
  }
  // ER_MASTER_FATAL_ERROR_READING_BINLOG: binary logs purged on the master,
  // a GTID the master does not have, ... Retrying cannot help.
  if (health.io_errno == 1236) {
    reasons.push_back(absl::StrCat("the master cannot send what this slave needs (error 1236: ",
                                   OneLine(health.io_error, 200), ")"));
  }
  return absl::StrJoin(reasons, "; ");
}

bool PositionReached(const GtidState& local, const GtidState& target) {
  std::map<uint32_t, uint64_t> reached;  // domain -> highest sequence number
  for (const auto& [key, seq] : local) reached[key.first] = std::max(reached[key.first], seq);
  for (const auto& [key, seq] : target) {
    auto it = reached.find(key.first);
    if (it == reached.end() || it->second < seq) return false;
  }
  return true;
}

// ------------------------------------------------------------------ files

std::optional<std::string> GtidFromBinlogInfo(std::string_view content) {
  absl::string_view line = absl::StripAsciiWhitespace(AbslView(content));
  line = line.substr(0, line.find('\n'));
  if (line.empty()) return std::nullopt;
  std::vector<absl::string_view> fields =
      absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (fields.size() < 3) return std::string();
  return std::string(fields[2]);
}

std::optional<Endpoint> ParseMasterInfo(std::string_view content) {
  std::vector<absl::string_view> lines = absl::StrSplit(AbslView(content), '\n');
  if (lines.size() < 7) return std::nullopt;
  Endpoint e;
  e.host = std::string(absl::StripAsciiWhitespace(lines[3]));
  if (e.host.empty() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(lines[6]), &e.port)) {
    return std::nullopt;
  }
  return e;
}

std::string FormatSeedMarker(const SeedMarker& marker) {
  return absl::StrCat("upstream_id=", marker.upstream_id, "\nhost=", marker.upstream.host,
                      "\nport=", marker.upstream.port, "\ngtid=", marker.gtid, "\n");
}

absl::StatusOr<SeedMarker> ParseSeedMarker(std::string_view content) {
  SeedMarker marker;
  std::set<std::string> seen;
  for (absl::string_view line : absl::StrSplit(AbslView(content), '\n', absl::SkipEmpty())) {
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    std::string key(line.substr(0, eq));
    std::string value(line.substr(eq + 1));
    if (key == "upstream_id") {
      marker.upstream_id = value;
    } else if (key == "host") {
      marker.upstream.host = value;
    } else if (key == "port") {
      if (!absl::SimpleAtoi(value, &marker.upstream.port)) {
        return absl::InvalidArgumentError(absl::StrCat("seed marker: bad port \"", value, "\""));
      }
    } else if (key == "gtid") {
      marker.gtid = value;
    } else {
      continue;
    }
    seen.insert(key);
  }
  for (const char* key : {"upstream_id", "host", "port", "gtid"}) {
    if (seen.count(key) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("seed marker: no ", key, " line"));
    }
  }
  return marker;
}

std::string FormatServedSlaves(ServedSlaves slaves) {
  std::sort(slaves.begin(), slaves.end());
  slaves.erase(std::unique(slaves.begin(), slaves.end()), slaves.end());
  std::string out;
  for (const auto& [id, host] : slaves) absl::StrAppend(&out, id, " ", host, "\n");
  return out;
}

ServedSlaves ParseServedSlaves(std::string_view content) {
  ServedSlaves out;
  for (absl::string_view line : absl::StrSplit(AbslView(content), '\n', absl::SkipWhitespace())) {
    std::vector<absl::string_view> f =
        absl::StrSplit(absl::StripAsciiWhitespace(line), ' ', absl::SkipEmpty());
    if (f.size() == 2) out.emplace_back(std::string(f[0]), std::string(f[1]));
  }
  return out;
}

// ------------------------------------------------------------------ seed stream

std::string_view SeedFormatName(SeedFormat format) {
  return format == SeedFormat::kXbstream ? "xbstream" : "sql";
}

std::string SeedStreamHeader(SeedFormat format) {
  return absl::StrCat(kSeedHeaderMagic, " 1 ", AbslView(SeedFormatName(format)), "\n");
}

absl::StatusOr<std::optional<std::pair<SeedFormat, size_t>>> ParseSeedStreamHeader(
    std::string_view prefix) {
  const size_t nl = prefix.find('\n');
  const std::string_view magic = kSeedHeaderMagic;
  const std::string_view head = prefix.substr(0, std::min(prefix.size(), magic.size()));
  if (magic.substr(0, head.size()) != head) {
    return absl::InvalidArgumentError(
        "the upstream sent no MySQL seed stream header (is it another engine or an older agent?)");
  }
  if (nl == std::string_view::npos) {
    if (prefix.size() >= kMaxHeader) {
      return absl::InvalidArgumentError("the seed stream header line is too long");
    }
    return std::optional<std::pair<SeedFormat, size_t>>();
  }
  std::vector<absl::string_view> f =
      absl::StrSplit(AbslView(prefix.substr(0, nl)), ' ', absl::SkipEmpty());
  if (f.size() != 3 || f[0] != kSeedHeaderMagic || f[1] != "1") {
    return absl::InvalidArgumentError(absl::StrCat("unsupported seed stream header \"",
                                                   AbslView(prefix.substr(0, nl)), "\""));
  }
  if (f[2] == "xbstream") return std::make_optional(std::make_pair(SeedFormat::kXbstream, nl + 1));
  if (f[2] == "sql") return std::make_optional(std::make_pair(SeedFormat::kSql, nl + 1));
  return absl::InvalidArgumentError(absl::StrCat("unknown seed stream format \"", f[2], "\""));
}

void DumpGtidSniffer::Feed(std::string_view chunk) {
  while (!chunk.empty()) {
    const size_t nl = chunk.find('\n');
    const std::string_view piece = chunk.substr(0, nl);
    if (!line_truncated_) {
      const size_t room = kMaxSniffedLine - line_.size();
      if (piece.size() > room) {
        line_.append(piece.substr(0, room));
        line_truncated_ = true;
      } else {
        line_.append(piece);
      }
    }
    if (nl == std::string_view::npos) return;
    EndLine();
    chunk.remove_prefix(nl + 1);
  }
}

void DumpGtidSniffer::EndLine() {
  absl::string_view line = line_;
  if (absl::ConsumePrefix(&line, kDumpGtidPrefix)) {
    size_t quote = line.find('\'');
    if (quote != absl::string_view::npos) gtid_ = std::string(line.substr(0, quote));
  }
  line_.clear();
  line_truncated_ = false;
}

// ------------------------------------------------------------------ misc

bool CountsAsData(std::string_view file_name) {
  const absl::string_view name = AbslView(file_name);
  if (absl::StartsWith(name, "ib_logfile") || absl::StartsWith(name, "ibtmp")) return false;
  for (absl::string_view suffix : {".pid", ".sock", ".err", ".log", ".index", ".info"}) {
    if (absl::EndsWith(name, suffix) && name != "ddl_recovery.log") return false;
  }
  // Binary and relay logs: <base>-bin.000001, <host>-relay-bin.000002.
  size_t dot = name.rfind('.');
  if (dot != absl::string_view::npos && dot + 1 < name.size()) {
    absl::string_view ext = name.substr(dot + 1);
    bool digits = std::all_of(ext.begin(), ext.end(),
                              [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); });
    if (digits && absl::EndsWith(name.substr(0, dot), "-bin")) return false;
  }
  return true;
}

std::string NativePasswordHash(std::string_view password) {
  unsigned char once[SHA_DIGEST_LENGTH];
  unsigned char twice[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(password.data()), password.size(), once);
  SHA1(once, sizeof once, twice);
  static const char kHex[] = "0123456789ABCDEF";
  std::string out = "*";
  for (unsigned char b : twice) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  std::memset(once, 0, sizeof once);
  return out;
}

bool ValidAccountHost(std::string_view host) {
  if (host.empty() || host.size() > 255) return false;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == ':' ||
           c == '-' || c == '_' || c == '%';
  });
}

bool PlainIdentifier(std::string_view text, size_t max_length) {
  if (text.empty() || text.size() > max_length) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (!(absl::ascii_isalpha(c) || c == '_' || (i > 0 && absl::ascii_isdigit(c)))) return false;
  }
  return true;
}

std::string ClientDefaultsFile(const MysqlLogin& login) {
  std::string out = "[client]\n";
  absl::StrAppend(&out, "user=", OptionValue(login.user), "\n");
  if (!login.password.empty()) absl::StrAppend(&out, "password=", OptionValue(login.password), "\n");
  if (!login.unix_socket.empty()) {
    absl::StrAppend(&out, "socket=", OptionValue(login.unix_socket), "\nprotocol=socket\n");
  } else {
    absl::StrAppend(&out, "host=", OptionValue(login.host), "\nport=", login.port,
                    "\nprotocol=tcp\n");
  }
  return out;
}

}  // namespace tandem::mysql

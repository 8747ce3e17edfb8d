#include "engines/postgresql/pg_files.h"

#include <arpa/inet.h>

#include <algorithm>

#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/numbers.h"

namespace tandem::pg {
namespace {

constexpr size_t kMaxIdentifier = 63;  // NAMEDATALEN - 1

// Debian's Abseil does not take std::string_view in StrCat.
absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

uint32_t Fnv1a(std::string_view s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f'; }

std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  for (;;) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) {
      lines.push_back(text.substr(start));
      return lines;
    }
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
}

std::string_view Trim(std::string_view s) {
  size_t b = 0;
  while (b < s.size() && IsSpace(s[b])) ++b;
  size_t e = s.size();
  while (e > b && IsSpace(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// One "name [=] value" line of a configuration file; nullopt for blank and
// comment lines and for lines that do not parse.
std::optional<std::pair<std::string, std::string>> ParseConfLine(std::string_view line) {
  size_t i = 0;
  while (i < line.size() && IsSpace(line[i])) ++i;
  if (i == line.size() || line[i] == '#') return std::nullopt;
  size_t name_start = i;
  while (i < line.size() && !IsSpace(line[i]) && line[i] != '=') ++i;
  std::string name(line.substr(name_start, i - name_start));
  while (i < line.size() && IsSpace(line[i])) ++i;
  if (i < line.size() && line[i] == '=') ++i;
  while (i < line.size() && IsSpace(line[i])) ++i;
  std::string value;
  if (i < line.size() && line[i] == '\'') {
    ++i;
    bool closed = false;
    while (i < line.size()) {
      char c = line[i];
      if (c == '\\' && i + 1 < line.size()) {
        char n = line[i + 1];
        switch (n) {
          case 'n': value += '\n'; break;
          case 't': value += '\t'; break;
          case 'r': value += '\r'; break;
          case 'b': value += '\b'; break;
          case 'f': value += '\f'; break;
          default: value += n; break;
        }
        i += 2;
      } else if (c == '\'' && i + 1 < line.size() && line[i + 1] == '\'') {
        value += '\'';
        i += 2;
      } else if (c == '\'') {
        closed = true;
        ++i;
        break;
      } else {
        value += c;
        ++i;
      }
    }
    if (!closed) return std::nullopt;
  } else {
    size_t start = i;
    while (i < line.size() && !IsSpace(line[i]) && line[i] != '#') ++i;
    value = std::string(line.substr(start, i - start));
  }
  if (name.empty()) return std::nullopt;
  return std::make_pair(Lower(name), value);
}

}  // namespace

std::string SlotName(std::string_view slave_id) {
  std::string name(kSlotPrefix);
  for (char c : slave_id) {
    char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool ok = (l >= 'a' && l <= 'z') || (l >= '0' && l <= '9') || l == '_';
    name += ok ? l : '_';
  }
  if (name.size() > kMaxIdentifier) {
    name = absl::StrCat(name.substr(0, kMaxIdentifier - 9), "_",
                        absl::StrFormat("%08x", Fnv1a(slave_id)));
  }
  return name;
}

std::string QuoteConninfoValue(std::string_view value) {
  bool bare = !value.empty();
  for (char c : value) {
    if (IsSpace(c) || c == '\'' || c == '\\') bare = false;
  }
  if (bare) return std::string(value);
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}

std::optional<std::map<std::string, std::string>> ParseConninfo(std::string_view conninfo) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  const size_t n = conninfo.size();
  for (;;) {
    while (i < n && IsSpace(conninfo[i])) ++i;
    if (i == n) break;
    size_t key_start = i;
    while (i < n && !IsSpace(conninfo[i]) && conninfo[i] != '=') ++i;
    std::string key(conninfo.substr(key_start, i - key_start));
    while (i < n && IsSpace(conninfo[i])) ++i;
    if (i == n || conninfo[i] != '=' || key.empty()) return std::nullopt;
    ++i;
    while (i < n && IsSpace(conninfo[i])) ++i;
    std::string value;
    if (i < n && conninfo[i] == '\'') {
      ++i;
      bool closed = false;
      while (i < n) {
        if (conninfo[i] == '\\' && i + 1 < n) {
          value += conninfo[i + 1];
          i += 2;
        } else if (conninfo[i] == '\'') {
          closed = true;
          ++i;
          break;
        } else {
          value += conninfo[i++];
        }
      }
      if (!closed) return std::nullopt;
    } else {
      while (i < n && !IsSpace(conninfo[i])) {
        if (conninfo[i] == '\\' && i + 1 < n) {
          value += conninfo[i + 1];
          i += 2;
        } else {
          value += conninfo[i++];
        }
      }
    }
    out[key] = value;
  }
  return out;
}

std::string UpstreamFromConninfo(std::string_view conninfo) {
  std::optional<std::map<std::string, std::string>> kv = ParseConninfo(conninfo);
  if (!kv.has_value()) return "";
  auto host = kv->find("host");
  if (host == kv->end() || host->second.empty()) {
    host = kv->find("hostaddr");
    if (host == kv->end() || host->second.empty()) return "";
  }
  auto port = kv->find("port");
  std::string p = (port == kv->end() || port->second.empty()) ? "5432" : port->second;
  return absl::StrCat(host->second, ":", p);
}

std::vector<std::pair<std::string, std::string>> TlsParams(const std::optional<ConninfoTls>& tls) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!tls.has_value()) return out;
  out.emplace_back("sslmode", "verify-full");
  out.emplace_back("sslrootcert", tls->ca_file);
  if (!tls->cert_file.empty()) {
    out.emplace_back("sslcert", tls->cert_file);
    out.emplace_back("sslkey", tls->key_file);
  }
  return out;
}

std::string PrimaryConninfo(const Peer& upstream, std::string_view user, std::string_view passfile,
                            std::string_view application_name,
                            const std::optional<ConninfoTls>& tls) {
  std::string out = absl::StrCat("host=", QuoteConninfoValue(upstream.host),
                                 " port=", upstream.port, " user=", QuoteConninfoValue(user));
  if (!passfile.empty()) absl::StrAppend(&out, " passfile=", QuoteConninfoValue(passfile));
  absl::StrAppend(&out, " application_name=", QuoteConninfoValue(application_name));
  for (const auto& [key, value] : TlsParams(tls)) {
    absl::StrAppend(&out, " ", key, "=", QuoteConninfoValue(value));
  }
  return out;
}

std::string QuoteConfValue(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') {
      out += "''";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

std::optional<std::string> ConfValue(std::string_view text, std::string_view name) {
  const std::string wanted = Lower(name);
  std::optional<std::string> value;
  for (std::string_view line : Lines(text)) {
    auto kv = ParseConfLine(line);
    if (kv.has_value() && kv->first == wanted) value = kv->second;
  }
  return value;
}

std::string UpdateConf(
    std::string_view text,
    const std::vector<std::pair<std::string, std::optional<std::string>>>& changes) {
  std::set<std::string> names;
  for (const auto& [name, value] : changes) names.insert(Lower(name));
  std::string out;
  std::vector<std::string_view> lines = Lines(text);
  // A trailing '\n' yields an empty last element: not a line of its own.
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  for (std::string_view line : lines) {
    auto kv = ParseConfLine(line);
    if (kv.has_value() && names.count(kv->first) != 0) continue;
    absl::StrAppend(&out, AbslView(line), "\n");
  }
  for (const auto& [name, value] : changes) {
    if (value.has_value()) absl::StrAppend(&out, name, " = ", QuoteConfValue(*value), "\n");
  }
  return out;
}

absl::StatusOr<std::string> HbaAddress(std::string_view host) {
  if (host.empty()) return absl::InvalidArgumentError("slave host is empty");
  for (char c : host) {
    if (IsSpace(c) || c == '"' || c == '\'' || c == '#' || c == ',' ||
        !std::isprint(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrCat("slave host \"", std::string(host), "\" is not an address or host name"));
    }
  }
  std::string h(host);
  unsigned char buf[16];
  if (::inet_pton(AF_INET, h.c_str(), buf) == 1) return h + "/32";
  if (::inet_pton(AF_INET6, h.c_str(), buf) == 1) return h + "/128";
  return h;
}

absl::StatusOr<std::string> HbaBlock(const std::vector<Peer>& slaves, const std::vector<bool>& tls,
                                     std::string_view repl_user) {
  if (slaves.empty()) return std::string();
  std::string out = absl::StrCat(AbslView(kHbaBegin), "\n");
  for (size_t i = 0; i < slaves.size(); ++i) {
    const Peer& slave = slaves[i];
    const bool ssl = i < tls.size() && tls[i];
    absl::StatusOr<std::string> addr = HbaAddress(slave.host);
    if (!addr.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("slave ", slave.id, ": ", addr.status().message()));
    }
    std::string id = slave.id;
    for (char& c : id) {
      if (!std::isprint(static_cast<unsigned char>(c))) c = '_';
    }
    // Streaming, and pg_rewind's plain connection when the slave rejoins
    // after a switchover.
    for (std::string_view database : {"replication", "postgres"}) {
      absl::StrAppend(&out, ssl ? "hostssl " : "host ", AbslView(database), " ",
                      AbslView(repl_user), " ", *addr, " scram-sha-256  # tandem slave ", id, "\n");
    }
  }
  absl::StrAppend(&out, AbslView(kHbaEnd), "\n");
  return out;
}

std::string ReplaceHbaBlock(std::string_view hba, std::string_view block) {
  std::vector<std::string_view> lines = Lines(hba);
  const bool trailing_newline = !hba.empty() && hba.back() == '\n';
  if (trailing_newline) lines.pop_back();
  // Where each managed block ends (an unterminated BEGIN covers only the
  // tandem lines right after it: nobody else's rules are dropped).
  std::string rest;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (Trim(lines[i]) == kHbaBegin) {
      size_t end = i + 1;
      while (end < lines.size() && Trim(lines[end]) != kHbaEnd) ++end;
      if (end < lines.size()) {
        i = end;
        continue;
      }
      while (i + 1 < lines.size() &&
             lines[i + 1].find("# tandem slave ") != std::string_view::npos) {
        ++i;
      }
      continue;
    }
    absl::StrAppend(&rest, AbslView(lines[i]));
    if (i + 1 < lines.size() || trailing_newline) rest += '\n';
  }
  return absl::StrCat(AbslView(block), rest);
}

std::vector<std::string> HbaBlockSlaveIds(std::string_view hba) {
  std::vector<std::string> ids;
  bool inside = false;
  constexpr std::string_view kMarker = "# tandem slave ";
  for (std::string_view line : Lines(hba)) {
    std::string_view t = Trim(line);
    if (t == kHbaBegin) {
      inside = true;
      continue;
    }
    if (t == kHbaEnd) {
      inside = false;
      continue;
    }
    if (!inside) continue;
    size_t pos = t.find(kMarker);
    if (pos == std::string_view::npos) continue;
    std::string_view id = Trim(t.substr(pos + kMarker.size()));
    if (!id.empty() && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.emplace_back(id);
  }
  return ids;
}

std::string PgpassLine(std::string_view host, uint32_t port, std::string_view user,
                       std::string_view password) {
  auto escape = [](std::string_view s) {
    std::string out;
    for (char c : s) {
      if (c == ':' || c == '\\') out += '\\';
      out += c;
    }
    return out;
  };
  return absl::StrCat(escape(host), ":", port, ":*:", escape(user), ":", escape(password), "\n");
}

std::optional<std::pair<uint64_t, uint64_t>> LastBasebackupProgress(std::string_view output) {
  std::optional<std::pair<uint64_t, uint64_t>> last;
  std::string text(output);
  for (char& c : text) {
    if (c == '\r') c = '\n';
  }
  for (std::string_view line : Lines(text)) {
    std::string t(Trim(line));
    uint64_t done = 0;
    uint64_t total = 0;
    char unit[3] = {0};
    if (std::sscanf(t.c_str(), "%" SCNu64 "/%" SCNu64 " %2s", &done, &total, unit) == 3 &&
        std::string(unit) == "kB") {
      last = std::make_pair(done * 1024, total * 1024);
    }
  }
  return last;
}

std::optional<std::string> ControldataField(std::string_view output, std::string_view field) {
  for (std::string_view line : Lines(output)) {
    if (line.size() > field.size() && line.substr(0, field.size()) == field &&
        line[field.size()] == ':') {
      return std::string(Trim(line.substr(field.size() + 1)));
    }
  }
  return std::nullopt;
}

std::string OutOfSyncFromLog(std::string_view log) {
  // The message after the severity ("FATAL:  could not ..."), for the reason.
  auto message = [](std::string_view line) {
    for (std::string_view severity : {"FATAL:  ", "ERROR:  ", "LOG:  "}) {
      size_t pos = line.find(severity);
      if (pos != std::string_view::npos) return std::string(Trim(line.substr(pos + severity.size())));
    }
    return std::string(Trim(line));
  };
  std::string reason;
  for (std::string_view line : Lines(log)) {
    if (line.find("entering standby mode") != std::string_view::npos ||
        line.find("started streaming WAL") != std::string_view::npos) {
      reason.clear();
    } else if (line.find("has already been removed") != std::string_view::npos &&
               line.find("requested WAL segment") != std::string_view::npos) {
      reason = absl::StrCat("WAL it needs was already removed on the master: ", message(line));
    } else if (line.find("forked off current database system timeline") !=
                   std::string_view::npos ||
               line.find("is not in this server's history") != std::string_view::npos ||
               line.find("is not a child of this server's history") != std::string_view::npos ||
               (line.find("highest timeline") != std::string_view::npos &&
                line.find("is behind recovery timeline") != std::string_view::npos)) {
      reason = absl::StrCat("timeline fork: ", message(line));
    } else if (line.find("database system identifier differs") != std::string_view::npos) {
      reason = absl::StrCat("another database system: ", message(line));
    } else if (line.find("is ahead of the WAL flush position") != std::string_view::npos) {
      reason = absl::StrCat("ahead of its master: ", message(line));
    }
  }
  return reason;
}

std::optional<Divergence> RewindDivergence(std::string_view output) {
  constexpr std::string_view kMarker = "servers diverged at WAL location ";
  for (std::string_view line : Lines(output)) {
    size_t pos = line.find(kMarker);
    if (pos == std::string_view::npos) continue;
    const std::string_view rest = line.substr(pos + kMarker.size());
    std::vector<absl::string_view> words =
        absl::StrSplit(absl::string_view(rest.data(), rest.size()), ' ', absl::SkipEmpty());
    // "0/3000060 on timeline 1"
    uint32_t timeline = 0;
    if (words.size() >= 4 && words[1] == "on" && words[2] == "timeline" &&
        absl::SimpleAtoi(words[3], &timeline)) {
      return Divergence{std::string(words[0]), timeline};
    }
  }
  return std::nullopt;
}

bool RewindNotRequired(std::string_view output) {
  return output.find("no rewind required") != std::string_view::npos;
}

int CountCommits(std::string_view waldump_output) {
  int commits = 0;
  for (std::string_view line : Lines(waldump_output)) {
    if (line.find("rmgr: Transaction") != std::string_view::npos &&
        line.find("desc: COMMIT") != std::string_view::npos) {
      ++commits;
    }
  }
  return commits;
}

std::string ShellQuote(std::string_view arg) {
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

}  // namespace tandem::pg

#include "tandemctl/format.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/types.h"
#include "proto/convert.h"

namespace tandem::cli {
namespace {

using Json = nlohmann::ordered_json;

constexpr size_t kErrorCellChars = 40;

std::string RoleText(v1::Role role) { return std::string(RoleName(FromProto(role))); }
std::string EngineText(v1::EngineType engine) { return std::string(EngineName(FromProto(engine))); }
std::string OrDash(std::string text) { return text.empty() ? "-" : text; }
std::string YesNo(bool value) { return value ? "yes" : "no"; }

bool NeverReported(const v1::NodeStatus& node) { return node.seconds_since_report() < 0; }

// The OBSERVED cell: what the agent saw, or why there is nothing to show.
std::string ObservedCell(const v1::NodeStatus& node) {
  if (NeverReported(node)) return "-";
  if (!node.observed().engine_reachable()) return "unreachable";
  std::string role = RoleText(node.observed().role());
  return role.empty() ? "?" : role;
}

std::string PeerText(const v1::Peer& peer) {
  std::string text = peer.id();
  if (!peer.host().empty()) absl::StrAppend(&text, " at ", peer.host(), ":", peer.port());
  if (!peer.stack().empty()) absl::StrAppend(&text, " (stack ", peer.stack(), ")");
  return text;
}

// Lag for the status view: "1.5 KiB, 0.4s"; "-" when not a slave.
std::string LagText(const v1::ObservedState& observed) {
  if (observed.role() != v1::ROLE_SLAVE) return "-";
  std::string bytes = observed.lag_bytes() < 0
                          ? "unknown bytes"
                          : HumanBytes(static_cast<uint64_t>(observed.lag_bytes()));
  std::string seconds = observed.lag_seconds() < 0
                            ? "unknown seconds"
                            : absl::StrFormat("%.1fs", observed.lag_seconds());
  return absl::StrCat(bytes, ", ", seconds);
}

Json PeerJson(const v1::Peer& peer) {
  Json out{
      {"id", peer.id()}, {"stack", peer.stack()}, {"host", peer.host()}, {"port", peer.port()}};
  // A master's slave whose copy is under way.
  if (peer.bootstrapping()) out["bootstrapping"] = true;
  return out;
}

Json NodeJson(const v1::NodeStatus& node) {
  const v1::DesiredState& desired = node.desired();
  const v1::ObservedState& observed = node.observed();
  Json slaves = Json::array();
  for (const v1::Peer& slave : desired.slaves()) slaves.push_back(PeerJson(slave));
  Json env = Json::object();
  std::map<std::string, std::string> sorted(desired.env().begin(), desired.env().end());
  for (const auto& [key, value] : sorted) env[key] = value;
  Json out;
  out["id"] = node.info().id();
  out["stack"] = node.info().stack();
  out["engine"] = EngineText(node.info().engine());
  out["address_internal"] = node.info().address_internal();
  out["address_external"] = node.info().address_external();
  out["port"] = node.info().port();
  out["transfer_port"] = node.info().transfer_port();
  out["converged"] = node.converged();
  out["upstream_id"] = node.upstream_id();
  out["agent_connected"] = node.agent_connected();
  out["seconds_since_report"] =
      NeverReported(node) ? Json(nullptr) : Json(node.seconds_since_report());
  out["queued"] = node.queued();
  out["auto_resync"] = node.auto_resync();
  out["desired"] = Json{
      {"generation", desired.generation()},
      {"role", RoleText(desired.role())},
      {"upstream", desired.has_upstream() ? PeerJson(desired.upstream()) : Json(nullptr)},
      {"slaves", slaves},
      {"env", env},
      {"resync_token_present", !desired.resync_token().empty()},
      {"upstream_data_bytes", desired.upstream_data_bytes()},
  };
  out["observed"] = Json{
      {"engine_reachable", observed.engine_reachable()},
      {"role", RoleText(observed.role())},
      {"upstream", observed.upstream()},
      {"streaming", observed.streaming()},
      {"writable", observed.writable()},
      {"lag_bytes", observed.lag_bytes() < 0 ? Json(nullptr) : Json(observed.lag_bytes())},
      {"lag_seconds", observed.lag_seconds() < 0 ? Json(nullptr) : Json(observed.lag_seconds())},
      {"data_bytes", observed.data_bytes()},
      {"bootstrap", Json{{"done_bytes", observed.bootstrap().done_bytes()},
                         {"total_bytes", observed.bootstrap().total_bytes()}}},
      {"converged_generation", observed.converged_generation()},
      {"seen_generation", observed.seen_generation()},
      {"current_step", observed.current_step()},
      {"last_error", observed.last_error()},
      {"error_blocks", observed.error_blocks()},
      {"out_of_sync", observed.out_of_sync()},
  };
  return out;
}

// Messages come from other processes; never let them break the output
// (invalid UTF-8 is replaced rather than thrown on).
std::string Dump(const Json& json, int indent) {
  return json.dump(indent, ' ', false, Json::error_handler_t::replace);
}

bool IsShellName(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string ShellValue(std::string_view value) {
  constexpr std::string_view kSafe =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.,:/@%+=-";
  if (value.find_first_not_of(kSafe) == std::string_view::npos) return std::string(value);
  std::string quoted = "'";
  for (char c : value) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  quoted += "'";
  return quoted;
}

constexpr char kEventFormat[] = "%-20s  %-10s  %-7s  %-3s  %5s  %7s  %s";

}  // namespace

std::string RenderTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size(), 0);
  for (size_t c = 0; c < header.size(); ++c) widths[c] = header[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) {
      widths[c] = std::max(widths[c], row[c].size());
    }
  }
  std::string out;
  auto emit = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < widths.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      line += cell;
      if (c + 1 < widths.size()) line += std::string(widths[c] - cell.size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  };
  emit(header);
  for (const auto& row : rows) emit(row);
  return out;
}

std::string HumanBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes) / 1024.0;
  size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string CompactBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, "B");
  constexpr char kUnits[] = {'K', 'M', 'G', 'T', 'P', 'E'};
  double value = static_cast<double>(bytes) / 1024.0;
  size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  if (value < 10.0) return absl::StrFormat("%.1f%c", value, kUnits[unit]);
  return absl::StrFormat("%.0f%c", value, kUnits[unit]);
}

std::string CompactSeconds(double seconds) {
  if (seconds < 0 || !std::isfinite(seconds)) return "?";
  if (seconds == 0) return "0s";
  if (seconds < 10) return absl::StrFormat("%.1fs", seconds);
  auto whole = static_cast<int64_t>(seconds);
  if (whole < 60) return absl::StrCat(whole, "s");
  if (whole < 3600) return absl::StrFormat("%dm%02ds", whole / 60, whole % 60);
  return absl::StrFormat("%dh%02dm", whole / 3600, (whole % 3600) / 60);
}

std::string LagCell(const v1::ObservedState& observed) {
  if (observed.role() != v1::ROLE_SLAVE) return "-";
  bool bytes_known = observed.lag_bytes() >= 0;
  bool seconds_known = observed.lag_seconds() >= 0;
  if (!bytes_known && !seconds_known) return "?";
  return absl::StrCat(bytes_known ? CompactBytes(static_cast<uint64_t>(observed.lag_bytes())) : "?",
                      "/", seconds_known ? CompactSeconds(observed.lag_seconds()) : "?");
}

std::string OneLine(std::string_view text, size_t max_chars) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    bool space = c == '\n' || c == '\r' || c == '\t' || c == ' ';
    if (space) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (max_chars > 3 && out.size() > max_chars) {
    size_t cut = max_chars - 3;
    // Do not split a UTF-8 sequence.
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out.resize(cut);
    out += "...";
  }
  return out;
}

std::string Rfc3339Utc(double unix_time) {
  std::time_t seconds = static_cast<std::time_t>(std::floor(unix_time));
  std::tm tm{};
  if (gmtime_r(&seconds, &tm) == nullptr) return "?";
  return absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::string NodesTable(const v1::ListNodesResponse& nodes) {
  std::vector<std::vector<std::string>> rows;
  for (const v1::NodeStatus& node : nodes.nodes()) {
    rows.push_back({
        node.info().id(),
        OrDash(node.info().stack()),
        OrDash(EngineText(node.info().engine())),
        OrDash(RoleText(node.desired().role())),
        ObservedCell(node),
        OrDash(node.upstream_id()),
        NeverReported(node) ? "-" : LagCell(node.observed()),
        node.queued() ? std::string("queued") : YesNo(node.converged()),
        absl::StrCat(node.desired().generation(), "/", node.observed().converged_generation()),
        OrDash(OneLine(node.observed().last_error(), kErrorCellChars)),
    });
  }
  return RenderTable({"NODE", "STACK", "ENGINE", "DESIRED", "OBSERVED", "UPSTREAM", "LAG",
                      "CONVERGED", "GEN", "ERROR"},
                     rows);
}

std::string NodesJson(const v1::ListNodesResponse& nodes) {
  Json array = Json::array();
  for (const v1::NodeStatus& node : nodes.nodes()) array.push_back(NodeJson(node));
  return Dump(array, 2) + "\n";
}

std::string StatusText(const v1::NodeStatus& node) {
  std::vector<std::pair<std::string, std::string>> lines;
  auto add = [&](std::string key, std::string value) {
    lines.emplace_back(std::move(key), std::move(value));
  };
  const v1::NodeInfo& info = node.info();
  const v1::DesiredState& desired = node.desired();
  const v1::ObservedState& observed = node.observed();

  add("node", info.id());
  add("stack", OrDash(info.stack()));
  add("engine", OrDash(EngineText(info.engine())));
  std::string addresses = OrDash(info.address_internal());
  if (!info.address_internal().empty()) addresses += " (internal)";
  if (!info.address_external().empty()) {
    absl::StrAppend(&addresses, ", ", info.address_external(), " (external)");
  }
  if (info.port() != 0) absl::StrAppend(&addresses, ", port ", info.port());
  add("addresses", addresses);
  add("converged", YesNo(node.converged()));
  add("agent connected", YesNo(node.agent_connected()));
  add("last report",
      NeverReported(node) ? "never" : CompactSeconds(node.seconds_since_report()) + " ago");

  add("desired", "");
  add("  role", OrDash(RoleText(desired.role())));
  add("  upstream", desired.has_upstream() && !desired.upstream().id().empty()
                        ? PeerText(desired.upstream())
                        : OrDash(node.upstream_id()));
  std::vector<std::string> slaves;
  for (const v1::Peer& slave : desired.slaves()) slaves.push_back(slave.id());
  add("  slaves", OrDash(absl::StrJoin(slaves, ", ")));
  add("  generation", absl::StrCat(desired.generation()));
  add("  resync token", desired.resync_token().empty() ? "none" : "present");
  if (node.queued()) add("  queued", "yes, waiting for its turn to bootstrap");
  if (desired.role() != v1::ROLE_STANDALONE) {
    add("  auto resync", node.auto_resync() ? "on (group policy)" : "off (group policy)");
  }

  if (NeverReported(node)) {
    add("observed", "no report from the agent yet");
  } else {
    add("observed", "");
    add("  engine reachable", YesNo(observed.engine_reachable()));
    add("  role", OrDash(RoleText(observed.role())));
    add("  writable", YesNo(observed.writable()));
    add("  upstream", OrDash(observed.upstream()));
    add("  streaming", YesNo(observed.streaming()));
    add("  lag", LagText(observed));
    if (!observed.out_of_sync().empty()) add("  out of sync", OneLine(observed.out_of_sync()));
    add("  data size", HumanBytes(observed.data_bytes()));
    if (observed.bootstrap().total_bytes() > 0) {
      uint64_t done = observed.bootstrap().done_bytes();
      uint64_t total = observed.bootstrap().total_bytes();
      add("  bootstrap",
          absl::StrFormat("%d/%d bytes (%d%%)", done, total,
                          static_cast<int>(std::min<uint64_t>(done, total) * 100 / total)));
    }
    add("  seen generation", absl::StrCat(observed.seen_generation()));
    add("  converged generation", absl::StrCat(observed.converged_generation()));
    add("  current step", OrDash(OneLine(observed.current_step())));
    std::string error = OneLine(observed.last_error());
    if (!error.empty()) {
      error += observed.error_blocks() ? " (needs an operator)" : " (transient, retrying)";
    }
    add("  last error", OrDash(error));
  }

  size_t width = 0;
  for (const auto& [key, value] : lines) width = std::max(width, key.size() + 1);
  std::string out;
  for (const auto& [key, value] : lines) {
    std::string line = key + ":";
    if (!value.empty()) {
      line += std::string(width - key.size() - 1 + 1, ' ');
      line += value;
    }
    out += line;
    out += '\n';
  }
  return out;
}

std::string StatusJson(const v1::NodeStatus& node) { return Dump(NodeJson(node), 2) + "\n"; }

absl::StatusOr<std::string> EnvText(const v1::NodeStatus& node) {
  std::map<std::string, std::string> sorted(node.desired().env().begin(),
                                            node.desired().env().end());
  std::string out;
  for (const auto& [key, value] : sorted) {
    if (!IsShellName(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the env of ", node.info().id(), " has a variable named '", OneLine(key),
                       "', which is not a valid shell variable name"));
    }
    absl::StrAppend(&out, key, "=", ShellValue(value), "\n");
  }
  return out;
}

std::string EnvJson(const v1::NodeStatus& node) {
  Json env = Json::object();
  std::map<std::string, std::string> sorted(node.desired().env().begin(),
                                            node.desired().env().end());
  for (const auto& [key, value] : sorted) env[key] = value;
  return Dump(env, 2) + "\n";
}

std::string ChangesText(const v1::ChangeResponse& response) {
  if (response.changes().empty()) return "nothing to change\n";
  std::string out;
  for (const std::string& line : response.changes()) absl::StrAppend(&out, OneLine(line), "\n");
  return out;
}

std::string ChangesJson(const v1::ChangeResponse& response) {
  Json changes = Json::array();
  for (const std::string& line : response.changes()) changes.push_back(line);
  return Dump(Json{{"changes", changes}}, 2) + "\n";
}

std::string EventsHeader() {
  return absl::StrFormat(kEventFormat, "TIME", "NODE", "KIND", "OK", "GEN", "SECONDS", "MESSAGE") +
         "\n";
}

std::string EventLine(const v1::Event& event) {
  bool step = event.kind() == "step";
  std::string line = absl::StrFormat(
      kEventFormat, Rfc3339Utc(event.unix_time()), OrDash(event.node()), OrDash(event.kind()),
      step ? YesNo(event.ok()) : "-", absl::StrCat(event.generation()),
      step ? absl::StrFormat("%.2f", event.seconds()) : "-", OneLine(event.message()));
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line + "\n";
}

std::string EventJsonLine(const v1::Event& event) {
  Json json{
      {"seq", event.seq()},
      {"time", Rfc3339Utc(event.unix_time())},
      {"unix_time", event.unix_time()},
      {"node", event.node()},
      {"kind", event.kind()},
      {"ok", event.ok()},
      {"generation", event.generation()},
      {"seconds", event.seconds()},
      {"message", event.message()},
  };
  return Dump(json, -1) + "\n";
}

}  // namespace tandem::cli

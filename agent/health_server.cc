#include "agent/health_server.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/executor.h"
#include "common/prometheus_text.h"
#include "nlohmann/json.hpp"

namespace tandem {
namespace {

std::string Str(std::string_view s) { return std::string(s); }

std::string RoleText(Role role) {
  return role == Role::kUnspecified ? std::string("none") : Str(RoleName(role));
}

std::string LagText(const ObservedState& o) {
  const std::string bytes = o.lag_bytes >= 0 ? HumanBytes(static_cast<uint64_t>(o.lag_bytes)) : "?";
  const std::string seconds = o.lag_seconds >= 0 ? absl::StrFormat("%.1f s", o.lag_seconds) : "?";
  return absl::StrCat("lag ", bytes, " / ", seconds);
}

HttpResponse Text(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

}  // namespace

bool Healthy(const HealthView& view) {
  return view.observed.engine_reachable &&
         !(view.observed.error_blocks && !view.observed.last_error.empty());
}

bool Converged(const HealthView& view) {
  const ObservedState& o = view.observed;
  return view.desired.generation != 0 && o.converged_generation == view.desired.generation &&
         o.last_error.empty() && o.current_step.empty();
}

bool Ready(const HealthView& view) { return Converged(view) && Healthy(view); }

absl::StatusOr<LagBound> ParseLagBound(std::string_view text) {
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "lag bound \"", Str(text), "\": want bytes (1048576) or a duration (5s, 250ms, 2m)"));
  };
  size_t digits = 0;
  while (digits < text.size() &&
         ((text[digits] >= '0' && text[digits] <= '9') || text[digits] == '.')) {
    ++digits;
  }
  if (digits == 0) return bad();
  const absl::string_view number(text.data(), digits);
  const std::string_view unit = text.substr(digits);
  LagBound bound;
  if (unit.empty()) {
    int64_t bytes = 0;
    if (!absl::SimpleAtoi(number, &bytes) || bytes < 0) return bad();
    bound.bytes = bytes;
    return bound;
  }
  double value = 0;
  if (!absl::SimpleAtod(number, &value) || !std::isfinite(value) || value < 0) return bad();
  if (unit == "s") {
    bound.seconds = value;
  } else if (unit == "ms") {
    bound.seconds = value / 1000;
  } else if (unit == "m") {
    bound.seconds = value * 60;
  } else {
    return bad();
  }
  return bound;
}

RoleAnswer CheckRole(const HealthView& view, Role role, const LagBound& bound) {
  const ObservedState& o = view.observed;
  auto no = [](std::string reason) { return RoleAnswer{false, absl::StrCat("no: ", reason)}; };
  if (!o.engine_reachable) return no("engine not reachable");
  if (!Healthy(view)) return no(absl::StrCat("blocked: ", o.last_error));
  if (o.role != role) return no(absl::StrCat("observed ", RoleText(o.role)));
  if (view.desired.role != role) {
    return no(absl::StrCat("desired ", RoleText(view.desired.role), " (generation ",
                           view.desired.generation, ")"));
  }
  if (role != Role::kSlave) {
    if (!o.writable) return no("not writable");
    return RoleAnswer{true, absl::StrCat("yes: ", RoleText(role), ", writable")};
  }
  if (!o.current_step.empty()) return no(absl::StrCat("step ", o.current_step, " running"));
  if (!o.streaming) return no(absl::StrCat("not streaming from ", o.upstream));
  if (bound.bytes && (o.lag_bytes < 0 || o.lag_bytes > *bound.bytes)) {
    return no(absl::StrCat(LagText(o), " exceeds ", *bound.bytes, " bytes"));
  }
  if (bound.seconds && (o.lag_seconds < 0 || o.lag_seconds > *bound.seconds)) {
    return no(absl::StrCat(LagText(o), " exceeds ", absl::StrFormat("%g", *bound.seconds), " s"));
  }
  return RoleAnswer{true, absl::StrCat("yes: slave of ", o.upstream, ", streaming, ", LagText(o))};
}

std::string StatusJson(const HealthView& view) {
  const ObservedState& o = view.observed;
  const DesiredState& d = view.desired;
  nlohmann::json upstream = nullptr;
  if (d.role == Role::kSlave) {
    upstream = {{"id", d.upstream.id}, {"host", d.upstream.host}, {"port", d.upstream.port}};
  }
  nlohmann::json slaves = nlohmann::json::array();
  for (const Peer& slave : d.slaves) slaves.push_back(slave.id);
  auto known = [](double v) { return v >= 0 ? nlohmann::json(v) : nlohmann::json(nullptr); };
  nlohmann::json doc = {
      {"node",
       {{"id", view.node.id},
        {"stack", view.node.stack},
        {"engine", Str(EngineName(view.node.engine))},
        {"port", view.node.port}}},
      {"healthy", Healthy(view)},
      {"ready", Ready(view)},
      {"converged", Converged(view)},
      {"controller_connected", view.controller_connected},
      {"desired",
       {{"generation", d.generation},
        {"role", Str(RoleName(d.role))},
        {"upstream", upstream},
        {"slaves", slaves}}},
      {"observed",
       {{"engine_reachable", o.engine_reachable},
        {"role", Str(RoleName(o.role))},
        {"upstream", o.upstream},
        {"streaming", o.streaming},
        {"writable", o.writable},
        {"lag_bytes", known(static_cast<double>(o.lag_bytes))},
        {"lag_seconds", known(o.lag_seconds)},
        {"data_bytes", o.data_bytes},
        {"converged_generation", o.converged_generation},
        {"seen_generation", o.seen_generation},
        {"out_of_sync", o.out_of_sync},
        {"hold_reason", o.hold_reason}}},
      {"current_step", o.current_step},
      {"bootstrap",
       {{"done_bytes", o.bootstrap.done_bytes}, {"total_bytes", o.bootstrap.total_bytes}}},
      {"last_error", o.last_error},
      {"error_blocks", o.error_blocks},
  };
  return doc.dump(2) + "\n";
}

std::string StatusLine(const HealthView& view) {
  const ObservedState& o = view.observed;
  const DesiredState& d = view.desired;
  if (d.generation == 0) return "waiting for a desired state from the controller";
  std::string line;
  if (!o.engine_reachable) line = "engine not reachable; ";
  std::string observed = RoleText(o.role);
  if (o.role == Role::kSlave && !o.upstream.empty()) absl::StrAppend(&observed, " of ", o.upstream);
  if (!o.current_step.empty()) {
    absl::StrAppend(&line, observed, " -> ", RoleText(d.role), " (generation ", d.generation,
                    "): ", o.current_step);
    if (o.bootstrap.total_bytes > 0 || o.bootstrap.done_bytes > 0) {
      absl::StrAppend(&line, " ", HumanBytes(o.bootstrap.done_bytes), " of ",
                      o.bootstrap.total_bytes > 0 ? HumanBytes(o.bootstrap.total_bytes) : "?");
    }
    return line;
  }
  if (Converged(view)) {
    absl::StrAppend(&line, observed, ", converged at generation ", d.generation);
    if (o.role == Role::kSlave) absl::StrAppend(&line, ", ", LagText(o));
    return line;
  }
  absl::StrAppend(&line, observed, ", desired ", RoleText(d.role), " (generation ", d.generation,
                  ")");
  if (!o.last_error.empty()) {
    absl::StrAppend(&line, o.error_blocks ? ": blocked: " : ": retrying: ", o.last_error);
  }
  return line;
}

HttpResponse HandleHealthRequest(const HttpRequest& request, const HealthView& view,
                                 const AgentMetrics* metrics) {
  const std::string& path = request.path;
  if (path == "/healthz") return Text(200, "ok\n");
  if (path == "/readyz") {
    if (Ready(view)) return Text(200, absl::StrCat("ready: ", StatusLine(view), "\n"));
    return Text(503, absl::StrCat("not ready: ", StatusLine(view), "\n"));
  }
  if (path == "/status") {
    HttpResponse response = Text(200, StatusJson(view));
    response.content_type = "application/json";
    return response;
  }
  if (path == "/metrics" && metrics != nullptr) {
    HttpResponse response = Text(200, metrics->Render(view));
    response.content_type = prom::kContentType;
    return response;
  }
  std::optional<Role> role;
  if (path == "/master" || path == "/primary") role = Role::kMaster;
  if (path == "/replica" || path == "/slave") role = Role::kSlave;
  if (path == "/standalone") role = Role::kStandalone;
  if (!role) {
    return Text(404,
                "no such endpoint (try /healthz /readyz /master /replica /standalone "
                "/status /metrics)\n");
  }
  LagBound bound;
  if (*role == Role::kSlave) {
    if (std::optional<std::string> lag = QueryValue(request.query, "lag")) {
      absl::StatusOr<LagBound> parsed = ParseLagBound(*lag);
      if (!parsed.ok()) return Text(400, absl::StrCat(parsed.status().message(), "\n"));
      bound = *parsed;
    }
  }
  RoleAnswer answer = CheckRole(view, *role, bound);
  return Text(answer.yes ? 200 : 503, absl::StrCat(answer.reason, "\n"));
}

absl::StatusOr<std::unique_ptr<HealthServer>> HealthServer::Start(const std::string& listen,
                                                                  std::function<HealthView()> view,
                                                                  const AgentMetrics* metrics) {
  absl::StatusOr<std::unique_ptr<HttpServer>> http =
      HttpServer::Start(listen, [view = std::move(view), metrics](const HttpRequest& request) {
        return HandleHealthRequest(request, view(), metrics);
      });
  if (!http.ok()) {
    return absl::Status(http.status().code(),
                        absl::StrCat("health_listen: ", http.status().message()));
  }
  return std::unique_ptr<HealthServer>(new HealthServer(*std::move(http)));
}

}  // namespace tandem

#include "controller/metrics.h"

#include <grpcpp/support/server_interceptor.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tandem {
namespace {

using prom::MetricType;

std::string Str(std::string_view s) { return std::string(s); }

// "/tandem.v1.Operator/ListNodes" -> ("tandem.v1.Operator", "ListNodes").
std::pair<std::string, std::string> SplitMethod(std::string_view full) {
  if (!full.empty() && full[0] == '/') full.remove_prefix(1);
  const size_t slash = full.find('/');
  if (slash == std::string_view::npos) return {"", Str(full)};
  return {Str(full.substr(0, slash)), Str(full.substr(slash + 1))};
}

std::vector<double> RpcBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

constexpr std::string_view kStates[] = {"converged", "converging",   "queued",
                                        "blocked",   "disconnected", "unreported"};

class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(ControllerMetrics* metrics, grpc::experimental::ServerRpcInfo* info)
      : metrics_(metrics),
        method_(info->method() != nullptr ? info->method() : ""),
        streaming_(info->type() != grpc::experimental::ServerRpcInfo::Type::UNARY),
        start_(std::chrono::steady_clock::now()) {
    metrics_->RpcStarted(method_, streaming_);
  }

  ~MetricsInterceptor() override {
    // A call that ends without a status (the server shut down under it)
    // still leaves the open streams.
    if (!finished_) Finish(static_cast<int>(grpc::StatusCode::CANCELLED));
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS) &&
        !finished_) {
      Finish(static_cast<int>(methods->GetSendStatus().error_code()));
    }
    methods->Proceed();
  }

 private:
  void Finish(int code) {
    finished_ = true;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    metrics_->RpcFinished(method_, streaming_, code, seconds);
  }

  ControllerMetrics* const metrics_;
  const std::string method_;
  const bool streaming_;
  const std::chrono::steady_clock::time_point start_;
  bool finished_ = false;
};

class MetricsInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(ControllerMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(metrics_, info);
  }

 private:
  ControllerMetrics* const metrics_;
};

}  // namespace

std::string GrpcCodeName(int code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? kNames[code] : absl::StrCat("CODE_", code);
}

std::string_view NodeState(const NodeView& node) {
  if (node.converged) return "converged";
  if (node.queued) return "queued";
  if (!node.observed) return "unreported";
  if (!node.agent_connected) return "disconnected";
  if (node.observed->error_blocks && !node.observed->last_error.empty()) return "blocked";
  return "converging";
}

void ControllerMetrics::RpcStarted(std::string_view full_method, bool streaming) {
  if (!streaming) return;
  absl::MutexLock lock(&mu_);
  ++open_streams_[SplitMethod(full_method)];
}

void ControllerMetrics::RpcFinished(std::string_view full_method, bool streaming, int code,
                                    double seconds) {
  auto [service, method] = SplitMethod(full_method);
  absl::MutexLock lock(&mu_);
  ++finished_[{service, method, GrpcCodeName(code)}];
  if (streaming) {
    --open_streams_[{service, method}];
  } else {
    latency_.try_emplace({service, method}, RpcBuckets()).first->second.Observe(seconds);
  }
}

std::string ControllerMetrics::Render(const std::vector<NodeView>& nodes) const {
  prom::TextWriter w;
  std::map<std::string_view, int> by_state;
  for (std::string_view state : kStates) by_state[state] = 0;
  std::map<std::string, int> by_role = {{"master", 0}, {"slave", 0}, {"standalone", 0}};
  int connected = 0;
  for (const NodeView& node : nodes) {
    ++by_state[NodeState(node)];
    if (node.desired.role != Role::kUnspecified) ++by_role[Str(RoleName(node.desired.role))];
    if (node.agent_connected) ++connected;
  }
  w.Family("tandem_controller_nodes", MetricType::kGauge,
           "Registered nodes by state (converged, converging, queued, blocked, disconnected, "
           "unreported).");
  for (const auto& [state, count] : by_state) w.Sample({{"state", Str(state)}}, count);
  w.Family("tandem_controller_nodes_desired_role", MetricType::kGauge,
           "Registered nodes by desired role.");
  for (const auto& [role, count] : by_role) w.Sample({{"role", role}}, count);
  w.Family("tandem_controller_agents_connected", MetricType::kGauge,
           "Nodes whose agent holds a Watch stream open.");
  w.Sample({}, connected);
  w.Family("tandem_controller_node_converged", MetricType::kGauge,
           "1 when the node converged to its current desired generation.");
  for (const NodeView& node : nodes) {
    w.Sample({{"node", node.info.id},
              {"stack", node.info.stack},
              {"engine", Str(EngineName(node.info.engine))}},
             node.converged ? 1 : 0);
  }
  w.Family("tandem_controller_node_report_age_seconds", MetricType::kGauge,
           "Seconds since the node's agent last reported (absent before a first report).");
  for (const NodeView& node : nodes) {
    if (node.seconds_since_report >= 0)
      w.Sample({{"node", node.info.id}}, node.seconds_since_report);
  }
  if (certificate_expiry_) {
    w.Family("tandem_controller_certificate_expiry_seconds", MetricType::kGauge,
             "Seconds until the controller's certificate expires (renew it before: tandemctl "
             "cert create-controller, then SIGHUP).");
    w.Sample({}, absl::ToDoubleSeconds(certificate_expiry_() - absl::Now()));
  }

  absl::MutexLock lock(&mu_);
  w.Family("tandem_controller_rpcs_total", MetricType::kCounter,
           "Finished gRPC calls by service, method and status code.");
  for (const auto& [key, count] : finished_) {
    const auto& [service, method, code] = key;
    w.Sample({{"service", service}, {"method", method}, {"code", code}},
             static_cast<double>(count));
  }
  w.Family("tandem_controller_rpc_duration_seconds", MetricType::kHistogram,
           "Latency of unary gRPC calls.");
  for (const auto& [key, histogram] : latency_) {
    w.HistogramSample({{"service", key.first}, {"method", key.second}}, histogram);
  }
  w.Family("tandem_controller_streams_open", MetricType::kGauge,
           "Open server streams (agents' Watch, followed event streams).");
  for (const auto& [key, open] : open_streams_) {
    w.Sample({{"service", key.first}, {"method", key.second}}, static_cast<double>(open));
  }
  prom::AppendProcessMetrics(&w);
  return w.Take();
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
ControllerMetrics::NewInterceptorFactory() {
  return std::make_unique<MetricsInterceptorFactory>(this);
}

HttpResponse HandleControllerHttp(const HttpRequest& request, const ControllerMetrics& metrics,
                                  const Registry& registry) {
  HttpResponse response;
  if (request.path == "/metrics") {
    response.content_type = prom::kContentType;
    response.body = metrics.Render(registry.ListNodes());
  } else if (request.path == "/healthz") {
    response.body = "ok\n";
  } else {
    response.status = 404;
    response.body = "no such endpoint (try /metrics or /healthz)\n";
  }
  return response;
}

std::string ControllerStatusLine(const std::vector<NodeView>& nodes) {
  std::map<std::string_view, int> by_state;
  int connected = 0;
  for (const NodeView& node : nodes) {
    ++by_state[NodeState(node)];
    if (node.agent_connected) ++connected;
  }
  std::vector<std::string> parts;
  for (std::string_view state : kStates) {
    if (by_state[state] > 0) parts.push_back(absl::StrCat(by_state[state], " ", Str(state)));
  }
  std::string line = absl::StrCat(nodes.size(), nodes.size() == 1 ? " node" : " nodes");
  if (!parts.empty()) absl::StrAppend(&line, ": ", absl::StrJoin(parts, ", "));
  absl::StrAppend(&line, "; ", connected, connected == 1 ? " agent" : " agents", " connected");
  return line;
}

}  // namespace tandem

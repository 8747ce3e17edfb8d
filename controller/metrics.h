// The controller's metrics, served as Prometheus text on metrics_listen
// (GET /metrics; /healthz answers 200 while the process serves).
//
// Counted as calls happen, by a gRPC server interceptor:
//   tandem_controller_rpcs_total{service,method,code}        finished RPCs
//   tandem_controller_rpc_duration_seconds{service,method}   unary RPC latency
//   tandem_controller_streams_open{service,method}           open server streams
//                                                            (agents' Watch, events --follow)
// Read from the registry at scrape time:
//   tandem_controller_nodes{state}            nodes by state: converged, converging,
//                                             queued, blocked, disconnected, unreported
//   tandem_controller_nodes_desired_role{role}
//   tandem_controller_agents_connected        nodes whose agent has a Watch stream open
//   tandem_controller_node_converged{node,stack,engine}
//   tandem_controller_node_report_age_seconds{node}   (absent before a first report)
//   tandem_controller_certificate_expiry_seconds     seconds until the controller's
//                                             certificate expires (absent in insecure mode)
// and the process_* metrics.
//
// Thread-safety: every method may be called from any thread.
#ifndef TANDEM_CONTROLLER_METRICS_H_
#define TANDEM_CONTROLLER_METRICS_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/http_server.h"
#include "common/prometheus_text.h"
#include "controller/registry.h"

namespace grpc::experimental {
class ServerInterceptorFactoryInterface;
}  // namespace grpc::experimental

namespace tandem {

// The name of a gRPC status code ("FAILED_PRECONDITION"; "CODE_<n>" for one
// this build does not know), for metric labels and log lines.
std::string GrpcCodeName(int code);

// The state a node is counted in: "converged", "queued" (a slave waiting
// for its turn to bootstrap), "unreported" (no report since the controller
// started), "disconnected" (its agent has no watch stream open), "blocked"
// (its agent reports an error that needs an operator), else "converging".
std::string_view NodeState(const NodeView& node);

class ControllerMetrics {
 public:
  // `full_method` is gRPC's "/package.Service/Method".
  void RpcStarted(std::string_view full_method, bool streaming);
  // `code` is the gRPC status code (0 = OK).
  void RpcFinished(std::string_view full_method, bool streaming, int code, double seconds);

  // The counted metrics, those of `nodes` (Registry::ListNodes()), then the
  // process_* metrics.
  std::string Render(const std::vector<NodeView>& nodes) const;

  // A server interceptor factory reporting every call of the server to
  // this object (which must outlive the server). Register it with
  // ServerBuilder::experimental().SetInterceptorCreators().
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewInterceptorFactory();

  // Where the certificate's expiry comes from (read at each scrape; unset:
  // no certificate, no sample). Set before serving.
  void set_certificate_expiry(std::function<absl::Time()> source) {
    certificate_expiry_ = std::move(source);
  }

 private:
  std::function<absl::Time()> certificate_expiry_;
  using Key = std::pair<std::string, std::string>;  // service, method

  mutable absl::Mutex mu_;
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> finished_
      ABSL_GUARDED_BY(mu_);  // (service, method, code name)
  std::map<Key, prom::Histogram> latency_ ABSL_GUARDED_BY(mu_);
  std::map<Key, int64_t> open_streams_ ABSL_GUARDED_BY(mu_);
};

// The HTTP endpoints of metrics_listen: GET /metrics (the registry's nodes
// read at each request) and /healthz (200 "ok"); 404 for anything else.
HttpResponse HandleControllerHttp(const HttpRequest& request, const ControllerMetrics& metrics,
                                  const Registry& registry);

// One line for systemd's STATUS=: "3 nodes: 2 converged, 1 converging; 3
// agents connected".
std::string ControllerStatusLine(const std::vector<NodeView>& nodes);

}  // namespace tandem

#endif  // TANDEM_CONTROLLER_METRICS_H_

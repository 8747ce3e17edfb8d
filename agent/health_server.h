// The agent's HTTP endpoints (agent.yaml health_listen), for load balancers
// and monitoring. 200 means yes, 503 means no; GET and HEAD only; nothing
// here changes anything, and no response carries a secret (no env values,
// no resync token, no password).
//
//   /healthz              200 while the process serves requests.
//   /readyz               converged and healthy. Converged: the last pass
//                         converged to the desired generation (not 0),
//                         with no error, and no step is running.
//   /master, /primary     healthy; observed master and writable; desired
//                         master.
//   /replica, /slave      healthy; observed slave, streaming; desired slave;
//                         no step running (a slave in a plan is being
//                         rebuilt or re-pointed); within the lag bound when
//                         `?lag=` gives one: `?lag=1048576` (bytes) or
//                         `?lag=5s` (seconds; also ms, m). An unknown lag
//                         fails a bound. A malformed bound is 400.
//   /standalone           healthy; observed standalone and writable; desired
//                         standalone.
//   /status               200, JSON: node, healthy, ready, converged,
//                         controller_connected, desired, observed, current
//                         step, bootstrap progress, last error.
//   /metrics              200, Prometheus text (agent/metrics.h).
//   anything else         404.
//
// Healthy = the engine was reachable on the last pass and that pass had no
// blocking error (one that needs an operator). The desired role is read at
// request time, so a node the controller has just told to step down stops
// answering /master at once, before it is fenced. Role bodies are one line:
// "yes: ..." or "no: <reason>".
//
// Thread-safety: the pure functions are thread-safe; HealthServer calls
// its view function on its own thread.
#ifndef TANDEM_AGENT_HEALTH_SERVER_H_
#define TANDEM_AGENT_HEALTH_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "agent/metrics.h"
#include "common/http_server.h"
#include "common/types.h"

namespace tandem {

// Everything the endpoints look at, taken at request time.
struct HealthView {
  NodeInfo node;
  ObservedState observed;  // Reconciler::LastObserved()
  DesiredState desired;    // DesiredStateStore::Current()
  bool controller_connected = false;
  // When this node's certificate expires (Unix seconds; 0: none, insecure
  // mode), for tandem_agent_certificate_expiry_seconds.
  double certificate_expiry_unix = 0;
};

bool Healthy(const HealthView& view);
bool Converged(const HealthView& view);
bool Ready(const HealthView& view);

// A `?lag=` bound: bytes, or seconds.
struct LagBound {
  std::optional<int64_t> bytes;
  std::optional<double> seconds;
};
// "1048576" -> 1 MiB; "5s", "250ms", "2m" -> seconds. InvalidArgument
// naming the text otherwise (negative, empty, unknown unit).
absl::StatusOr<LagBound> ParseLagBound(std::string_view text);

// Whether the node answers yes for `role`, with the one-line reason.
struct RoleAnswer {
  bool yes = false;
  std::string reason;
};
RoleAnswer CheckRole(const HealthView& view, Role role, const LagBound& bound = {});

// The /status document.
std::string StatusJson(const HealthView& view);

// One line for systemd's STATUS=: role, convergence, the running step and
// bootstrap progress, or the error ("slave of db1, converged at generation
// 4, lag 0 B / 0.0 s"; "standalone -> slave (generation 5): bootstrap
// 1.2 GiB of 3.4 GiB").
std::string StatusLine(const HealthView& view);

// Routes one request. `metrics` may be null (then /metrics is 404).
HttpResponse HandleHealthRequest(const HttpRequest& request, const HealthView& view,
                                 const AgentMetrics* metrics);

class HealthServer {
 public:
  // Serves the endpoints on `listen` (HOST:PORT); `view` is called once per
  // request. Errors as HttpServer::Start (InvalidArgument, Unavailable).
  static absl::StatusOr<std::unique_ptr<HealthServer>> Start(const std::string& listen,
                                                             std::function<HealthView()> view,
                                                             const AgentMetrics* metrics);
  uint16_t port() const { return http_->port(); }
  void Stop() { http_->Stop(); }

 private:
  explicit HealthServer(std::unique_ptr<HttpServer> http) : http_(std::move(http)) {}
  std::unique_ptr<HttpServer> http_;
};

}  // namespace tandem

#endif  // TANDEM_AGENT_HEALTH_SERVER_H_

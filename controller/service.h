// The controller's gRPC edge: the services tandem.v1.Agents and
// tandem.v1.Operator (proto/tandem.proto) over a Registry, and the server
// that hosts them with the default gRPC health service.
//
// Methods are thin: check who calls, convert (proto/convert.h), call the
// registry, and return its status with the same code and message.
//
// Who calls (security/tls.h): with TLS (ServiceOptions::tls) every client
// has shown a certificate of the cluster's CA during the handshake, and each
// call checks what that identity may do (security/identity.h):
//   Agents.Watch / Report      only as the node the certificate names; the
//                              addresses a node registers must be among the
//                              ones its certificate names;
//   Operator reads             operators, admin or viewer;
//   Operator changes           operators with the admin role.
// A denial is PERMISSION_DENIED naming the identity and what was denied;
// it changes nothing. Without TLS (insecure mode, loopback only) every
// caller may do everything.
//
// Logging: one line per RPC that changes state (verb, arguments, caller,
// result), denied calls, and agents connecting and disconnecting.
#ifndef TANDEM_CONTROLLER_SERVICE_H_
#define TANDEM_CONTROLLER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controller/registry.h"
#include "security/tls.h"
#include "tandem.grpc.pb.h"

namespace tandem {

class ControllerMetrics;

struct ServiceOptions {
  // The controller's certificate and the cluster's CA; null: insecure mode
  // (plaintext, every caller trusted).
  std::shared_ptr<TlsCredentials> tls;
  // Receives the log lines (without a trailing newline). Default: stderr,
  // prefixed with the time.
  std::function<void(const std::string&)> log;
  // How often a blocked stream checks whether its client went away.
  absl::Duration poll = absl::Seconds(1);
  // Told about every call of the server (controller/metrics.h); not owned,
  // must outlive the server. Null: no metrics.
  ControllerMetrics* metrics = nullptr;
};

// Counts the calls in flight, so that a shutdown can let them finish and
// then close the clients' idle connections at once (gRPC would otherwise
// wait for idle clients until its deadline). Thread-safe.
class CallTracker {
 public:
  // Admits a call; false once draining (refuse the call with UNAVAILABLE).
  bool Begin();
  void End();
  // Refuses new calls from now on and waits until none is in flight or
  // `deadline` passes; true when none is left.
  bool Drain(absl::Time deadline);

 private:
  absl::Mutex mu_;
  int active_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

// absl::Status -> grpc::Status with the same code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);

class AgentsService final : public v1::Agents::Service {
 public:
  // `tracker` may be shared with other services; nullptr: a private one.
  AgentsService(Registry* registry, ServiceOptions options,
                std::shared_ptr<CallTracker> tracker = nullptr);

  // Registers the node (Registry::Register), marks its agent connected
  // while the stream is open, sends the current desired state at once and
  // then every newer generation. Ends with UNAVAILABLE when the controller
  // shuts down and CANCELLED when the client goes away.
  grpc::Status Watch(grpc::ServerContext* context, const v1::WatchRequest* request,
                     grpc::ServerWriter<v1::DesiredState>* writer) override;

  // Applies the node's registration when the request carries one (any
  // NodeInfo field besides the id set; a no-op when unchanged), then stores
  // its observed state and step events. INVALID_ARGUMENT without a node id,
  // NOT_FOUND for an id alone that is not registered.
  grpc::Status Report(grpc::ServerContext* context, const v1::ReportRequest* request,
                      v1::ReportResponse* response) override;

 private:
  Registry* registry_;
  ServiceOptions options_;
  std::shared_ptr<CallTracker> tracker_;
};

class OperatorService final : public v1::Operator::Service {
 public:
  OperatorService(Registry* registry, ServiceOptions options,
                  std::shared_ptr<CallTracker> tracker = nullptr);

  grpc::Status ListNodes(grpc::ServerContext* context, const v1::ListNodesRequest* request,
                         v1::ListNodesResponse* response) override;
  grpc::Status GetNode(grpc::ServerContext* context, const v1::GetNodeRequest* request,
                       v1::NodeStatus* response) override;
  grpc::Status EnableReplication(grpc::ServerContext* context,
                                 const v1::EnableReplicationRequest* request,
                                 v1::ChangeResponse* response) override;
  grpc::Status DisableReplication(grpc::ServerContext* context,
                                  const v1::DisableReplicationRequest* request,
                                  v1::ChangeResponse* response) override;
  grpc::Status RemoveSlave(grpc::ServerContext* context, const v1::RemoveSlaveRequest* request,
                           v1::ChangeResponse* response) override;
  grpc::Status Resync(grpc::ServerContext* context, const v1::ResyncRequest* request,
                      v1::ChangeResponse* response) override;
  grpc::Status Promote(grpc::ServerContext* context, const v1::PromoteRequest* request,
                       v1::ChangeResponse* response) override;
  // The events after `after_seq` (of `node` when given: NOT_FOUND for an
  // unknown node); with `follow`, then every new one until the client
  // cancels (or UNAVAILABLE when the controller shuts down).
  grpc::Status ListEvents(grpc::ServerContext* context, const v1::ListEventsRequest* request,
                          grpc::ServerWriter<v1::Event>* writer) override;

 private:
  // `what`: the verb as a denial names it ("promote").
  grpc::Status Change(grpc::ServerContext* context, std::string_view what, const std::string& verb,
                      const std::function<absl::StatusOr<Changes>()>& apply,
                      v1::ChangeResponse* response);

  Registry* registry_;
  ServiceOptions options_;
  std::shared_ptr<CallTracker> tracker_;
};

// The gRPC server: Agents, Operator and grpc.health.v1.Health.
class ControllerServer {
 public:
  // Listens on `listen` (HOST:PORT; port 0 picks a free port) and starts
  // serving. `registry` must outlive the server. UNAVAILABLE when the
  // address cannot be bound (in use, not local); the port is never shared
  // with another process (SO_REUSEPORT off).
  static absl::StatusOr<std::unique_ptr<ControllerServer>> Start(Registry* registry,
                                                                 const std::string& listen,
                                                                 ServiceOptions options = {});
  ~ControllerServer();

  int port() const { return port_; }

  // Stops serving: shuts the registry's waiters down (open streams end at
  // once), marks the health service NOT_SERVING, refuses new calls with
  // UNAVAILABLE, waits for the calls in flight (at most `grace`, then they
  // are cancelled) and closes every connection. Idempotent.
  void Shutdown(absl::Duration grace = absl::Seconds(5));

  // Blocks until Shutdown() has completed.
  void Wait();

 private:
  ControllerServer() = default;

  Registry* registry_ = nullptr;
  std::shared_ptr<CallTracker> tracker_;
  std::unique_ptr<AgentsService> agents_;
  std::unique_ptr<OperatorService> operator_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tandem

#endif  // TANDEM_CONTROLLER_SERVICE_H_

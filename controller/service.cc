#include "controller/service.h"

#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <cstdio>
#include <string_view>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/address.h"
#include "controller/metrics.h"
#include "proto/convert.h"

namespace tandem {
namespace {

void StderrLog(const std::string& line) {
  static absl::Mutex mu(absl::kConstInit);
  const std::string stamp =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3S%Ez", absl::Now(), absl::LocalTimeZone());
  absl::MutexLock lock(&mu);
  std::fprintf(stderr, "%s %s\n", stamp.c_str(), line.c_str());
  std::fflush(stderr);
}

ServiceOptions WithDefaults(ServiceOptions options) {
  if (!options.log) options.log = StderrLog;
  if (options.poll <= absl::ZeroDuration()) options.poll = absl::Seconds(1);
  return options;
}

std::string Describe(const grpc::Status& status) {
  if (status.ok()) return "OK";
  return absl::StrCat(GrpcCodeName(status.error_code()), ": ", status.error_message());
}

// Holds a call's place in the tracker for the duration of an RPC.
class CallScope {
 public:
  explicit CallScope(CallTracker* tracker) : tracker_(tracker), admitted_(tracker->Begin()) {}
  ~CallScope() {
    if (admitted_) tracker_->End();
  }
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

  // OK, or UNAVAILABLE when the server is shutting down.
  grpc::Status status() const {
    return admitted_
               ? grpc::Status::OK
               : grpc::Status(grpc::StatusCode::UNAVAILABLE, "the controller is shutting down");
  }

 private:
  CallTracker* tracker_;
  bool admitted_;
};

grpc::Status Denied(const absl::Status& status) {
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, std::string(status.message()));
}

// The checks every operator call starts with: admitted (not shutting
// down), then allowed to the caller's certificate. A denial is logged.
grpc::Status AdmitOperator(const CallScope& scope, const grpc::ServerContext* context,
                           const ServiceOptions& options, bool change, std::string_view what) {
  if (grpc::Status st = scope.status(); !st.ok()) return st;
  const Identity caller = PeerIdentity(*context, options.tls != nullptr);
  if (absl::Status st = AuthorizeOperatorCall(caller, change, what); !st.ok()) {
    options.log(absl::StrCat("denied: ", st.message(), " (from ", context->peer(), ")"));
    return Denied(st);
  }
  return grpc::Status::OK;
}

// The checks of an agent's call for `info.id`: admitted, the node's own
// certificate, and, when the call registers (`registration`), addresses its
// certificate names.
grpc::Status AdmitNode(const CallScope& scope, const grpc::ServerContext* context,
                       const ServiceOptions& options, const NodeInfo& info, bool registration,
                       std::string_view what) {
  if (grpc::Status st = scope.status(); !st.ok()) return st;
  const bool secure = options.tls != nullptr;
  const Identity caller = PeerIdentity(*context, secure);
  absl::Status allowed = AuthorizeNodeCall(caller, info.id, what);
  if (allowed.ok() && secure && registration) {
    const std::vector<std::string> named = PeerCertificateAddresses(*context);
    for (const std::string* address : {&info.addresses.internal, &info.addresses.external}) {
      if (address->empty()) continue;
      bool found = false;
      for (const std::string& n : named) found = found || SameHostAddress(n, *address);
      if (!found) {
        allowed = absl::PermissionDeniedError(absl::StrCat(
            caller.Describe(), " may not register the address ", *address,
            ": its certificate names ", named.empty() ? "none" : absl::StrJoin(named, ", "),
            " (a certificate that names it: tandemctl cert create-node ", info.id,
            " --address ", *address, ")"));
        break;
      }
    }
  }
  if (!allowed.ok()) {
    options.log(absl::StrCat("denied: ", allowed.message(), " (from ", context->peer(), ")"));
    return Denied(allowed);
  }
  return grpc::Status::OK;
}

std::string DescribeChanges(const Changes& changes) {
  if (changes.empty()) return "nothing to change";
  return absl::StrJoin(changes, "; ");
}

void NodeStatusToProto(const NodeView& view, v1::NodeStatus* out) {
  ToProto(view.info, out->mutable_info());
  ToProto(view.desired, out->mutable_desired());
  ToProto(view.observed.value_or(ObservedState{}), out->mutable_observed());
  out->set_converged(view.converged);
  out->set_upstream_id(view.upstream_id);
  out->set_agent_connected(view.agent_connected);
  out->set_seconds_since_report(view.seconds_since_report);
  out->set_queued(view.queued);
  out->set_auto_resync(view.auto_resync);
}

void EventToProto(const Event& in, v1::Event* out) {
  out->set_seq(in.seq);
  out->set_unix_time(in.unix_time);
  out->set_node(in.node);
  out->set_kind(in.kind);
  out->set_message(in.message);
  out->set_ok(in.ok);
  out->set_generation(in.generation);
  out->set_seconds(in.seconds);
}

}  // namespace

bool CallTracker::Begin() {
  absl::MutexLock lock(&mu_);
  if (draining_) return false;
  ++active_;
  return true;
}

void CallTracker::End() {
  absl::MutexLock lock(&mu_);
  --active_;
}

bool CallTracker::Drain(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return active_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // The canonical codes of absl and gRPC have the same numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// ------------------------------------------------------------------ Agents

AgentsService::AgentsService(Registry* registry, ServiceOptions options,
                             std::shared_ptr<CallTracker> tracker)
    : registry_(registry),
      options_(WithDefaults(std::move(options))),
      tracker_(tracker ? std::move(tracker) : std::make_shared<CallTracker>()) {}

grpc::Status AgentsService::Watch(grpc::ServerContext* context, const v1::WatchRequest* request,
                                  grpc::ServerWriter<v1::DesiredState>* writer) {
  CallScope scope(tracker_.get());
  const NodeInfo info = FromProto(request->node());
  if (grpc::Status st = AdmitNode(scope, context, options_, info, true, "watch and register");
      !st.ok()) {
    return st;
  }
  absl::StatusOr<Changes> changes = registry_->Register(info);
  if (!changes.ok()) {
    grpc::Status st = ToGrpcStatus(changes.status());
    options_.log(
        absl::StrCat("Watch node=", info.id, " from ", context->peer(), ": ", Describe(st)));
    return st;
  }
  if (!changes->empty()) {
    options_.log(absl::StrCat("Register node=", info.id, ": OK: ", DescribeChanges(*changes)));
  }
  registry_->AgentConnected(info.id);
  options_.log(absl::StrCat("agent ", info.id, " connected from ", context->peer()));
  absl::Cleanup disconnected = [&] {
    registry_->AgentDisconnected(info.id);
    options_.log(absl::StrCat("agent ", info.id, " disconnected"));
  };
  uint64_t sent = 0;
  while (!context->IsCancelled()) {
    absl::StatusOr<DesiredState> desired =
        registry_->WaitForDesired(info.id, sent, absl::Now() + options_.poll);
    if (!desired.ok()) return ToGrpcStatus(desired.status());
    if (desired->generation <= sent) continue;
    v1::DesiredState message;
    ToProto(*desired, &message);
    if (!writer->Write(message)) break;  // the client went away
    sent = desired->generation;
  }
  return grpc::Status(grpc::StatusCode::CANCELLED, "the watch was cancelled");
}

grpc::Status AgentsService::Report(grpc::ServerContext* context, const v1::ReportRequest* request,
                                   v1::ReportResponse* response) {
  CallScope scope(tracker_.get());
  if (grpc::Status st = scope.status(); !st.ok()) return st;
  if (request->node().id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the report names no node (node.id)");
  }
  const NodeInfo info = FromProto(request->node());
  // A report that carries the whole registration applies it (as Watch
  // does); one that names the node only reports.
  const bool registration = info.engine != EngineType::kUnspecified || info.port != 0 ||
                            !info.stack.empty() || !info.addresses.internal.empty();
  if (grpc::Status st = AdmitNode(scope, context, options_, info, registration, "report");
      !st.ok()) {
    return st;
  }
  if (registration) {
    absl::StatusOr<Changes> changes = registry_->Register(info);
    if (!changes.ok()) {
      grpc::Status st = ToGrpcStatus(changes.status());
      options_.log(absl::StrCat("Report node=", info.id, ": ", Describe(st)));
      return st;
    }
    if (!changes->empty()) {
      options_.log(absl::StrCat("Register node=", info.id, ": OK: ", DescribeChanges(*changes)));
    }
  }
  std::vector<StepEvent> events;
  events.reserve(request->events_size());
  for (const v1::StepEvent& event : request->events()) events.push_back(FromProto(event));
  grpc::Status st =
      ToGrpcStatus(registry_->Report(info.id, FromProto(request->observed()), events));
  // Reports come every few seconds: only the ones that record something
  // (step outcomes) or fail are worth a line.
  if (!st.ok() || !events.empty()) {
    options_.log(
        absl::StrCat("Report node=", info.id, " steps=", events.size(), ": ", Describe(st)));
  }
  // A slave learns its upstream's current size here (for the free-disk
  // check of a bootstrap) without a new generation.
  if (absl::StatusOr<DesiredState> desired = registry_->Desired(info.id); st.ok() && desired.ok()) {
    response->set_upstream_data_bytes(desired->upstream_data_bytes);
  }
  return st;
}

// ---------------------------------------------------------------- Operator

OperatorService::OperatorService(Registry* registry, ServiceOptions options,
                                 std::shared_ptr<CallTracker> tracker)
    : registry_(registry),
      options_(WithDefaults(std::move(options))),
      tracker_(tracker ? std::move(tracker) : std::make_shared<CallTracker>()) {}

grpc::Status OperatorService::ListNodes(grpc::ServerContext* context,
                                        const v1::ListNodesRequest* /*request*/,
                                        v1::ListNodesResponse* response) {
  CallScope scope(tracker_.get());
  if (grpc::Status st = AdmitOperator(scope, context, options_, false, "list nodes"); !st.ok()) {
    return st;
  }
  for (const NodeView& view : registry_->ListNodes())
    NodeStatusToProto(view, response->add_nodes());
  return grpc::Status::OK;
}

grpc::Status OperatorService::GetNode(grpc::ServerContext* context,
                                      const v1::GetNodeRequest* request, v1::NodeStatus* response) {
  CallScope scope(tracker_.get());
  if (grpc::Status st = AdmitOperator(scope, context, options_, false, "read a node's status");
      !st.ok()) {
    return st;
  }
  if (request->node().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no node given");
  }
  absl::StatusOr<NodeView> view = registry_->GetNode(request->node());
  if (!view.ok()) return ToGrpcStatus(view.status());
  NodeStatusToProto(*view, response);
  return grpc::Status::OK;
}

grpc::Status OperatorService::Change(grpc::ServerContext* context, std::string_view what,
                                     const std::string& verb,
                                     const std::function<absl::StatusOr<Changes>()>& apply,
                                     v1::ChangeResponse* response) {
  CallScope scope(tracker_.get());
  grpc::Status st = AdmitOperator(scope, context, options_, true, what);
  if (!st.ok()) return st;
  const std::string by = PeerIdentity(*context, options_.tls != nullptr).Describe();
  absl::StatusOr<Changes> changes = apply();
  if (!changes.ok()) {
    st = ToGrpcStatus(changes.status());
    options_.log(absl::StrCat(verb, " by ", by, ": ", Describe(st)));
    return st;
  }
  for (const std::string& line : *changes) response->add_changes(line);
  options_.log(absl::StrCat(verb, " by ", by, ": OK: ", DescribeChanges(*changes)));
  return grpc::Status::OK;
}

grpc::Status OperatorService::EnableReplication(grpc::ServerContext* context,
                                                const v1::EnableReplicationRequest* request,
                                                v1::ChangeResponse* response) {
  return Change(
      context, "enable replication",
      absl::StrCat("EnableReplication master=", request->master(), " slave=", request->slave()),
      [&] {
        return registry_->EnableReplication(
            request->master(), request->slave(),
            request->has_auto_resync() ? std::optional<bool>(request->auto_resync())
                                       : std::nullopt);
      },
      response);
}

grpc::Status OperatorService::DisableReplication(grpc::ServerContext* context,
                                                 const v1::DisableReplicationRequest* request,
                                                 v1::ChangeResponse* response) {
  return Change(
      context, "disable replication", absl::StrCat("DisableReplication master=", request->master()),
      [&] { return registry_->DisableReplication(request->master()); }, response);
}

grpc::Status OperatorService::RemoveSlave(grpc::ServerContext* context,
                                          const v1::RemoveSlaveRequest* request,
                                          v1::ChangeResponse* response) {
  return Change(
      context, "remove a slave", absl::StrCat("RemoveSlave slave=", request->slave()),
      [&] { return registry_->RemoveSlave(request->slave()); }, response);
}

grpc::Status OperatorService::Resync(grpc::ServerContext* context, const v1::ResyncRequest* request,
                                     v1::ChangeResponse* response) {
  return Change(
      context, "resync", absl::StrCat("Resync slave=", request->slave()),
      [&] { return registry_->Resync(request->slave()); }, response);
}

grpc::Status OperatorService::Promote(grpc::ServerContext* context,
                                      const v1::PromoteRequest* request,
                                      v1::ChangeResponse* response) {
  return Change(
      context, "promote", absl::StrCat("Promote node=", request->node(), request->force() ? " force" : ""),
      [&] { return registry_->Promote(request->node(), request->force()); }, response);
}

grpc::Status OperatorService::ListEvents(grpc::ServerContext* context,
                                         const v1::ListEventsRequest* request,
                                         grpc::ServerWriter<v1::Event>* writer) {
  CallScope scope(tracker_.get());
  if (grpc::Status st = AdmitOperator(scope, context, options_, false, "read events"); !st.ok()) {
    return st;
  }
  const std::string& node = request->node();
  if (!node.empty()) {
    if (absl::StatusOr<NodeView> view = registry_->GetNode(node); !view.ok()) {
      return ToGrpcStatus(view.status());
    }
  }
  uint64_t after = request->after_seq();
  auto send = [&](const std::vector<Event>& events) {
    for (const Event& event : events) {
      v1::Event message;
      EventToProto(event, &message);
      if (!writer->Write(message)) return false;
      after = event.seq;
    }
    return true;
  };
  if (!send(registry_->Events(after, node))) return grpc::Status::OK;
  if (!request->follow()) return grpc::Status::OK;
  while (!context->IsCancelled()) {
    std::vector<Event> events = registry_->WaitForEvents(after, node, absl::Now() + options_.poll);
    if (registry_->IsShutdown()) {
      send(events);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the controller is shutting down");
    }
    if (!send(events)) break;
  }
  return grpc::Status(grpc::StatusCode::CANCELLED, "the event stream was cancelled");
}

// ------------------------------------------------------------------- Server

absl::StatusOr<std::unique_ptr<ControllerServer>> ControllerServer::Start(Registry* registry,
                                                                          const std::string& listen,
                                                                          ServiceOptions options) {
  std::unique_ptr<ControllerServer> server(new ControllerServer());
  server->registry_ = registry;
  server->tracker_ = std::make_shared<CallTracker>();
  server->agents_ = std::make_unique<AgentsService>(registry, options, server->tracker_);
  server->operator_ = std::make_unique<OperatorService>(registry, options, server->tracker_);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default: a second controller would then share
  // the port silently instead of failing to start.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(listen, ServerCredentialsFor(options.tls.get()), &server->port_);
  builder.RegisterService(server->agents_.get());
  builder.RegisterService(server->operator_.get());
  if (options.metrics != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(options.metrics->NewInterceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", listen, " (address in use, or not an address of this host)"));
  }
  return server;
}

ControllerServer::~ControllerServer() { Shutdown(absl::ZeroDuration()); }

void ControllerServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_ || server_ == nullptr) return;
    shut_down_ = true;
  }
  registry_->Shutdown();
  if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
    health->Shutdown();
  }
  // Streams end as soon as they see the registry shut down; unary calls
  // finish on their own. Once none is in flight (or the grace is over),
  // a shutdown with a past deadline closes the clients' connections at
  // once instead of waiting for idle clients to go away.
  tracker_->Drain(absl::Now() + grace);
  server_->Shutdown(absl::ToChronoTime(absl::Now()));
}

void ControllerServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace tandem

#include "tandemctl/client.h"

#include <grpcpp/grpcpp.h>

#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "tandem.grpc.pb.h"
#include "tandemctl/args.h"

namespace tandem::cli {
namespace {

std::string CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      break;
  }
  return absl::StrCat("code ", static_cast<int>(code));
}

// Turns a gRPC status into one whose message is ready for "tandemctl: ".
absl::Status FromGrpc(const grpc::Status& status, const std::string& address,
                      absl::string_view method, std::chrono::milliseconds deadline) {
  if (status.ok()) return absl::OkStatus();
  const std::string& message = status.error_message();
  std::string detail = message.empty() ? CodeName(status.error_code()) : message;
  auto code = static_cast<absl::StatusCode>(status.error_code());
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE: {
      std::string hint;
      const std::string lower = absl::AsciiStrToLower(detail);
      if (absl::StrContains(lower, "handshake") || absl::StrContains(lower, "ssl") ||
          absl::StrContains(lower, "certificate") || absl::StrContains(lower, "socket closed")) {
        hint = " (the TLS handshake failed: the controller must have a certificate of the CA in "
               "your ca.crt that names this address, and it must accept your client "
               "certificate: same CA, not expired)";
      }
      return absl::UnavailableError(
          absl::StrCat("cannot reach the controller at ", address, ": ", detail, hint));
    }
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::DeadlineExceededError(absl::StrCat("cannot reach the controller at ", address,
                                                      ": no answer to ", method, " within ",
                                                      FormatDuration(deadline)));
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return absl::Status(code, detail);
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::UnauthenticatedError(
          absl::StrCat("the controller at ", address, " refused the request: ", detail));
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::PermissionDeniedError(
          absl::StrCat("the controller at ", address, " denied the request: ", detail));
    case grpc::StatusCode::UNIMPLEMENTED:
      return absl::UnimplementedError(
          absl::StrCat("the server at ", address, " does not implement tandem.v1.Operator/", method,
                       " (not a Tandem controller, or another version): ", detail));
    case grpc::StatusCode::CANCELLED:
      // tandemctl cancels only its own event stream, and that case never
      // gets here: this is the controller going away (shutdown, restart).
      return absl::UnavailableError(absl::StrCat("cannot reach the controller at ", address,
                                                 ": it ended ", method, ": ", detail));
    default:
      break;
  }
  return absl::Status(code, absl::StrCat("the controller at ", address, " failed: ", detail, " (",
                                         CodeName(status.error_code()), ")"));
}

}  // namespace

struct OperatorClient::Impl {
  ClientOptions options;
  std::unique_ptr<v1::Operator::Stub> stub;

  std::mutex mu;
  grpc::ClientContext* stream_context = nullptr;  // guarded by mu
  bool cancelled = false;                         // guarded by mu

  void Prepare(grpc::ClientContext& context, std::chrono::milliseconds timeout) const {
    if (timeout.count() > 0) {
      context.set_deadline(std::chrono::system_clock::now() + timeout);
    }
  }

  template <typename Request, typename Response, typename Method>
  absl::StatusOr<Response> Unary(absl::string_view name, Method method, const Request& request) {
    grpc::ClientContext context;
    Prepare(context, options.rpc_timeout);
    Response response;
    grpc::Status status = ((*stub).*method)(&context, request, &response);
    if (!status.ok()) return FromGrpc(status, options.address, name, options.rpc_timeout);
    return response;
  }
};

OperatorClient::OperatorClient(ClientOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  grpc::ChannelArguments args;
  args.SetUserAgentPrefix("tandemctl");
  impl_->stub = v1::Operator::NewStub(grpc::CreateCustomChannel(
      impl_->options.address,
      ChannelCredentialsFor(impl_->options.tls.get(), Identity::Controller("")), args));
}

OperatorClient::~OperatorClient() = default;

absl::StatusOr<v1::ListNodesResponse> OperatorClient::ListNodes() {
  return impl_->Unary<v1::ListNodesRequest, v1::ListNodesResponse>(
      "ListNodes", &v1::Operator::Stub::ListNodes, v1::ListNodesRequest());
}

absl::StatusOr<v1::NodeStatus> OperatorClient::GetNode(const std::string& node) {
  v1::GetNodeRequest request;
  request.set_node(node);
  return impl_->Unary<v1::GetNodeRequest, v1::NodeStatus>("GetNode", &v1::Operator::Stub::GetNode,
                                                          request);
}

absl::StatusOr<v1::ChangeResponse> OperatorClient::EnableReplication(
    const std::string& master, const std::string& slave, std::optional<bool> auto_resync) {
  v1::EnableReplicationRequest request;
  request.set_master(master);
  request.set_slave(slave);
  if (auto_resync.has_value()) request.set_auto_resync(*auto_resync);
  return impl_->Unary<v1::EnableReplicationRequest, v1::ChangeResponse>(
      "EnableReplication", &v1::Operator::Stub::EnableReplication, request);
}

absl::StatusOr<v1::ChangeResponse> OperatorClient::DisableReplication(const std::string& master) {
  v1::DisableReplicationRequest request;
  request.set_master(master);
  return impl_->Unary<v1::DisableReplicationRequest, v1::ChangeResponse>(
      "DisableReplication", &v1::Operator::Stub::DisableReplication, request);
}

absl::StatusOr<v1::ChangeResponse> OperatorClient::RemoveSlave(const std::string& slave) {
  v1::RemoveSlaveRequest request;
  request.set_slave(slave);
  return impl_->Unary<v1::RemoveSlaveRequest, v1::ChangeResponse>(
      "RemoveSlave", &v1::Operator::Stub::RemoveSlave, request);
}

absl::StatusOr<v1::ChangeResponse> OperatorClient::Resync(const std::string& slave) {
  v1::ResyncRequest request;
  request.set_slave(slave);
  return impl_->Unary<v1::ResyncRequest, v1::ChangeResponse>("Resync", &v1::Operator::Stub::Resync,
                                                             request);
}

absl::StatusOr<v1::ChangeResponse> OperatorClient::Promote(const std::string& node, bool force) {
  v1::PromoteRequest request;
  request.set_node(node);
  request.set_force(force);
  return impl_->Unary<v1::PromoteRequest, v1::ChangeResponse>(
      "Promote", &v1::Operator::Stub::Promote, request);
}

absl::Status OperatorClient::ListEvents(const v1::ListEventsRequest& request,
                                        const std::function<void(const v1::Event&)>& on_event) {
  grpc::ClientContext context;
  std::chrono::milliseconds timeout =
      request.follow() ? std::chrono::milliseconds(0) : kHistoryTimeout;
  impl_->Prepare(context, timeout);
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->cancelled) return absl::OkStatus();
    impl_->stream_context = &context;
  }
  std::unique_ptr<grpc::ClientReader<v1::Event>> reader =
      impl_->stub->ListEvents(&context, request);
  v1::Event event;
  while (reader->Read(&event)) on_event(event);
  grpc::Status status = reader->Finish();
  bool cancelled = false;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stream_context = nullptr;
    cancelled = impl_->cancelled;
  }
  if (cancelled) return absl::OkStatus();
  return FromGrpc(status, impl_->options.address, "ListEvents", timeout);
}

void OperatorClient::Cancel() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->cancelled = true;
  if (impl_->stream_context != nullptr) impl_->stream_context->TryCancel();
}

}  // namespace tandem::cli

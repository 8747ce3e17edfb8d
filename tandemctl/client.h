// tandemctl's side of the controller's Operator service (proto/tandem.proto).
//
// The only file of tandemctl that includes gRPC. Every failure comes back as
// an absl::Status whose message is ready to print after "tandemctl: ":
//  - Unavailable / DeadlineExceeded: "cannot reach the controller at HOST:PORT: ..."
//    (also for a call the controller cancelled: it is shutting down);
//  - InvalidArgument / NotFound / FailedPrecondition / AlreadyExists /
//    OutOfRange / Aborted / ResourceExhausted: the controller's own message
//    (a refused request; it changed nothing);
//  - Unauthenticated / PermissionDenied: the controller's reason (it names
//    this client's identity and what was denied);
//  - Unavailable after a failed TLS handshake: says which certificates to
//    check;
//  - anything else: "the controller at HOST:PORT failed: <message> (<CODE>)".
#ifndef TANDEM_TANDEMCTL_CLIENT_H_
#define TANDEM_TANDEMCTL_CLIENT_H_

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "security/tls.h"
#include "tandem.pb.h"

namespace tandem::cli {

inline constexpr std::chrono::milliseconds kRpcTimeout{std::chrono::seconds(5)};
// A non-follow ListEvents replays the history; allow it more than one RPC.
inline constexpr std::chrono::milliseconds kHistoryTimeout{std::chrono::seconds(60)};

struct ClientOptions {
  std::string address;  // HOST:PORT
  // This operator's certificate and the cluster's CA; null: plaintext
  // (a controller in insecure mode on loopback).
  std::shared_ptr<TlsCredentials> tls;
  std::chrono::milliseconds rpc_timeout = kRpcTimeout;
};

// Thread-compatible, except Cancel() which may be called from any thread.
class OperatorClient {
 public:
  explicit OperatorClient(ClientOptions options);
  ~OperatorClient();
  OperatorClient(const OperatorClient&) = delete;
  OperatorClient& operator=(const OperatorClient&) = delete;

  // Unary calls, each with options.rpc_timeout as deadline.
  absl::StatusOr<v1::ListNodesResponse> ListNodes();
  absl::StatusOr<v1::NodeStatus> GetNode(const std::string& node);
  // `auto_resync`: the group's policy (nullopt: keep it).
  absl::StatusOr<v1::ChangeResponse> EnableReplication(
      const std::string& master, const std::string& slave,
      std::optional<bool> auto_resync = std::nullopt);
  absl::StatusOr<v1::ChangeResponse> DisableReplication(const std::string& master);
  absl::StatusOr<v1::ChangeResponse> RemoveSlave(const std::string& slave);
  absl::StatusOr<v1::ChangeResponse> Resync(const std::string& slave);
  absl::StatusOr<v1::ChangeResponse> Promote(const std::string& node, bool force);

  // Calls `on_event` for every event of the stream, in order, until the
  // stream ends. Without request.follow the stream is the history and has a
  // kHistoryTimeout deadline; with it there is no deadline. Returns OK when
  // the stream ended normally or Cancel() ended it, an error otherwise.
  absl::Status ListEvents(const v1::ListEventsRequest& request,
                          const std::function<void(const v1::Event&)>& on_event);

  // Ends a running ListEvents (and any later one) promptly. Thread-safe.
  void Cancel();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::cli

#endif  // TANDEM_TANDEMCTL_CLIENT_H_

// The agent's Transfer service (proto/tandem.proto): a master's agent
// streams the backup that seeds one of its slaves, agent to agent, on
// agent.yaml transfer_listen.
//
// FetchBackup, thin: the request (slave_id set, an engine_kind, when
// given, equal to this node's) -> INVALID_ARGUMENT / FAILED_PRECONDITION;
// the caller's certificate names node slave_id (mutual TLS, against the
// cluster's CA) and that node is the one the controller has bootstrapping
// from this master right now (`serves`) -> PERMISSION_DENIED, naming the
// caller; then calls Engine::StreamBackup and writes each piece as one
// BackupChunk over the encrypted stream. The gRPC write blocks while the
// slave's agent does not keep up (flow control), and so does the backup
// tool: memory stays bounded. A reader that takes nothing for
// `stall_timeout` is cut off: the call is cancelled, the tool stopped and
// the slot freed. A slave that goes away cancels the call; the tool is
// stopped. The engine's status becomes the call's (same codes). One line is
// logged when a transfer starts and one when it ends.
//
// Thread-safety: the service owns its Engine, a second instance made from
// the same config as the reconcile loop's (an Engine is used by one thread
// at a time); transfers run one at a time on it: a second request waits up
// to `busy_wait` for the first to end, then fails with UNAVAILABLE (the
// slave's agent retries). Start/Stop from one thread; `serves` is called
// from gRPC threads and must be thread-safe.
#ifndef TANDEM_AGENT_TRANSFER_SERVER_H_
#define TANDEM_AGENT_TRANSFER_SERVER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/types.h"
#include "engines/engine.h"
#include "security/tls.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace tandem {

struct TransferServerOptions {
  std::string listen;     // HOST:PORT; port 0 picks a free one
  // This node's certificate and the cluster's CA; null: plaintext and no
  // identity check (insecure mode, loopback only).
  std::shared_ptr<TlsCredentials> tls;
  EngineType engine = EngineType::kUnspecified;
  // Whether `slave_id` is a slave the controller has bootstrapping from
  // this node right now (its desired state, Peer::bootstrapping).
  std::function<bool(const std::string& slave_id)> serves;
  std::chrono::milliseconds busy_wait{std::chrono::seconds(60)};
  // A write that the slave does not take within this long ends the call.
  std::chrono::milliseconds stall_timeout{std::chrono::seconds(60)};
};

class TransferService;

class TransferServer {
 public:
  // Listens and serves until Stop(). InvalidArgument when `listen` is not
  // HOST:PORT, Unavailable when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<TransferServer>> Start(TransferServerOptions options,
                                                               std::unique_ptr<Engine> engine);
  ~TransferServer();
  TransferServer(const TransferServer&) = delete;
  TransferServer& operator=(const TransferServer&) = delete;

  // Cancels running transfers and stops listening. Idempotent.
  void Stop();
  // The port it listens on.
  int port() const { return port_; }

 private:
  TransferServer() = default;
  std::unique_ptr<TransferService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace tandem

#endif  // TANDEM_AGENT_TRANSFER_SERVER_H_

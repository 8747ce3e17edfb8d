#include "agent/transfer_server.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <mutex>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "tandem.grpc.pb.h"

namespace tandem {
namespace {

constexpr char kBearer[] = "Bearer ";

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace

class TransferService final : public v1::Transfer::Service {
 public:
  TransferService(TransferServerOptions options, std::unique_ptr<Engine> engine)
      : options_(std::move(options)), engine_(std::move(engine)) {}

  grpc::Status FetchBackup(grpc::ServerContext* context, const v1::FetchBackupRequest* request,
                           grpc::ServerWriter<v1::BackupChunk>* writer) override {
    if (grpc::Status auth = CheckAuth(*context); !auth.ok()) return auth;
    const std::string& slave = request->slave_id();
    if (slave.empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "slave_id is empty");
    }
    const std::string_view kind = EngineName(options_.engine);
    if (!request->engine_kind().empty() && request->engine_kind() != kind) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat(slave, " runs ", request->engine_kind(), ", this node runs ",
                                       std::string(kind)));
    }
    if (!options_.serves || !options_.serves(slave)) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          absl::StrCat(slave, " is not a slave of this node (as of its current "
                                              "desired state)"));
    }
    std::unique_lock<std::timed_mutex> lock(busy_, std::defer_lock);
    if (!lock.try_lock_for(options_.busy_wait)) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "another backup is being streamed from this node; retry later");
    }
    const auto start = std::chrono::steady_clock::now();
    uint64_t sent = 0;
    LogInfo(absl::StrCat("transfer: streaming a backup to ", slave));
    v1::BackupChunk message;
    absl::Status status =
        engine_->StreamBackup(slave, [&](std::string_view chunk, uint64_t total) -> absl::Status {
          if (context->IsCancelled()) return absl::CancelledError("the slave's agent cancelled");
          message.set_data(chunk.data(), chunk.size());
          message.set_total_bytes_estimate(total);
          if (!writer->Write(message)) {
            return absl::UnavailableError("the slave's agent went away");
          }
          sent += chunk.size();
          return absl::OkStatus();
        });
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (status.ok()) {
      LogInfo(absl::StrFormat("transfer: backup for %s done, %d bytes in %.1f s", slave, sent,
                              seconds));
    } else {
      LogWarning(absl::StrFormat("transfer: backup for %s failed after %d bytes: %s", slave, sent,
                                 std::string(status.message())));
    }
    return ToGrpc(status);
  }

 private:
  grpc::Status CheckAuth(const grpc::ServerContext& context) const {
    if (options_.token.empty()) return grpc::Status::OK;
    const auto& metadata = context.client_metadata();
    auto it = metadata.find("authorization");
    if (it == metadata.end()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "missing authorization metadata (\"Bearer <token>\")");
    }
    const std::string_view value(it->second.data(), it->second.size());
    const std::string_view prefix(kBearer);
    if (value.substr(0, prefix.size()) != prefix ||
        !ConstantTimeEquals(value.substr(prefix.size()), options_.token)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid authorization token");
    }
    return grpc::Status::OK;
  }

  const TransferServerOptions options_;
  const std::unique_ptr<Engine> engine_;
  std::timed_mutex busy_;  // one transfer at a time on engine_
};

absl::StatusOr<std::unique_ptr<TransferServer>> TransferServer::Start(
    TransferServerOptions options, std::unique_ptr<Engine> engine) {
  const std::string listen = options.listen;
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("transfer_listen: must be HOST:PORT, got \"", listen, "\""));
  }
  if (engine == nullptr) return absl::InvalidArgumentError("transfer server without an engine");
  std::unique_ptr<TransferServer> server(new TransferServer());
  server->service_ = std::make_unique<TransferService>(std::move(options), std::move(engine));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(server->service_.get());
  // A slave whose host vanished is noticed within a minute.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("transfer_listen: cannot listen on ", listen, " (address in use?)"));
  }
  return server;
}

TransferServer::~TransferServer() { Stop(); }

void TransferServer::Stop() {
  if (server_ == nullptr) return;
  // Running transfers are cancelled at once: their slaves retry later.
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  server_.reset();
}

}  // namespace tandem

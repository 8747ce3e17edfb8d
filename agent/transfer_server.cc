#include "agent/transfer_server.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "tandem.grpc.pb.h"

namespace tandem {
namespace {

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
    const std::string& slave = request->slave_id();
    if (slave.empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "slave_id is empty");
    }
    const Identity caller = PeerIdentity(*context, options_.tls != nullptr);
    if (absl::Status st = AuthorizeNodeCall(caller, slave, "fetch a backup"); !st.ok()) {
      LogWarning(absl::StrCat("transfer: refused: ", st.message(), " (from ", context->peer(), ")"));
      return ToGrpc(st);
    }
    const std::string_view kind = EngineName(options_.engine);
    if (!request->engine_kind().empty() && request->engine_kind() != kind) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat(slave, " runs ", request->engine_kind(), ", this node runs ",
                                       std::string(kind)));
    }
    if (!options_.serves || !options_.serves(slave)) {
      LogWarning(absl::StrCat("transfer: refused ", caller.Describe(), ": not bootstrapping"));
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          absl::StrCat(slave, " is not a slave the controller has bootstrapping "
                                              "from this node (as of its current desired state)"));
    }
    std::unique_lock<std::timed_mutex> lock(busy_, std::defer_lock);
    if (!lock.try_lock_for(options_.busy_wait)) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "another backup is being streamed from this node; retry later");
    }
    const auto start = std::chrono::steady_clock::now();
    uint64_t sent = 0;
    LogInfo(absl::StrCat("transfer: streaming a backup to ", slave));
    StallGuard guard(context, options_.stall_timeout);
    v1::BackupChunk message;
    absl::Status status =
        engine_->StreamBackup(slave, [&](std::string_view chunk, uint64_t total) -> absl::Status {
          if (context->IsCancelled()) return absl::CancelledError("the slave's agent cancelled");
          message.set_data(chunk.data(), chunk.size());
          message.set_total_bytes_estimate(total);
          guard.Writing(true);
          const bool written = writer->Write(message);
          guard.Writing(false);
          if (!written) {
            return guard.stalled()
                       ? absl::DeadlineExceededError(absl::StrCat(
                             "the slave's agent took nothing for ",
                             options_.stall_timeout.count() / 1000.0, " s: cut off"))
                       : absl::UnavailableError("the slave's agent went away");
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
  // Cancels the call when one write blocks longer than `limit` (a reader
  // that stopped reading keeps the backup tool, and this node's only
  // transfer slot, busy otherwise).
  class StallGuard {
   public:
    StallGuard(grpc::ServerContext* context, std::chrono::milliseconds limit)
        : context_(context), limit_(limit), thread_([this] { Run(); }) {}
    ~StallGuard() {
      {
        std::lock_guard<std::mutex> lock(mu_);
        done_ = true;
      }
      cv_.notify_all();
      thread_.join();
    }
    void Writing(bool writing) {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = writing;
      since_ = std::chrono::steady_clock::now();
      cv_.notify_all();
    }
    bool stalled() {
      std::lock_guard<std::mutex> lock(mu_);
      return stalled_;
    }

   private:
    void Run() {
      std::unique_lock<std::mutex> lock(mu_);
      while (!done_) {
        if (writing_ && std::chrono::steady_clock::now() - since_ >= limit_) {
          stalled_ = true;
          LogWarning("transfer: the slave's agent stopped reading; cutting it off");
          context_->TryCancel();
          return;
        }
        if (writing_) {
          cv_.wait_until(lock, since_ + limit_);
        } else {
          cv_.wait(lock);
        }
      }
    }

    grpc::ServerContext* const context_;
    const std::chrono::milliseconds limit_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
    bool writing_ = false;
    bool stalled_ = false;
    std::chrono::steady_clock::time_point since_;
    std::thread thread_;
  };

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
  std::shared_ptr<TlsCredentials> tls = options.tls;
  std::unique_ptr<TransferServer> server(new TransferServer());
  server->service_ = std::make_unique<TransferService>(std::move(options), std::move(engine));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, ServerCredentialsFor(tls.get()), &server->port_);
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

#include "agent/transfer_client.h"

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "tandem.grpc.pb.h"

namespace tandem {

absl::Status GrpcBackupSource::Fetch(const Peer& upstream, const std::string& self_id,
                                     const BackupSink& sink) {
  const std::string host = upstream.host.find(':') != std::string::npos
                               ? absl::StrCat("[", upstream.host, "]")
                               : upstream.host;
  const std::string target = absl::StrCat(host, ":", upstream.transfer_port);
  const std::string who = absl::StrCat(upstream.id, "'s agent at ", target);
  if (upstream.transfer_port == 0) {
    return absl::UnavailableError(
        absl::StrCat(upstream.id, "'s agent serves no transfers (no transfer_listen)"));
  }
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 16 << 20);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(target, ChannelCredentialsFor(tls_.get(), Identity::Node(upstream.id)),
                                args);
  std::unique_ptr<v1::Transfer::Stub> stub = v1::Transfer::NewStub(channel);

  grpc::ClientContext context;
  v1::FetchBackupRequest request;
  request.set_slave_id(self_id);
  request.set_engine_kind(std::string(EngineName(engine_)));
  std::unique_ptr<grpc::ClientReader<v1::BackupChunk>> reader = stub->FetchBackup(&context, request);
  v1::BackupChunk chunk;
  absl::Status sink_status;
  while (reader->Read(&chunk)) {
    sink_status = sink(chunk.data(), chunk.total_bytes_estimate());
    if (!sink_status.ok()) {
      context.TryCancel();
      break;
    }
  }
  grpc::Status status = reader->Finish();
  if (!sink_status.ok()) return sink_status;
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("while fetching the backup from ", who, ": ",
                                   status.error_message()));
}

}  // namespace tandem

// The slave side of the agent-to-agent transfer: a BackupSource that calls
// Transfer.FetchBackup on the upstream's agent (at upstream.host,
// upstream.transfer_port) and hands each chunk to the engine's sink, in
// order. Reading the next chunk waits until the sink has returned, so a slow
// sink slows the master's backup tool down (gRPC flow control) instead of
// filling memory.
//
// Status codes: the sink's own error when it aborted the stream (the call is
// cancelled); otherwise the gRPC status of the call as an absl::Status of
// the same code (UNAVAILABLE when the upstream's agent cannot be reached or
// the stream broke, UNAUTHENTICATED / PERMISSION_DENIED when it refuses this
// node, FAILED_PRECONDITION when it cannot make a backup), with context.
// Unavailable as well when the upstream has no transfer port.
//
// Thread-safety: Fetch may be called from several threads at once.
#ifndef TANDEM_AGENT_TRANSFER_CLIENT_H_
#define TANDEM_AGENT_TRANSFER_CLIENT_H_

#include <string>

#include "common/types.h"
#include "engines/engine.h"
#include "security/tls.h"

namespace tandem {

class GrpcBackupSource : public BackupSource {
 public:
  // `tls`: this node's certificate (the upstream's agent serves only the
  // slave it names) and the CA; the upstream's certificate must name the
  // upstream node and the host dialled. Null: plaintext (insecure mode).
  // `engine`: this node's engine kind, sent so that the upstream can refuse
  // a mismatch.
  GrpcBackupSource(std::shared_ptr<TlsCredentials> tls, EngineType engine)
      : tls_(std::move(tls)), engine_(engine) {}

  absl::Status Fetch(const Peer& upstream, const std::string& self_id,
                     const BackupSink& sink) override;

 private:
  const std::shared_ptr<TlsCredentials> tls_;
  const EngineType engine_;
};

}  // namespace tandem

#endif  // TANDEM_AGENT_TRANSFER_CLIENT_H_

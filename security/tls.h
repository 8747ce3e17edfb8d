// gRPC credentials for every Tandem link (tandemctl -> controller, agent ->
// controller, agent -> agent), mutual TLS against the cluster's CA, and the
// identity of the peer of a call.
//
// Both sides verify each other: a server requires a client certificate
// signed by the CA (the handshake fails otherwise: no certificate, another
// CA, an expired one); a client checks that the server's certificate is
// signed by the CA, names the host it dialled (an IP or DNS alternative
// name) and names the identity it expects (a controller, or node db1 for a
// transfer from db1). What a verified client may do is decided per call
// (security/identity.h: Authorize*).
//
// TLS 1.2 is the least gRPC negotiates; with OpenSSL 3 peers agree on 1.3.
//
// Reload: the credentials hand gRPC private in-memory copies of the
// material (memfd), which gRPC re-reads every 5 seconds; Reload() checks new
// files first and swaps the copies only when they pass, so a half-written
// or wrong file never reaches a handshake. Established connections keep
// their session; new handshakes use the new certificate.
#ifndef TANDEM_SECURITY_TLS_H_
#define TANDEM_SECURITY_TLS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "security/certs.h"
#include "security/identity.h"

namespace grpc {
class ChannelCredentials;
class ServerCredentials;
class ServerContext;
namespace experimental {
class FileWatcherCertificateProvider;
}  // namespace experimental
}  // namespace grpc

namespace tandem {

class TlsCredentials {
 public:
  // Loads and checks `files` (LoadTlsMaterial): this process's certificate
  // must name an identity of `kind` (and `name`, unless empty).
  static absl::StatusOr<std::shared_ptr<TlsCredentials>> Load(TlsFiles files, IdentityKind kind,
                                                               std::string name);
  ~TlsCredentials();
  TlsCredentials(const TlsCredentials&) = delete;
  TlsCredentials& operator=(const TlsCredentials&) = delete;

  // Reads the files again; when they pass the same checks, handshakes from
  // about a second on use them. Otherwise the error (naming the file) and
  // the material in use stays. Thread-safe.
  absl::Status Reload();

  // What the certificate in use says (its expiry, for /metrics).
  CertificateInfo info() const;

  // For a server: requires and verifies client certificates.
  std::shared_ptr<grpc::ServerCredentials> Server() const;
  // For a client of a server that must be `expected` (kind, and the name
  // unless it is empty) and name the host of the target.
  std::shared_ptr<grpc::ChannelCredentials> Channel(const Identity& expected) const;

 private:
  TlsCredentials() = default;
  absl::Status Install(const TlsMaterial& material) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  TlsFiles files_;
  IdentityKind kind_ = IdentityKind::kNone;
  std::string name_;
  mutable absl::Mutex mu_;
  CertificateInfo info_ ABSL_GUARDED_BY(mu_);
  int ca_fd_ = -1;        // memfd: the CA certificate
  int identity_fd_ = -1;  // memfd: key and certificate, swapped as one
  std::shared_ptr<grpc::experimental::FileWatcherCertificateProvider> provider_;
};

// Insecure transport where `tls` is null (insecure mode: loopback only).
std::shared_ptr<grpc::ServerCredentials> ServerCredentialsFor(const TlsCredentials* tls);
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsFor(const TlsCredentials* tls,
                                                                const Identity& expected);

// Who is calling: the identity of the client's verified certificate on a
// secure server; Identity::Insecure() when `secure` is false; an identity
// of kind kNone when the peer showed no Tandem identity.
Identity PeerIdentity(const grpc::ServerContext& context, bool secure);

// The addresses (IP and DNS alternative names) of the client's verified
// certificate; empty on an insecure server.
std::vector<std::string> PeerCertificateAddresses(const grpc::ServerContext& context);

}  // namespace tandem

#endif  // TANDEM_SECURITY_TLS_H_

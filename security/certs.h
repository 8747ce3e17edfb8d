// The cluster's certificates, with OpenSSL's library: create a CA and the
// certificates it signs (tandemctl cert), read what a certificate says, and
// check a process's TLS files before it uses them. No gRPC here.
//
// Keys are ECDSA P-256, signatures SHA-256. A leaf certificate names one
// identity (security/identity.h) as a URI subject alternative name, and its
// addresses (IP literals, DNS names) as IP/DNS alternative names, which is
// what peers check a connection's host against.
#ifndef TANDEM_SECURITY_CERTS_H_
#define TANDEM_SECURITY_CERTS_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "security/identity.h"

namespace tandem {

// A private key and its certificate, PEM encoded.
struct KeyAndCert {
  std::string key_pem;
  std::string cert_pem;
};

// What a certificate says.
struct CertificateInfo {
  std::string common_name;
  std::string issuer_common_name;
  bool is_ca = false;
  std::optional<Identity> identity;      // the Tandem identity it names, if any
  std::vector<std::string> addresses;    // IP and DNS alternative names
  absl::Time not_before;
  absl::Time not_after;
  std::string serial;                    // hex
  std::string sha256_fingerprint;        // hex, colon separated
};

// A new self-signed CA named `name` (common name "<name> CA"), valid for
// `days` from `now`.
absl::StatusOr<KeyAndCert> CreateCa(std::string_view name, int days, absl::Time now);

// What a leaf certificate is for.
struct LeafRequest {
  Identity identity;                    // kNode, kController or kOperator
  std::vector<std::string> addresses;   // checked with CheckHostAddress
  int days = 365;
};

// A certificate for `request`, signed by `ca`. Nodes and controllers get
// both server and client use (they accept connections and make them);
// operators client use only. InvalidArgument for a bad identity or
// address, FailedPrecondition for a CA that cannot sign (not a CA, key
// does not match).
absl::StatusOr<KeyAndCert> IssueCertificate(const KeyAndCert& ca, const LeafRequest& request,
                                            absl::Time now);

// The first certificate in `pem`. InvalidArgument when there is none.
absl::StatusOr<CertificateInfo> InspectCertificate(std::string_view pem);

// `cert_pem` chains to `ca_pem` and is valid at `now`. InvalidArgument with
// OpenSSL's reason otherwise ("certificate has expired", ...).
absl::Status VerifyCertificate(std::string_view ca_pem, std::string_view cert_pem,
                               absl::Time now);

// Where a process finds its TLS material.
struct TlsFiles {
  std::string ca_file;    // the cluster's CA certificate
  std::string cert_file;  // this process's certificate
  std::string key_file;   // its private key (mode 0600)
};

// The loaded and checked material of one process.
struct TlsMaterial {
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
  CertificateInfo info;  // of cert_pem
};

// Reads `files` and checks them: the CA is a CA; the certificate chains to
// it and is valid at `now`; the key matches it and only its owner can read
// it (ReadSecretFile); the certificate names an identity of `kind` and,
// unless `name` is empty, that name. Every error names the file and says
// what to do (how to create or renew the certificate).
absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsFiles& files, IdentityKind kind,
                                            std::string_view name, absl::Time now);

// How to make the certificate a process of `kind` named `name` lacks:
// "tandemctl cert create-node db1 --address ADDRESS", ...
std::string CreateCertificateHint(IdentityKind kind, std::string_view name);

}  // namespace tandem

#endif  // TANDEM_SECURITY_CERTS_H_

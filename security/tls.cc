#include "security/tls.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/address.h"

namespace tandem {
namespace {

// gRPC re-reads its copies this often; a Reload() takes effect within it.
// (Each look costs a wake-up of its own thread: every second, that was a
// fifth of an idle agent's CPU time.)
constexpr unsigned kRefreshSeconds = 5;

std::string FdPath(int fd) { return absl::StrCat("/proc/self/fd/", fd); }

// A new sealed-size-free memfd holding `content`.
absl::StatusOr<int> MemFile(const std::string& content) {
  const int fd = memfd_create("tandem-tls", MFD_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("memfd_create: ", std::strerror(errno)));
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      close(fd);
      return absl::InternalError(absl::StrCat("writing a memfd: ", std::strerror(e)));
    }
    done += static_cast<size_t>(n);
  }
  return fd;
}

// Puts `content` behind descriptor number `*fd` (a new one when -1): a
// reader that opens /proc/self/fd/N sees the old or the new file whole.
absl::Status ReplaceMemFile(int* fd, const std::string& content) {
  absl::StatusOr<int> fresh = MemFile(content);
  if (!fresh.ok()) return fresh.status();
  if (*fd < 0) {
    *fd = *fresh;
    return absl::OkStatus();
  }
  if (dup3(*fresh, *fd, O_CLOEXEC) < 0) {
    const int e = errno;
    close(*fresh);
    return absl::InternalError(absl::StrCat("dup3: ", std::strerror(e)));
  }
  close(*fresh);
  return absl::OkStatus();
}

std::string Str(const grpc::string_ref& s) { return std::string(s.data(), s.size()); }

// The client side's check of a server, after the chain was verified: the
// certificate names the host dialled and the identity expected.
class ServerVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit ServerVerifier(Identity expected) : expected_(std::move(expected)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> /*callback*/,
              grpc::Status* sync_status) override {
    *sync_status = Check(*request);
    return true;
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest* /*request*/) override {}

 private:
  grpc::Status Check(const grpc::experimental::TlsCustomVerificationCheckRequest& request) const {
    std::vector<std::string> names;
    for (const grpc::string_ref& ip : request.ip_names()) names.push_back(Str(ip));
    for (const grpc::string_ref& dns : request.dns_names()) names.push_back(Str(dns));
    const std::string host = HostOfHostPort(Str(request.target_name()));
    bool host_named = false;
    for (const std::string& name : names) host_named = host_named || SameHostAddress(name, host);
    if (!host_named) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          absl::StrCat("the server's certificate does not name ", host,
                                       " (it names ", absl::StrJoin(names, ", "), ")"));
    }
    std::string found = "no Tandem identity";
    for (const grpc::string_ref& uri : request.uri_names()) {
      absl::StatusOr<Identity> id = ParseSpiffeId(Str(uri));
      if (!id.ok()) continue;
      if (id->kind == expected_.kind && (expected_.name.empty() || id->name == expected_.name)) {
        return grpc::Status::OK;
      }
      found = id->Describe();
    }
    return grpc::Status(
        grpc::StatusCode::UNAUTHENTICATED,
        absl::StrCat("the server at ", host, " is ", found, ", not ",
                     expected_.name.empty() ? "a controller" : expected_.Describe()));
  }

  const Identity expected_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<TlsCredentials>> TlsCredentials::Load(TlsFiles files,
                                                                     IdentityKind kind,
                                                                     std::string name) {
  absl::StatusOr<TlsMaterial> material = LoadTlsMaterial(files, kind, name, absl::Now());
  if (!material.ok()) return material.status();
  std::shared_ptr<TlsCredentials> creds(new TlsCredentials());
  creds->files_ = std::move(files);
  creds->kind_ = kind;
  creds->name_ = std::move(name);
  {
    absl::MutexLock lock(&creds->mu_);
    if (absl::Status st = creds->Install(*material); !st.ok()) return st;
  }
  creds->provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      FdPath(creds->identity_fd_), FdPath(creds->identity_fd_), FdPath(creds->ca_fd_),
      kRefreshSeconds);
  return creds;
}

TlsCredentials::~TlsCredentials() {
  provider_.reset();
  if (ca_fd_ >= 0) close(ca_fd_);
  if (identity_fd_ >= 0) close(identity_fd_);
}

absl::Status TlsCredentials::Install(const TlsMaterial& material) {
  // The key and the certificate live in one file, swapped in one step, so
  // gRPC never reads a new certificate with the old key.
  if (absl::Status st = ReplaceMemFile(&identity_fd_, material.cert_pem + material.key_pem);
      !st.ok()) {
    return st;
  }
  if (absl::Status st = ReplaceMemFile(&ca_fd_, material.ca_pem); !st.ok()) return st;
  info_ = material.info;
  return absl::OkStatus();
}

absl::Status TlsCredentials::Reload() {
  absl::StatusOr<TlsMaterial> material = LoadTlsMaterial(files_, kind_, name_, absl::Now());
  if (!material.ok()) return material.status();
  absl::MutexLock lock(&mu_);
  return Install(*material);
}

CertificateInfo TlsCredentials::info() const {
  absl::MutexLock lock(&mu_);
  return info_;
}

std::shared_ptr<grpc::ServerCredentials> TlsCredentials::Server() const {
  grpc::experimental::TlsServerCredentialsOptions options(provider_);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> TlsCredentials::Channel(const Identity& expected) const {
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider_);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  options.set_check_call_host(false);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<ServerVerifier>(expected));
  return grpc::experimental::TlsCredentials(options);
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentialsFor(const TlsCredentials* tls) {
  return tls != nullptr ? tls->Server() : grpc::InsecureServerCredentials();
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsFor(const TlsCredentials* tls,
                                                                const Identity& expected) {
  return tls != nullptr ? tls->Channel(expected) : grpc::InsecureChannelCredentials();
}

Identity PeerIdentity(const grpc::ServerContext& context, bool secure) {
  if (!secure) return Identity::Insecure();
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return Identity{};
  for (const grpc::string_ref& uri : auth->FindPropertyValues(GRPC_PEER_URI_PROPERTY_NAME)) {
    if (absl::StatusOr<Identity> id = ParseSpiffeId(Str(uri)); id.ok()) return *id;
  }
  return Identity{};
}

std::vector<std::string> PeerCertificateAddresses(const grpc::ServerContext& context) {
  std::vector<std::string> out;
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr) return out;
  for (const char* property : {GRPC_PEER_IP_PROPERTY_NAME, GRPC_PEER_DNS_PROPERTY_NAME}) {
    for (const grpc::string_ref& value : auth->FindPropertyValues(property)) {
      out.push_back(Str(value));
    }
  }
  return out;
}

}  // namespace tandem

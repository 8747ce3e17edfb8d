#include "tests/harness/pki.h"

#include <cstdio>
#include <cstdlib>

#include "common/files.h"

namespace tandem::testing {
namespace {

void Check(const absl::Status& status, const char* what) {
  if (status.ok()) return;
  std::fprintf(stderr, "TestPki: %s: %s\n", what, std::string(status.message()).c_str());
  std::abort();
}

}  // namespace

TestPki::TestPki(std::string dir, const std::string& name) : dir_(std::move(dir)) {
  Check(MakeDirs(dir_), "creating the directory");
  absl::StatusOr<KeyAndCert> ca = CreateCa(name, 30, absl::Now());
  Check(ca.status(), "creating the CA");
  ca_ = *std::move(ca);
  Check(WriteFileAtomic(ca_file(), ca_.cert_pem, 0644), "writing ca.crt");
  Check(WriteFileAtomic(dir_ + "/ca.key", ca_.key_pem, 0600), "writing ca.key");
}

TlsFiles TestPki::Issue(const std::string& file, const Identity& identity,
                        std::vector<std::string> addresses, int days, absl::Time now) {
  absl::StatusOr<KeyAndCert> kc = IssueCertificate(ca_, {identity, std::move(addresses), days}, now);
  Check(kc.status(), "issuing a certificate");
  TlsFiles files{ca_file(), dir_ + "/" + file + ".crt", dir_ + "/" + file + ".key"};
  Check(WriteFileAtomic(files.cert_file, kc->cert_pem, 0644), "writing a certificate");
  Check(WriteFileAtomic(files.key_file, kc->key_pem, 0600), "writing a key");
  return files;
}

}  // namespace tandem::testing

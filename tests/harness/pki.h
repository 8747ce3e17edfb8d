// A cluster's certificates for in-process tests: a CA and the certificates
// it signs, written into a directory with the file names `tandemctl cert`
// uses (ca.crt, controller.crt/.key, node.ID.crt/.key, client.NAME.crt/.key).
// End-to-end tests make theirs with tandemctl itself.
#ifndef TANDEM_TESTS_HARNESS_PKI_H_
#define TANDEM_TESTS_HARNESS_PKI_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "security/certs.h"
#include "security/identity.h"

namespace tandem::testing {

class TestPki {
 public:
  // A new CA named `name` in `dir` (ca.crt). Aborts the test on failure.
  explicit TestPki(std::string dir, const std::string& name = "test");

  const std::string& dir() const { return dir_; }
  std::string ca_file() const { return dir_ + "/ca.crt"; }

  // A certificate for `identity` naming `addresses`, valid for `days` from
  // `now`, written as <dir>/<file>.crt and .key (mode 0600).
  TlsFiles Issue(const std::string& file, const Identity& identity,
                 std::vector<std::string> addresses = {"127.0.0.1"}, int days = 10,
                 absl::Time now = absl::Now());
  // The usual ones: controller.*, node.<id>.*, client.<name>.*.
  TlsFiles Controller() { return Issue("controller", Identity::Controller("controller")); }
  TlsFiles Node(const std::string& id, std::vector<std::string> addresses = {"127.0.0.1"}) {
    return Issue("node." + id, Identity::Node(id), std::move(addresses));
  }
  TlsFiles Client(const std::string& name, OperatorRole role = OperatorRole::kAdmin) {
    return Issue("client." + name, Identity::Operator(name, role), {});
  }

 private:
  std::string dir_;
  KeyAndCert ca_;
};

}  // namespace tandem::testing

#endif  // TANDEM_TESTS_HARNESS_PKI_H_

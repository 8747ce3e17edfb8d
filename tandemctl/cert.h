// tandemctl cert: creates and lists the cluster's certificates in a
// directory (security/certs.h does the cryptography). No controller is
// involved. File names:
//   ca.crt, ca.key                    create-ca (the key: --ca-key elsewhere)
//   controller.crt, controller.key    create-controller
//   node.NODE.crt, node.NODE.key      create-node NODE
//   client.NAME.crt, client.NAME.key  create-client NAME --role admin|viewer
// Keys are written with mode 0600, certificates 0644. A CA is never
// overwritten; a leaf certificate created again is renewed (its files
// replaced whole).
#ifndef TANDEM_TANDEMCTL_CERT_H_
#define TANDEM_TANDEMCTL_CERT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandemctl/args.h"

namespace tandem::cli {

// Runs one of the cert verbs of `command`; returns what to print.
// Errors name the file and what to do.
absl::StatusOr<std::string> RunCert(const Command& command, absl::Time now);

// The client certificate tandemctl speaks with: <dir>/client.<user>.crt,
// or with `user` empty the only client.*.crt in `dir`. The error says how to
// make one, or to choose with --user.
absl::StatusOr<std::string> FindClientUser(const std::string& dir, const std::string& user);

}  // namespace tandem::cli

#endif  // TANDEM_TANDEMCTL_CERT_H_

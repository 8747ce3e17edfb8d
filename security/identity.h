// Who is calling: the identities Tandem's certificates carry, and what each
// may do. Pure (no I/O, no TLS library): security/certs.h reads identities
// out of certificates, security/tls.h out of a gRPC call.
//
// Every certificate the cluster's CA signs names exactly one identity, as a
// URI subject alternative name in SPIFFE form (trust domain "tandem"):
//   spiffe://tandem/node/<node id>            an agent, for its node only
//   spiffe://tandem/controller/<name>         a controller
//   spiffe://tandem/operator/<role>/<name>    an operator: role admin | viewer
#ifndef TANDEM_SECURITY_IDENTITY_H_
#define TANDEM_SECURITY_IDENTITY_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tandem {

enum class IdentityKind {
  kNone,        // no identity: a call without a verified certificate
  kInsecure,    // insecure mode (loopback only): every local caller is trusted
  kNode,        // an agent
  kController,  // a controller
  kOperator,    // tandemctl
};

// An operator's role. kAdmin: every verb; kViewer: read-only verbs.
enum class OperatorRole { kNone, kViewer, kAdmin };

struct Identity {
  IdentityKind kind = IdentityKind::kNone;
  std::string name;  // node id, controller name or operator name
  OperatorRole role = OperatorRole::kNone;  // operators only

  static Identity Node(std::string id) { return {IdentityKind::kNode, std::move(id)}; }
  static Identity Controller(std::string name) {
    return {IdentityKind::kController, std::move(name)};
  }
  static Identity Operator(std::string name, OperatorRole role) {
    return {IdentityKind::kOperator, std::move(name), role};
  }
  static Identity Insecure() { return {IdentityKind::kInsecure, ""}; }

  // "node db1", "controller ctl1", "operator alice (viewer)",
  // "a caller without a certificate", "a local caller (insecure mode)".
  std::string Describe() const;

  bool operator==(const Identity&) const = default;
};

// "admin", "viewer" ("" for kNone); ParseOperatorRole accepts those two.
std::string_view OperatorRoleName(OperatorRole role);
absl::StatusOr<OperatorRole> ParseOperatorRole(std::string_view text);

// Names in identities: 1..128 of letters, digits, '.', '_', '-' (node ids
// are the same; see the registry). InvalidArgument naming `what`.
absl::Status CheckIdentityName(std::string_view what, std::string_view name);

// The URI of an identity (kNode, kController, kOperator), and back.
// ParseSpiffeId: InvalidArgument for a URI that is not one of the forms
// above (another trust domain, an unknown kind or role, a bad name).
std::string SpiffeId(const Identity& identity);
absl::StatusOr<Identity> ParseSpiffeId(std::string_view uri);

// ---- What each identity may do. A denial is PermissionDenied and names
// the caller and what was denied; kInsecure is allowed everything.

// An agent acting for node `node_id` (Watch, Report, Register, a backup
// fetch): only that node's own certificate.
absl::Status AuthorizeNodeCall(const Identity& caller, std::string_view node_id,
                               std::string_view what);

// tandemctl. `change`: a verb that changes desired state (admin only);
// otherwise a read (admin or viewer). Node and controller certificates are
// not operators.
absl::Status AuthorizeOperatorCall(const Identity& caller, bool change, std::string_view what);

}  // namespace tandem

#endif  // TANDEM_SECURITY_IDENTITY_H_

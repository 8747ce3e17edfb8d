#include "security/identity.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tandem {
namespace {

constexpr std::string_view kPrefix = "spiffe://tandem/";
constexpr size_t kMaxName = 128;

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

std::string Identity::Describe() const {
  switch (kind) {
    case IdentityKind::kNode:
      return absl::StrCat("node ", name);
    case IdentityKind::kController:
      return absl::StrCat("controller ", name);
    case IdentityKind::kOperator:
      return absl::StrCat("operator ", name, " (", AV(OperatorRoleName(role)), ")");
    case IdentityKind::kInsecure:
      return "a local caller (insecure mode)";
    case IdentityKind::kNone:
      break;
  }
  return "a caller without a certificate";
}

std::string_view OperatorRoleName(OperatorRole role) {
  switch (role) {
    case OperatorRole::kAdmin:
      return "admin";
    case OperatorRole::kViewer:
      return "viewer";
    case OperatorRole::kNone:
      break;
  }
  return "";
}

absl::StatusOr<OperatorRole> ParseOperatorRole(std::string_view text) {
  if (text == "admin") return OperatorRole::kAdmin;
  if (text == "viewer") return OperatorRole::kViewer;
  return absl::InvalidArgumentError(
      absl::StrCat("role \"", AV(text), "\" is not admin or viewer"));
}

absl::Status CheckIdentityName(std::string_view what, std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat("the ", AV(what), " is empty"));
  if (name.size() > kMaxName) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ", AV(what), " is longer than ", kMaxName, " characters"));
  }
  for (char c : name) {
    if (!IsNameChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the ", AV(what), " \"", AV(name), "\" has a character other than letters, digits, "
          "'.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

std::string SpiffeId(const Identity& identity) {
  switch (identity.kind) {
    case IdentityKind::kNode:
      return absl::StrCat(AV(kPrefix), "node/", identity.name);
    case IdentityKind::kController:
      return absl::StrCat(AV(kPrefix), "controller/", identity.name);
    case IdentityKind::kOperator:
      return absl::StrCat(AV(kPrefix), "operator/", AV(OperatorRoleName(identity.role)), "/",
                          identity.name);
    default:
      break;
  }
  return "";
}

absl::StatusOr<Identity> ParseSpiffeId(std::string_view uri) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", AV(uri), "\" is not a Tandem identity: ", AV(why)));
  };
  if (uri.substr(0, kPrefix.size()) != kPrefix) {
    return bad("it does not start with spiffe://tandem/");
  }
  std::vector<std::string> parts = absl::StrSplit(AV(uri.substr(kPrefix.size())), '/');
  Identity identity;
  if (parts.size() == 2 && parts[0] == "node") {
    identity = Identity::Node(parts[1]);
  } else if (parts.size() == 2 && parts[0] == "controller") {
    identity = Identity::Controller(parts[1]);
  } else if (parts.size() == 3 && parts[0] == "operator") {
    absl::StatusOr<OperatorRole> role = ParseOperatorRole(parts[1]);
    if (!role.ok()) return bad(std::string(role.status().message()));
    identity = Identity::Operator(parts[2], *role);
  } else {
    return bad("want node/ID, controller/NAME or operator/admin|viewer/NAME");
  }
  if (absl::Status st = CheckIdentityName("name", identity.name); !st.ok()) {
    return bad(std::string(st.message()));
  }
  return identity;
}

absl::Status AuthorizeNodeCall(const Identity& caller, std::string_view node_id,
                               std::string_view what) {
  if (caller.kind == IdentityKind::kInsecure) return absl::OkStatus();
  if (caller.kind == IdentityKind::kNode && caller.name == node_id) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      caller.Describe(), " may not ", AV(what), " as node ", AV(node_id),
      caller.kind == IdentityKind::kNode ? ": a node certificate acts for its own node only"
                                         : ": only that node's own certificate may"));
}

absl::Status AuthorizeOperatorCall(const Identity& caller, bool change, std::string_view what) {
  if (caller.kind == IdentityKind::kInsecure) return absl::OkStatus();
  if (caller.kind == IdentityKind::kOperator) {
    if (caller.role == OperatorRole::kAdmin) return absl::OkStatus();
    if (caller.role == OperatorRole::kViewer && !change) return absl::OkStatus();
    return absl::PermissionDeniedError(absl::StrCat(
        caller.Describe(), " may not ", AV(what), ": it needs an admin certificate"));
  }
  return absl::PermissionDeniedError(absl::StrCat(caller.Describe(), " may not ", AV(what),
                                                  ": only operator certificates may"));
}

}  // namespace tandem

#include "tandemctl/cert.h"

#include <dirent.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "nlohmann/json.hpp"
#include "security/certs.h"

namespace tandem::cli {
namespace {

constexpr int kCaDays = 3650;
constexpr int kLeafDays = 365;

std::string Date(absl::Time t) { return absl::FormatTime("%Y-%m-%d", t, absl::UTCTimeZone()); }

std::vector<std::string> FilesEnding(const std::string& dir, absl::string_view prefix,
                                     absl::string_view suffix) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() > prefix.size() + suffix.size() && absl::StartsWith(name, prefix) &&
        absl::EndsWith(name, suffix)) {
      out.push_back(name);
    }
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string CaKeyPath(const Command& c) {
  return c.ca_key.empty() ? c.certs_dir + "/ca.key" : c.ca_key;
}

absl::StatusOr<KeyAndCert> ReadCa(const Command& c) {
  const std::string cert_file = c.certs_dir + "/ca.crt";
  absl::StatusOr<std::string> cert = ReadFile(cert_file);
  if (!cert.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        cert.status().message(), " (create the cluster's CA first: tandemctl cert create-ca",
        c.certs_dir == kDefaultCertsDir ? "" : absl::StrCat(" --certs-dir ", c.certs_dir), ")"));
  }
  absl::StatusOr<std::string> key = ReadSecretFile(CaKeyPath(c));
  if (!key.ok()) {
    return absl::Status(key.status().code(),
                        absl::StrCat("the CA key: ", key.status().message(),
                                     " (give its place with --ca-key FILE)"));
  }
  return KeyAndCert{*std::move(key), *std::move(cert)};
}

// The name of user `uid`, else "uid N".
std::string UserName(uid_t uid) {
  struct passwd pw {};
  struct passwd* found = nullptr;
  char buffer[4096];
  if (::getpwuid_r(uid, &pw, buffer, sizeof buffer, &found) == 0 && found != nullptr) {
    return found->pw_name;
  }
  return absl::StrCat("uid ", uid);
}

// Writes a key and a certificate: the key first (mode 0600), so that a
// certificate never lies next to a key that does not match it for long.
// Renewed files keep the owner and group of those they replace: the
// controller's key belongs to the tandem user it runs as, and a reload
// (SIGHUP) must still be able to read the new one. Returns the owner kept
// when it is another user's ("" otherwise).
absl::StatusOr<std::string> WritePair(const std::string& base, const KeyAndCert& kc) {
  struct Old {
    std::string path;
    bool exists = false;
    struct stat st {};
  };
  Old key{base + ".key"}, cert{base + ".crt"};
  for (Old* old : {&key, &cert}) old->exists = ::lstat(old->path.c_str(), &old->st) == 0;
  if (absl::Status st = WriteFileAtomic(key.path, kc.key_pem, 0600); !st.ok()) return st;
  if (absl::Status st = WriteFileAtomic(cert.path, kc.cert_pem, 0644); !st.ok()) return st;
  std::string kept;
  for (const Old* old : {&key, &cert}) {
    if (!old->exists || (old->st.st_uid == ::geteuid() && old->st.st_gid == ::getegid())) continue;
    if (::chown(old->path.c_str(), old->st.st_uid, old->st.st_gid) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          "renewed ", old->path, " but could not give it back to uid ", old->st.st_uid, " gid ",
          old->st.st_gid, " (", std::strerror(errno), "): chown it before reloading"));
    }
    if (old == &key && old->st.st_uid != ::geteuid()) kept = UserName(old->st.st_uid);
  }
  return kept;
}

absl::StatusOr<std::string> CreateCaFiles(const Command& c, absl::Time now) {
  const std::string cert_file = c.certs_dir + "/ca.crt";
  const std::string key_file = CaKeyPath(c);
  for (const std::string& file : {cert_file, key_file}) {
    if (PathExists(file)) {
      return absl::AlreadyExistsError(absl::StrCat(
          file, " exists: a new CA would leave every certificate of the old one untrusted; "
                "move it away first if that is what you want"));
    }
  }
  absl::StatusOr<KeyAndCert> ca = CreateCa(c.ca_name, c.days > 0 ? c.days : kCaDays, now);
  if (!ca.ok()) return ca.status();
  if (absl::Status st = MakeDirs(c.certs_dir); !st.ok()) return st;
  if (absl::Status st = WriteFileAtomic(key_file, ca->key_pem, 0600); !st.ok()) return st;
  if (absl::Status st = WriteFileAtomic(cert_file, ca->cert_pem, 0644); !st.ok()) return st;
  absl::StatusOr<CertificateInfo> info = InspectCertificate(ca->cert_pem);
  return absl::StrCat("wrote ", cert_file, " and ", key_file, " (", info->common_name,
                      ", expires ", Date(info->not_after),
                      "); keep the key off the database hosts\n");
}

absl::StatusOr<std::string> CreateLeaf(const Command& c, const Identity& identity,
                                       const std::string& base_name, absl::Time now) {
  absl::StatusOr<KeyAndCert> ca = ReadCa(c);
  if (!ca.ok()) return ca.status();
  absl::StatusOr<KeyAndCert> kc =
      IssueCertificate(*ca, {identity, c.addresses, c.days > 0 ? c.days : kLeafDays}, now);
  if (!kc.ok()) return kc.status();
  const std::string base = c.certs_dir + "/" + base_name;
  const bool renewed = PathExists(base + ".crt");
  absl::StatusOr<std::string> kept_owner = WritePair(base, *kc);
  if (!kept_owner.ok()) return kept_owner.status();
  absl::StatusOr<CertificateInfo> info = InspectCertificate(kc->cert_pem);
  std::string line = absl::StrCat(renewed ? "renewed " : "wrote ", base, ".crt and ", base_name,
                                  ".key (", identity.Describe());
  if (!c.addresses.empty()) absl::StrAppend(&line, "; addresses ", absl::StrJoin(c.addresses, ", "));
  absl::StrAppend(&line, "; expires ", Date(info->not_after));
  if (!kept_owner->empty()) absl::StrAppend(&line, "; owner ", *kept_owner, " kept");
  absl::StrAppend(&line, ")\n");
  if (renewed) absl::StrAppend(&line, "send SIGHUP to the process that uses it to reload it\n");
  return line;
}

absl::StatusOr<std::string> List(const Command& c, absl::Time now) {
  std::vector<std::string> files = FilesEnding(c.certs_dir, "", ".crt");
  if (files.empty()) {
    return absl::NotFoundError(absl::StrCat("no certificate (*.crt) in ", c.certs_dir,
                                            " (tandemctl cert create-ca makes the first)"));
  }
  nlohmann::json rows = nlohmann::json::array();
  std::vector<std::vector<std::string>> table = {
      {"FILE", "IDENTITY", "ROLE", "ADDRESSES", "EXPIRES", "DAYS LEFT"}};
  for (const std::string& file : files) {
    absl::StatusOr<std::string> pem = ReadFile(c.certs_dir + "/" + file);
    absl::StatusOr<CertificateInfo> info =
        pem.ok() ? InspectCertificate(*pem) : absl::StatusOr<CertificateInfo>(pem.status());
    if (!info.ok()) {
      table.push_back({file, absl::StrCat("unreadable: ", info.status().message()), "", "", "", ""});
      rows.push_back({{"file", file}, {"error", std::string(info.status().message())}});
      continue;
    }
    std::string identity = info->is_ca ? absl::StrCat("CA ", info->common_name)
                           : info->identity ? info->identity->Describe()
                                            : absl::StrCat("not Tandem's: ", info->common_name);
    std::string role;
    if (info->identity && info->identity->kind == IdentityKind::kOperator) {
      role = std::string(OperatorRoleName(info->identity->role));
      identity = absl::StrCat("operator ", info->identity->name);
    }
    const int64_t days_left =
        absl::ToInt64Hours(info->not_after - now) / 24 - (info->not_after < now ? 1 : 0);
    table.push_back({file, identity, role.empty() ? "-" : role,
                     info->addresses.empty() ? "-" : absl::StrJoin(info->addresses, ","),
                     Date(info->not_after),
                     info->not_after < now ? "EXPIRED" : absl::StrCat(days_left)});
    rows.push_back({{"file", file},
                    {"identity", identity},
                    {"role", role},
                    {"addresses", info->addresses},
                    {"ca", info->is_ca},
                    {"not_after", absl::FormatTime(absl::RFC3339_sec, info->not_after,
                                                   absl::UTCTimeZone())},
                    {"expired", info->not_after < now},
                    {"serial", info->serial}});
  }
  if (c.output == OutputFormat::kJson) return rows.dump(2) + "\n";
  std::vector<size_t> width(table[0].size(), 0);
  for (const auto& row : table) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : table) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> RunCert(const Command& c, absl::Time now) {
  switch (c.verb) {
    case Verb::kCertCreateCa:
      return CreateCaFiles(c, now);
    case Verb::kCertCreateController:
      return CreateLeaf(c, Identity::Controller(c.cert_name), "controller", now);
    case Verb::kCertCreateNode:
      return CreateLeaf(c, Identity::Node(c.cert_name), "node." + c.cert_name, now);
    case Verb::kCertCreateClient: {
      absl::StatusOr<OperatorRole> role = ParseOperatorRole(c.role);
      if (!role.ok()) return role.status();
      return CreateLeaf(c, Identity::Operator(c.cert_name, *role), "client." + c.cert_name, now);
    }
    case Verb::kCertList:
      return List(c, now);
    default:
      break;
  }
  return absl::InternalError("not a cert verb");
}

absl::StatusOr<std::string> FindClientUser(const std::string& dir, const std::string& user) {
  if (!user.empty()) return user;
  std::vector<std::string> users;
  for (const std::string& file : FilesEnding(dir, "client.", ".crt")) {
    users.push_back(file.substr(7, file.size() - 7 - 4));
  }
  if (users.size() == 1) return users[0];
  if (users.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no client certificate (client.NAME.crt) in ", dir,
        ": tandemctl speaks to the controller with a certificate of the cluster's CA; create one "
        "with 'tandemctl cert create-client NAME --role admin|viewer' (or point --certs-dir / "
        "TANDEM_CERTS_DIR at yours)"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("several client certificates in ", dir, " (", absl::StrJoin(users, ", "),
                   "): choose one with --user NAME or TANDEM_USER"));
}

}  // namespace tandem::cli

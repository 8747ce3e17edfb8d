#include "security/certs.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/address.h"
#include "common/files.h"

namespace tandem {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;

// OpenSSL's error queue as text (and emptied).
std::string SslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

absl::Status SslError(std::string_view what) {
  return absl::InternalError(absl::StrCat(AV(what), ": ", SslErrors()));
}

BioPtr MemBio(std::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

X509Ptr ReadCert(std::string_view pem) {
  BioPtr bio = MemBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  return cert;
}

KeyPtr ReadKey(std::string_view pem) {
  BioPtr bio = MemBio(pem);
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  return key;
}

absl::StatusOr<KeyAndCert> ToPem(EVP_PKEY* key, X509* cert) {
  BioPtr key_bio(BIO_new(BIO_s_mem()));
  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PrivateKey(key_bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) ||
      !PEM_write_bio_X509(cert_bio.get(), cert)) {
    return SslError("encoding PEM");
  }
  return KeyAndCert{BioText(key_bio.get()), BioText(cert_bio.get())};
}

absl::Time FromAsn1(const ASN1_TIME* t) {
  struct tm tm = {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTimeT(timegm(&tm));
}

// Adds one extension from its text form (openssl x509v3_config syntax).
absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || !X509_add_ext(cert, ext.get(), -1)) {
    return SslError(absl::StrCat("adding extension ", OBJ_nid2sn(nid), " = ", value));
  }
  return absl::OkStatus();
}

// A new certificate for `key`, named `common_name`, valid from a few
// minutes before `now` (clocks of peers differ) for `days`.
absl::StatusOr<X509Ptr> NewCert(EVP_PKEY* key, const std::string& common_name, int days,
                                absl::Time now) {
  if (days < 1 || days > 36500) {
    return absl::InvalidArgumentError(absl::StrCat("--days ", days, " is not in 1..36500"));
  }
  X509Ptr cert(X509_new());
  BnPtr serial(BN_new());
  if (!cert || !serial || !X509_set_version(cert.get(), 2) ||
      !BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
      !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get()))) {
    return SslError("creating a certificate");
  }
  time_t start = absl::ToTimeT(now - absl::Minutes(5));
  time_t end = absl::ToTimeT(now + absl::Hours(24) * days);
  if (!X509_time_adj_ex(X509_getm_notBefore(cert.get()), 0, 0, &start) ||
      !X509_time_adj_ex(X509_getm_notAfter(cert.get()), 0, 0, &end) ||
      !X509_set_pubkey(cert.get(), key)) {
    return SslError("setting the validity");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                  reinterpret_cast<const unsigned char*>("Tandem"), -1, -1, 0) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                                  -1, 0)) {
    return SslError("setting the subject");
  }
  return cert;
}

absl::StatusOr<KeyPtr> NewKey() {
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return SslError("generating a P-256 key");
  return key;
}

std::string Hex(const unsigned char* data, size_t n, const char* sep) {
  static const char kDigits[] = "0123456789ABCDEF";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) out += sep;
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 15];
  }
  return out;
}

std::string NameEntry(const X509_NAME* name, int nid) {
  char buf[256];
  const int n = X509_NAME_get_text_by_NID(name, nid, buf, sizeof(buf));
  ERR_clear_error();
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

}  // namespace

std::string CreateCertificateHint(IdentityKind kind, std::string_view name) {
  switch (kind) {
    case IdentityKind::kNode:
      return absl::StrCat("tandemctl cert create-node ", name.empty() ? "NODE" : AV(name),
                          " --address ADDRESS");
    case IdentityKind::kController:
      return "tandemctl cert create-controller --address ADDRESS";
    case IdentityKind::kOperator:
      return absl::StrCat("tandemctl cert create-client ", name.empty() ? "NAME" : AV(name),
                          " --role admin|viewer");
    default:
      break;
  }
  return "tandemctl cert create-ca";
}

absl::StatusOr<KeyAndCert> CreateCa(std::string_view name, int days, absl::Time now) {
  if (absl::Status st = CheckIdentityName("CA name", name); !st.ok()) return st;
  absl::StatusOr<KeyPtr> key = NewKey();
  if (!key.ok()) return key.status();
  absl::StatusOr<X509Ptr> cert = NewCert(key->get(), absl::StrCat(AV(name), " CA"), days, now);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  if (!X509_set_issuer_name(c, X509_get_subject_name(c))) return SslError("setting the issuer");
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                            std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"},
                            std::pair{NID_subject_key_identifier, "hash"}}) {
    if (absl::Status st = AddExtension(c, c, nid, value); !st.ok()) return st;
  }
  if (!X509_sign(c, key->get(), EVP_sha256())) return SslError("signing the CA");
  return ToPem(key->get(), c);
}

absl::StatusOr<KeyAndCert> IssueCertificate(const KeyAndCert& ca, const LeafRequest& request,
                                            absl::Time now) {
  const Identity& id = request.identity;
  if (id.kind != IdentityKind::kNode && id.kind != IdentityKind::kController &&
      id.kind != IdentityKind::kOperator) {
    return absl::InvalidArgumentError("a certificate names a node, a controller or an operator");
  }
  if (absl::Status st = CheckIdentityName("name", id.name); !st.ok()) return st;
  if (id.kind == IdentityKind::kOperator && id.role == OperatorRole::kNone) {
    return absl::InvalidArgumentError("an operator certificate needs a role (admin or viewer)");
  }
  if (id.kind != IdentityKind::kOperator && request.addresses.empty()) {
    return absl::InvalidArgumentError(
        "a node or controller certificate names at least one address (--address) that peers "
        "connect to");
  }
  for (const std::string& address : request.addresses) {
    if (absl::Status st = CheckHostAddress("address", address); !st.ok()) return st;
  }
  X509Ptr ca_cert = ReadCert(ca.cert_pem);
  KeyPtr ca_key = ReadKey(ca.key_pem);
  if (!ca_cert) return absl::FailedPreconditionError("the CA certificate cannot be read");
  if (!ca_key) return absl::FailedPreconditionError("the CA key cannot be read");
  if (X509_check_ca(ca_cert.get()) == 0) {
    return absl::FailedPreconditionError("the CA certificate is not a CA");
  }
  if (X509_check_private_key(ca_cert.get(), ca_key.get()) != 1) {
    ERR_clear_error();
    return absl::FailedPreconditionError("the CA key does not match the CA certificate");
  }
  absl::StatusOr<KeyPtr> key = NewKey();
  if (!key.ok()) return key.status();
  absl::StatusOr<X509Ptr> cert = NewCert(key->get(), id.name, request.days, now);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  if (!X509_set_issuer_name(c, X509_get_subject_name(ca_cert.get()))) {
    return SslError("setting the issuer");
  }
  std::vector<std::string> names = {absl::StrCat("URI:", SpiffeId(id))};
  for (const std::string& address : request.addresses) {
    names.push_back(absl::StrCat(IsIpLiteral(address) ? "IP:" : "DNS:", address));
  }
  const char* usage =
      id.kind == IdentityKind::kOperator ? "clientAuth" : "serverAuth,clientAuth";
  for (auto [nid, value] :
       {std::pair<int, std::string>{NID_basic_constraints, "critical,CA:FALSE"},
        std::pair<int, std::string>{NID_key_usage, "critical,digitalSignature,keyAgreement"},
        std::pair<int, std::string>{NID_ext_key_usage, usage},
        std::pair<int, std::string>{NID_subject_alt_name, absl::StrJoin(names, ",")},
        std::pair<int, std::string>{NID_subject_key_identifier, "hash"},
        std::pair<int, std::string>{NID_authority_key_identifier, "keyid:always"}}) {
    if (absl::Status st = AddExtension(c, ca_cert.get(), nid, value); !st.ok()) return st;
  }
  if (!X509_sign(c, ca_key.get(), EVP_sha256())) return SslError("signing the certificate");
  return ToPem(key->get(), c);
}

absl::StatusOr<CertificateInfo> InspectCertificate(std::string_view pem) {
  X509Ptr cert = ReadCert(pem);
  if (!cert) return absl::InvalidArgumentError("no PEM certificate in it");
  CertificateInfo info;
  info.common_name = NameEntry(X509_get_subject_name(cert.get()), NID_commonName);
  info.issuer_common_name = NameEntry(X509_get_issuer_name(cert.get()), NID_commonName);
  info.is_ca = X509_check_ca(cert.get()) != 0;
  info.not_before = FromAsn1(X509_get0_notBefore(cert.get()));
  info.not_after = FromAsn1(X509_get0_notAfter(cert.get()));
  if (BnPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr)); serial) {
    char* hex = BN_bn2hex(serial.get());
    if (hex != nullptr) {
      info.serial = hex;
      OPENSSL_free(hex);
    }
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (X509_digest(cert.get(), EVP_sha256(), digest, &digest_len)) {
    info.sha256_fingerprint = Hex(digest, digest_len, ":");
  }
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_URI || name->type == GEN_DNS) {
      const ASN1_IA5STRING* s = name->type == GEN_URI ? name->d.uniformResourceIdentifier
                                                      : name->d.dNSName;
      std::string text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<size_t>(ASN1_STRING_length(s)));
      if (name->type == GEN_DNS) {
        info.addresses.push_back(std::move(text));
      } else if (absl::StatusOr<Identity> id = ParseSpiffeId(text); id.ok()) {
        info.identity = *id;
      }
    } else if (name->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = name->d.iPAddress;
      char text[INET6_ADDRSTRLEN] = {};
      const int len = ASN1_STRING_length(ip);
      if ((len == 4 || len == 16) &&
          inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text,
                    sizeof(text)) != nullptr) {
        info.addresses.emplace_back(text);
      }
    }
  }
  GENERAL_NAMES_free(names);
  ERR_clear_error();
  return info;
}

absl::Status VerifyCertificate(std::string_view ca_pem, std::string_view cert_pem,
                               absl::Time now) {
  X509Ptr ca = ReadCert(ca_pem);
  X509Ptr cert = ReadCert(cert_pem);
  if (!ca) return absl::InvalidArgumentError("the CA file holds no PEM certificate");
  if (!cert) return absl::InvalidArgumentError("no PEM certificate in it");
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !ctx || !X509_STORE_add_cert(store.get(), ca.get()) ||
      !X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr)) {
    return SslError("preparing the verification");
  }
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()), absl::ToTimeT(now));
  if (X509_verify_cert(ctx.get()) != 1) {
    const int error = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    std::string reason = X509_verify_cert_error_string(error);
    if (error == X509_V_ERR_CERT_HAS_EXPIRED) {
      absl::StatusOr<CertificateInfo> info = InspectCertificate(cert_pem);
      if (info.ok()) {
        absl::StrAppend(&reason, " on ",
                        absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", info->not_after,
                                         absl::UTCTimeZone()));
      }
    } else if (error == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
               error == X509_V_ERR_CERT_SIGNATURE_FAILURE) {
      reason += " (it was not signed by this CA)";
    }
    return absl::InvalidArgumentError(reason);
  }
  return absl::OkStatus();
}

absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsFiles& files, IdentityKind kind,
                                            std::string_view name, absl::Time now) {
  const std::string hint = CreateCertificateHint(kind, name);
  auto missing = [&](const std::string& file, const absl::Status& st) {
    return absl::Status(st.code(),
                        absl::StrCat(file, ": ", st.message(),
                                     absl::IsNotFound(st)
                                         ? absl::StrCat(" (create the cluster's certificates with "
                                                        "tandemctl cert create-ca, then ",
                                                        hint, "; or set insecure: true, "
                                                        "allowed on loopback only)")
                                         : ""));
  };
  TlsMaterial m;
  absl::StatusOr<std::string> ca = ReadFile(files.ca_file);
  if (!ca.ok()) return missing(files.ca_file, ca.status());
  absl::StatusOr<std::string> cert = ReadFile(files.cert_file);
  if (!cert.ok()) return missing(files.cert_file, cert.status());
  absl::StatusOr<std::string> key = ReadSecretFile(files.key_file);
  if (!key.ok()) return missing(files.key_file, key.status());
  m.ca_pem = *std::move(ca);
  m.cert_pem = *std::move(cert);
  m.key_pem = *std::move(key);
  absl::StatusOr<CertificateInfo> ca_info = InspectCertificate(m.ca_pem);
  if (!ca_info.ok() || !ca_info->is_ca) {
    return absl::InvalidArgumentError(
        absl::StrCat(files.ca_file, ": not a CA certificate (want the ca.crt of tandemctl cert "
                                    "create-ca)"));
  }
  absl::StatusOr<CertificateInfo> info = InspectCertificate(m.cert_pem);
  if (!info.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(files.cert_file, ": ", info.status().message()));
  }
  m.info = *std::move(info);
  if (absl::Status st = VerifyCertificate(m.ca_pem, m.cert_pem, now); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(files.cert_file, ": ", st.message(),
                                                   " (CA ", files.ca_file, "; renew with ", hint,
                                                   ")"));
  }
  KeyPtr pkey = ReadKey(m.key_pem);
  X509Ptr x509 = ReadCert(m.cert_pem);
  if (!pkey) {
    return absl::InvalidArgumentError(absl::StrCat(files.key_file, ": not a PEM private key"));
  }
  if (X509_check_private_key(x509.get(), pkey.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(files.key_file, ": the key does not match ",
                                                   files.cert_file));
  }
  Identity want{kind, std::string(name)};
  if (!m.info.identity.has_value() || m.info.identity->kind != kind ||
      (!name.empty() && m.info.identity->name != name)) {
    const std::string has = m.info.identity.has_value() ? m.info.identity->Describe()
                                                        : std::string("no Tandem identity");
    return absl::InvalidArgumentError(absl::StrCat(
        files.cert_file, ": it names ", has, ", not ",
        name.empty() ? absl::StrCat("a ", kind == IdentityKind::kNode         ? "node"
                                          : kind == IdentityKind::kController ? "controller"
                                                                              : "operator")
                     : want.Describe(),
        " (make one with ", hint, ")"));
  }
  return m;
}

}  // namespace tandem

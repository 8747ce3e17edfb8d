#include "engines/postgresql/scram.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"

namespace tandem::pg {
namespace {

absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool Hmac(const std::vector<unsigned char>& key, std::string_view msg, unsigned char out[32]) {
  unsigned int len = 0;
  return HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
              reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out,
              &len) != nullptr &&
         len == 32;
}

}  // namespace

bool ScramVerifierMatches(std::string_view verifier, std::string_view password) {
  constexpr std::string_view kPrefix = "SCRAM-SHA-256$";
  if (verifier.substr(0, kPrefix.size()) != kPrefix) return false;
  std::string_view rest = verifier.substr(kPrefix.size());
  size_t colon1 = rest.find(':');
  size_t dollar = rest.find('$');
  if (colon1 == std::string_view::npos || dollar == std::string_view::npos || colon1 > dollar) {
    return false;
  }
  size_t colon2 = rest.find(':', dollar);
  if (colon2 == std::string_view::npos) return false;
  int iterations = 0;
  if (!absl::SimpleAtoi(AbslView(rest.substr(0, colon1)), &iterations) || iterations <= 0)
    return false;
  std::string salt;
  std::string stored_key;
  std::string server_key;
  if (!absl::Base64Unescape(AbslView(rest.substr(colon1 + 1, dollar - colon1 - 1)), &salt) ||
      !absl::Base64Unescape(AbslView(rest.substr(dollar + 1, colon2 - dollar - 1)), &stored_key) ||
      !absl::Base64Unescape(AbslView(rest.substr(colon2 + 1)), &server_key)) {
    return false;
  }
  if (stored_key.size() != 32 || server_key.size() != 32) return false;

  std::vector<unsigned char> salted(32);
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()), iterations, EVP_sha256(), 32,
                        salted.data()) != 1) {
    return false;
  }
  unsigned char client_key[32];
  unsigned char computed_stored[32];
  unsigned char computed_server[32];
  if (!Hmac(salted, "Client Key", client_key) || !Hmac(salted, "Server Key", computed_server)) {
    return false;
  }
  SHA256(client_key, sizeof client_key, computed_stored);
  return CRYPTO_memcmp(computed_stored, stored_key.data(), 32) == 0 &&
         CRYPTO_memcmp(computed_server, server_key.data(), 32) == 0;
}

}  // namespace tandem::pg

// Checks a password against a PostgreSQL SCRAM-SHA-256 verifier
// ("SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>", as stored in
// pg_authid.rolpassword), so the engine sets a role's password only when the
// password file says something else. Pure computation, no I/O.
#ifndef TANDEM_ENGINES_POSTGRESQL_SCRAM_H_
#define TANDEM_ENGINES_POSTGRESQL_SCRAM_H_

#include <string_view>

namespace tandem::pg {

// True when `verifier` is a SCRAM-SHA-256 verifier of `password`. False for
// anything else, including MD5 hashes, plain text and malformed verifiers.
// The password is used as is (PostgreSQL applies SASLprep, which leaves
// ASCII passwords unchanged; for others a false "differs" only costs an
// extra ALTER ROLE).
bool ScramVerifierMatches(std::string_view verifier, std::string_view password);

}  // namespace tandem::pg

#endif  // TANDEM_ENGINES_POSTGRESQL_SCRAM_H_

// `tandem-agent` is a thin dispatcher: each engine's agent is a binary of
// its own (tandem-agent-postgresql, tandem-agent-mysql, tandem-agent-redis)
// that links only that engine's client library, so that an agent maps no
// code it never runs. The dispatcher reads agent.yaml, picks the binary for
// engine.type and replaces itself with it (execve: same PID, same argv, so
// systemd's Type=notify main PID, signals and scripts see one process).
//
// Layouts searched, in order, for the dispatcher at DIR/tandem-agent:
//   DIR/tandem-agent-ENGINE               (a build tree)
//   DIR/../lib/tandem/tandem-agent-ENGINE (installed: /usr/lib/tandem)
#ifndef TANDEM_AGENT_DISPATCHER_H_
#define TANDEM_AGENT_DISPATCHER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/types.h"

namespace tandem {

// "tandem-agent-postgresql", ...; "" for kUnspecified.
std::string EngineAgentName(EngineType engine);

// The engine agent's binary for a dispatcher at `self` (an absolute path):
// the first executable regular file of the layouts above. InvalidArgument
// for kUnspecified; NotFound, naming every path tried, when this build or
// installation has no agent for `engine`.
absl::StatusOr<std::string> FindEngineAgent(const std::string& self, EngineType engine);

// The environment for the engine agent: `env` (NAME=VALUE entries) plus
//   GNUTLS_NO_IMPLICIT_INIT=1: libpq links libldap, which links GnuTLS,
//     whose load-time initialisation costs about 0.6 MiB of resident memory
//     in every process. Only libldap uses GnuTLS (for an LDAP lookup over
//     TLS in pg_service.conf) and it initialises GnuTLS itself then.
// A variable the caller's environment already sets is kept as it is.
std::vector<std::string> EngineAgentEnvironment(const std::vector<std::string>& env);

// Replaces this process with `binary`, with `argv` (argv[0] becomes
// `binary`) and EngineAgentEnvironment of the current environment. Returns
// only on failure: an error naming the binary and errno's text.
absl::Status ExecEngineAgent(const std::string& binary, int argc, const char* const* argv);

// This process's executable (/proc/self/exe, symlinks resolved).
absl::StatusOr<std::string> SelfExecutable();

}  // namespace tandem

#endif  // TANDEM_AGENT_DISPATCHER_H_

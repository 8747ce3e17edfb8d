// Engine settings, as read from the `engine:` section of agent.yaml
// (agent/config.h validates them). Plain data; no secrets are held here,
// only the paths of the files that contain them.
#ifndef TANDEM_ENGINES_ENGINE_CONFIG_H_
#define TANDEM_ENGINES_ENGINE_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/files.h"

#include "common/types.h"

namespace tandem {

struct EngineConfig {
  EngineType type = EngineType::kUnspecified;
  // Where the agent reaches its local server. "" (the default): the server
  // on this host, over its Unix socket where the distribution puts it when
  // the server has one there (PostgreSQL /var/run/postgresql/.s.PGSQL.<port>,
  // MySQL/MariaDB /run/mysqld/mysqld.sock when that server listens on
  // `port`), otherwise 127.0.0.1. A path: that socket (PostgreSQL: its
  // directory). Over a socket, when `user` is `os_user`, the agent logs in as
  // that OS user (PostgreSQL peer, MariaDB unix_socket authentication): no
  // password file is needed on a stock host.
  std::string host;
  uint32_t port = 0;
  std::string data_dir;
  std::string user;                // account the agent connects as
  std::string password_file;       // "" = no password
  std::string os_user;             // owns the data, runs the server tools ("" = agent's user)
  std::string bin_dir;             // server tools; "" = search PATH
  // The systemd unit that runs the server (e.g. "postgresql@15-main",
  // "mariadb", "redis-server@db1"): the agent starts and stops it with
  // `systemctl start|stop`, as the agent's own user (root). Excludes
  // start_command, stop_command and server_args.
  std::string systemd_unit;
  // Server start/stop commands for other setups. Empty = the engine's own
  // tool (pg_ctl, mariadbd, redis-server). Each runs with /bin/sh -c as
  // os_user, its output appended to log_file.
  std::string start_command;
  std::string stop_command;
  // Extra server arguments the default start command passes (e.g. PostgreSQL
  // "-c shared_buffers=16MB"); ignored with a custom start_command.
  std::vector<std::string> server_args;
  std::string log_file;            // server output of the default start command
  bool allow_restart = false;      // may the agent restart a master to change settings
  // Replication account (same on every node of a group) and its password file.
  std::string replication_user = "tandem_repl";
  std::string replication_password_file;
  // Seconds a step may wait for the server (start, catch-up, ...).
  int timeout_seconds = 120;
  // How a slave is seeded, for engines that offer a choice ("" = the
  // engine's default). MySQL: "backup" (mariadb-backup, physical) or "dump"
  // (mariadb-dump, logical; for servers without mariadb-backup).
  std::string seed_method;
  // TLS on a slave's replication connection to its master:
  //   "off" (default), "between-stacks" (when the master is in another
  //   stack), "always".
  // The slave verifies the master's certificate, and that it names the
  // address it connects to, against tls_ca_file. tls_cert_file/tls_key_file
  // are an optional client certificate for masters that ask for one. The
  // master's server must have TLS on (PostgreSQL ssl=on, MariaDB ssl_cert
  // and ssl_key, Redis tls-port); the files must be readable by os_user.
  std::string tls_mode = "off";
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // The server's own TLS port where it differs from `port` (Redis
  // tls-port), registered so that slaves in other stacks can use it; 0:
  // none.
  uint32_t tls_port = 0;
  // This node's stack (agent.yaml `stack`): a master compares it with its
  // slaves' stacks for ReplicationTls (which slaves must come over TLS).
  std::string stack;
  // Seconds a slave's link may stay down before it is reported out of sync
  // (engines that cannot tell otherwise, e.g. Redis).
  int out_of_sync_after_seconds = 60;
};

// The TLS part of ValidateEngineConfig: tls_mode known ("" becomes "off"),
// tls_ca_file set unless off, cert and key together, the files absolute and
// readable (the key private).
absl::Status ValidateReplicationTls(EngineConfig* config);

// The server-control part of ValidateEngineConfig: systemd_unit a unit name,
// and not together with start_command, stop_command or server_args.
absl::Status ValidateServerControl(const EngineConfig& config);

// Whether slave `self` replicates from `upstream` over TLS under `config`.
bool ReplicationTls(const EngineConfig& config, const Peer& self, const Peer& upstream);

// "engine.<field>: <why>" as InvalidArgument.
absl::Status InvalidEngineField(std::string_view field, std::string_view why);

// The checks every engine makes of its config, in place: the type is
// `expected` (or unset, then set), port 1..65535, data_dir absolute
// (normalised, not "/", its parent exists), user, timeout, log_file
// absolute, systemd_unit a unit name and not combined with start_command,
// stop_command or server_args, os_user known and usable by this process,
// secret files absolute
// and private (read once, never kept), tls_mode known and its files
// absolute and readable (the key private). Returns os_user's ids when the agent
// runs as root and will switch to them (nullopt otherwise). Errors are
// InvalidEngineField's.
absl::StatusOr<std::optional<UserIds>> ValidateEngineConfig(EngineConfig* config,
                                                            EngineType expected);

// Whether the agent logs in to its local server at `host` (a socket path)
// with the identity of the OS user `os_user` rather than its own: over a
// Unix socket, when the login name is that OS user's (peer / unix_socket
// authentication compares the two) and the agent runs as root.
bool LogsInAsOsUser(const EngineConfig& config, const std::string& host);

}  // namespace tandem

#endif  // TANDEM_ENGINES_ENGINE_CONFIG_H_

// The Redis engine (Redis 7.0, RESP2): the Engine interface for one
// redis-server.
//
// How the Engine contract maps onto Redis
// ---------------------------------------
// Login. The agent connects to engine.host:engine.port and, when
// engine.password_file is set, sends AUTH <password> (engine.user empty or
// "default": the requirepass form) or AUTH <user> <password> (an ACL user).
// That user needs PING, INFO, CONFIG, CLIENT PAUSE/UNPAUSE, REPLICAOF,
// BGSAVE and SHUTDOWN (in practice +@admin +@connection +@dangerous).
//
// Replication credentials. A slave logs in to its master with `masterauth`
// (the content of engine.replication_password_file, set with CONFIG SET,
// never on a command line, never logged) and, for an ACL user, `masteruser`:
//   replication_user "" or "default"  -> masteruser unset (requirepass form);
//   replication_user "tandem_repl"    -> (the default value) masteruser
//       tandem_repl when the master has that ACL user and accepts the
//       password, otherwise the default user;
//   any other name                    -> masteruser <name>, which must exist.
// The upstream is probed with exactly this login before anything changes;
// when that user may run INFO, the probe also checks that the upstream is a
// master and not this very server (a user with only +psync +replconf +ping
// passes without those checks). Over TLS (see TLS) there is no probe: the
// default name tandem_repl then means the default user (requirepass form);
// an ACL user over TLS needs another name.
// CONFIG REWRITE writes masterauth into the server's config file, and Redis
// rewrites it with umask-based permissions (0644 under umask 022): after each
// rewrite the engine removes the access of others (chmod o-rwx).
//
// Config file. Role changes are persisted with CONFIG REWRITE, so the server
// must run with a config file (INFO server config_file); Bootstrap, Follow
// and MakeWritable return FailedPrecondition before changing anything
// otherwise.
//
// Login. engine.host "" (the default) is 127.0.0.1, where a stock
// redis-server listens.
//
// Start. With neither engine.systemd_unit nor engine.start_command:
//   <bin_dir>/redis-server <data_dir>/redis.conf --port <port>
//     --dir <data_dir> --daemonize yes --pidfile <data_dir>/redis.pid
//     --logfile <log_file> <server_args...>
// run as engine.os_user under umask 077 (so the files Redis writes are
// private to it); data_dir is created (0750, owned by os_user) when missing,
// redis.conf is created empty (mode 0600) when missing; log_file defaults to
// <data_dir>/redis.log. server_args may not set port, dir, daemonize,
// pidfile or logfile (the engine does). Otherwise `systemctl start
// <systemd_unit>` runs as root, or start_command with /bin/sh -c as os_user
// (engines/server_control.h). Then PING is polled until it answers, within
// timeout_seconds (Unavailable after it, with the end of the log). A server
// that fails after daemonizing (e.g. its port is taken) is only seen as that
// timeout.
//
// Stop. `systemctl stop <systemd_unit>` (also when the server looks down:
// redis-server@.service restarts it otherwise; redis-server saves on that
// SIGTERM when it has save points) or stop_command when set; otherwise
// SHUTDOWN SAVE when an RDB file
// exists in data_dir or save points are configured (a restart then loads
// the current data, not an older snapshot), plain SHUTDOWN otherwise (which
// still flushes the AOF when appendonly is on). SHUTDOWN is retried while
// Redis refuses it because it writes its initial AOF (after appendonly was
// turned on, or after a full sync). Then waits until the port is closed.
// SHUTDOWN refused otherwise (e.g. the save failed) -> FailedPrecondition.
//
// data_dir is the server's `dir`: when the server runs, CONFIG GET dir must
// name the same directory, otherwise InvalidArgument naming both.
//
// Observe. running = the server answers PING. Then, from INFO and CONFIG:
//   is_slave   = role:slave;   upstream = master_host:master_port
//   streaming  = master_link_status:up and master_sync_in_progress:0
//   writable   = role:master and not fenced (see Fence); on a slave, true
//                only when replica-read-only is no (it does accept writes)
//   lag_bytes  = 0 on a streaming slave (a Redis replica applies what it
//                receives at once), -1 otherwise (unknown)
//   lag_seconds= master_last_io_seconds_ago on a streaming slave: seconds
//                since the master was last heard from. The master pings every
//                repl-ping-replica-period (10 s), so an idle healthy link
//                shows 0..10. -1 when the link is down.
//   position   = master_repl_offset
//   data_bytes = INFO memory used_memory, also without keys (an empty
//                server reports its baseline memory): a master's size of 0
//                means "not reported yet" to the agent, which would then
//                never bootstrap a slave of an empty master
//   data_id    = "" (Redis has no stable dataset identity: the replication
//                id changes at every restart and promotion)
//   served_slaves = the ids ServeSlaves last recorded, sorted
//   out_of_sync= on a slave whose link is down (and no full sync in
//                progress) for engine.out_of_sync_after seconds or more:
//                "link to HOST:PORT down for N s (more than M s)". N is the
//                larger of INFO master_link_down_since_seconds and how long
//                this engine object has seen the link down (Redis reports
//                no time for a link that never came up since the server
//                started or was pointed at its master).
//   has_data   = true when running, else an RDB or AOF file exists in data_dir
// A stopped server is read from <data_dir>/redis.conf: a `replicaof` line
// gives is_slave and upstream; dbfilename/appendfilename/appenddirname name
// the files for has_data; data_bytes is then the RDB file's size.
// Observe changes nothing, with one exception: on a fenced master it
// re-issues the fence (a restart of redis-server drops it).
//
// Fence. A Redis master cannot be made read-only without becoming a
// replica, so the fence is CLIENT PAUSE <~24.8 days> WRITE: every client's
// writes block (they are not refused) until the fence is lifted. It also
// raises repl-ping-replica-period to 2147483647 s: a paused master still
// PINGs its replicas, and each PING moves its offset (the position a
// promoted slave catches up with) past where that slave stopped, which
// would rule out a partial resync of the old master and its other slaves
// with the new one (Rejoin). The marker file <data_dir>/tandem-fenced
// records the fence and the ping period to put back: Observe reports
// writable=false while it exists and re-issues the fence, and so does
// Start, so a restarted server is fenced again as soon as the agent sees
// it. Limits: between a restart of redis-server and the agent's next
// Observe or Start, the server accepts writes; CLIENT UNPAUSE by anyone
// else lifts the fence until the next Observe. On a slave, Fence only makes
// sure replica-read-only is yes. On a stopped server, Fence writes the
// marker, so the next Start fences it.
//
// Lifting the fence (Bootstrap, Follow, Rejoin, MakeWritable), always in
// this order: the node is made a replica first (REPLICAOF, for all but
// MakeWritable), the ping period is put back, CONFIG REWRITE persists the
// role, then CLIENT UNPAUSE and the marker removed. The writes the pause
// held back then run on a replica and fail with READONLY: none is
// acknowledged by a node about to follow another master.
//
// ServeSlaves. A Redis master needs no per-slave setup. With a non-empty
// list it refuses (FailedPrecondition) a master whose persistence is off
// (save "" and appendonly no): restarted empty, it would replicate an empty
// dataset to every slave. Then it records the ids, atomically, in
// <data_dir>/tandem-served-slaves (one per line), which Observe reports. An
// empty list needs no server. min-replicas-to-write is left to the operator.
//
// Bootstrap. Probes the upstream (connect, AUTH with the replication login,
// PING; it must be another server and a master) -> Unavailable when it
// cannot be reached, before anything changes; over TLS there is no probe.
// Starts the server if down. Keeps the current dataset when it has keys:
// BGSAVE, then a hard link (or a copy) of the RDB as
// <data_dir>/tandem-old-<UTC yyyymmddThhmmssZ>.rdb,
// never deleted. Then replica-read-only yes, masteruser/masterauth, REPLICAOF
// host port, CONFIG REWRITE at once (so a restart mid-sync comes back as a
// replica, not as a writable master with the old data), CLIENT UNPAUSE and
// the fence marker removed, and waits, bounded by timeout_seconds
// (Unavailable after it), until master_link_status:up and
// master_sync_in_progress:0, reporting master_sync_read_bytes /
// master_sync_total_bytes as progress. A node already streaming from this
// upstream (a resync) is forced into a full resynchronisation: under the
// fence, REPLICAOF NO ONE gives it a new replication id that the master does
// not know, then REPLICAOF host port. A node already configured
// for this upstream but not yet synced (a Bootstrap cut short) just waits.
// (Here and below, "port" is upstream.tls_port over TLS, and the
// replication settings include the TLS ones: see TLS.)
// Returns "" (no data id).
//
// Follow. Starts the server if down. OK (after a CONFIG REWRITE) when it is
// already a replica of `upstream` with replica-read-only yes and the
// expected masterauth/masteruser and TLS settings. Otherwise: probes the
// upstream (as Bootstrap does, not over TLS); when the node is a master
// with keys, keeps its dataset aside (a full resync would replace it); sets
// replica-read-only yes, masteruser/masterauth, REPLICAOF host port when the
// master differs; CONFIG REWRITE; lifts the fence.
//
// Rejoin (the cheap path of a switchover's followers and of automatic
// resyncs). Probes the upstream as Bootstrap does, waiting up to
// timeout_seconds while it answers but is not a master yet (a promoted
// slave that has not taken over), then refuses (FailedPrecondition) a
// server that accepts writes (a master not fenced, a replica with
// replica-read-only no). Unless it already streams from `upstream`, it
// then checks that Redis will continue from the local data with a partial
// resync, the way the upstream decides it: the local replication id is the
// upstream's current one (and the local offset not ahead of it), or its
// previous one (master_replid2) and the local offset not past the point
// where the upstream was promoted (second_repl_offset), and the missing
// part is still in the upstream's backlog. Otherwise FailedPrecondition
// saying which (the caller then makes a full copy with Bootstrap, which
// keeps the data aside): "it holds writes db2 never received", "its
// replication history is not db2's", "the backlog no longer holds ...".
// That check also guarantees that the local data holds no write the
// upstream lacks. It needs the replication login to run INFO on the
// upstream (FailedPrecondition otherwise). Then, still fenced:
// replica-read-only yes, masteruser/masterauth from the config (which
// also repairs a masterauth changed by hand), REPLICAOF host port, CONFIG
// REWRITE, the fence lifted, and waits (timeout_seconds, Unavailable after)
// until the link is up. Returns "" (no data id). Over TLS the upstream is
// not probed and cannot be read: a server that already streams from it is
// refreshed as above, any other gets Unimplemented ("over TLS the agent
// cannot read the upstream's replication state; a full copy is made"),
// after the writable check, before anything changes.
//
// MakeWritable. Starts the server if down; REPLICAOF NO ONE on a replica;
// the fence lifted as above (ping period, CONFIG REWRITE, CLIENT UNPAUSE,
// marker removed).
//
// DataParentDir() is data_dir: the RDB copy and the new RDB land there.
//
// TLS. When ReplicationTls(config, self, upstream) (engine.tls_mode always,
// or between-stacks and another stack), the slave's own redis-server makes
// the TLS connection: Bootstrap, Follow and Rejoin set, with one CONFIG SET
// before REPLICAOF, tls-ca-cert-file engine.tls_ca_file, tls-cert-file and
// tls-key-file engine.tls_cert_file/tls_key_file, tls-replication yes, then
// REPLICAOF upstream.host upstream.tls_port (CONFIG REWRITE persists it).
// Redis makes a TLS replication connection only with a certificate of its
// own, so with tls_mode other than off tls_cert_file and tls_key_file are
// required (InvalidArgument), and must be readable by os_user. Without TLS
// the link uses upstream.port and tls-replication no. The agent itself
// never speaks to the upstream then (hiredis 0.14 has no TLS, and the probe
// would send the replication password in clear): no login probe, no
// is-a-master or is-this-server check, no partial-resync prediction
// (Rejoin above). Observe reports upstream as master_host:master_port, that
// is upstream.host:upstream.tls_port on a TLS link.
// The upstream's TLS port is its agent's engine.tls_port (Peer::tls_port):
// Bootstrap, Follow and Rejoin return FailedPrecondition "upstream X has no
// tls_port (engine.tls_port in its agent.yaml)" before changing anything
// when it is 0. A master serving TLS runs with tls-port <engine.tls_port>
// and its certificate (tls-cert-file, tls-key-file, tls-ca-cert-file,
// tls-auth-clients as wanted) in its own configuration (server_args or
// redis.conf): the agent sets nothing on a master.
// Limit: Redis 7.0 verifies the master's certificate against the CA only;
// it does not check that the certificate names the master's address.
//
// Status codes (engines/engine.h):
//   Unavailable         the local server is down where it must run
//                       (ServeSlaves with slaves), does not answer after a
//                       start, or is loading; the upstream cannot be reached
//                       or is not a master (yet); BGSAVE, the sync or a stop
//                       did not finish within timeout_seconds.
//   FailedPrecondition  a login is refused (WRONGPASS, NOAUTH); a secret file
//                       is missing or readable by others; the server runs
//                       without a config file; persistence is off on a master
//                       asked to serve slaves; BGSAVE or SHUTDOWN failed;
//                       Rejoin: the server is writable, or its data cannot
//                       continue from the upstream's stream; a TLS link to
//                       an upstream without tls_port, or TLS files the
//                       server does not accept.
//   Unimplemented       Rejoin over TLS of a server not already streaming
//                       from the upstream (the caller makes a full copy).
//   InvalidArgument     the server's dir is not engine.data_dir; the upstream
//                       is this very server (not checked over TLS) or has no
//                       address.
//   Internal            anything else (e.g. a start command that fails).
#ifndef TANDEM_ENGINES_REDIS_REDIS_ENGINE_H_
#define TANDEM_ENGINES_REDIS_REDIS_ENGINE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "engines/engine.h"
#include "engines/engine_config.h"

namespace tandem {

// Files the engine keeps in data_dir.
inline constexpr char kRedisServedSlavesFile[] = "tandem-served-slaves";
inline constexpr char kRedisFenceMarkerFile[] = "tandem-fenced";
inline constexpr char kRedisOldDataPrefix[] = "tandem-old-";
inline constexpr char kRedisConfigFile[] = "redis.conf";

// Validates `config` and returns the engine. InvalidArgument names the field:
// "engine.port: must be 1..65535 (got 0)". Secret files are read once here
// to check them (mode and presence) and again at every connection, so a
// changed password is picked up without a restart.
absl::StatusOr<std::unique_ptr<Engine>> MakeRedisEngine(const EngineConfig& config);

}  // namespace tandem

#endif  // TANDEM_ENGINES_REDIS_REDIS_ENGINE_H_

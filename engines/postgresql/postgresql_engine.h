// The PostgreSQL engine: streaming physical replication with one physical
// slot per slave (PostgreSQL 13 or later; tested with 15). The only place in
// product code that includes libpq.
//
// What it needs:
//   * engine.user is a superuser (ALTER SYSTEM, replication slots, roles,
//     pg_control_system, pg_authid); it connects to host=engine.host
//     port=engine.port dbname=postgres, with the password of
//     engine.password_file when set (passed to libpq, never in argv/logs).
//     engine.host "" (the default) is the stock socket directory
//     /var/run/postgresql when the server's socket is there, else 127.0.0.1.
//     Over a socket, with engine.user = engine.os_user (postgres), a root
//     agent connects as that OS user (on its own thread): a stock pg_hba.conf
//     lets it in by peer authentication, with no password.
//   * The agent runs as root or as engine.os_user; server tools (pg_ctl,
//     pg_basebackup, pg_controldata) run as engine.os_user.
//
// Files it keeps (D = engine.data_dir, P = its parent, B = basename of D):
//   P/B.log                      server output of the default start command
//                                (engine.log_file overrides it; with
//                                engine.systemd_unit postgresql@V-C it is
//                                /var/log/postgresql/postgresql-V-C.log,
//                                where that unit's pg_ctlcluster writes)
//   P/.tandem-B.pgpass           replication password for pg_basebackup and
//                                the walreceiver (mode 0600, owner os_user);
//                                referenced by primary_conninfo's passfile.
//                                Not written when replication_password_file
//                                is empty: replication then uses no password
//                                and the master's pg_hba lines say "trust".
//   P/B.tandem-new               a bootstrap copy in progress
//   P/B.tandem-basebackup.log    pg_basebackup's output of the last bootstrap
//   P/B.tandem-old-<UTC time>    data directories moved aside (never deleted)
// D itself must not be a mount point (it is renamed); P receives the copy.
//
// Per method (see engines/engine.h for the contract and status codes):
//   Observe       PQping; when up, one connection (kept across calls) reads
//                 recovery state, read-only fence, system identifier, LSN,
//                 database sizes, the walreceiver, the managed slots and the
//                 managed pg_hba block. When down: PG_VERSION, standby.signal,
//                 primary_conninfo of postgresql.auto.conf, pg_controldata.
//   Start/Stop    pg_ctl (-w, fast stop), or systemctl start/stop
//                 engine.systemd_unit (as root), or engine.start_command/
//                 stop_command (as os_user): engines/server_control.h. With
//                 pg_ctl the port and engine.server_args go on its command
//                 line because a copied data directory carries its master's
//                 postgresql.conf. A unit is stopped even when its server
//                 looks down.
//   Fence         ALTER SYSTEM SET default_transaction_read_only = on, reload,
//                 terminate the other client sessions. On a stopped server the
//                 setting is written to postgresql.auto.conf, so it comes up
//                 fenced.
//   ServeSlaves   wal_level / max_wal_senders / max_replication_slots check
//                 (restart only with engine.allow_restart), replication role
//                 with a SCRAM verifier (never the plain password), a managed
//                 block at the top of pg_hba.conf, one physical slot per slave
//                 named SlotName(id) (engines/postgresql/pg_files.h).
//   Bootstrap     checks the master serves this node (replication login,
//                 IDENTIFY_SYSTEM, its slot; with psql, so that the login's
//                 SCRAM and TLS run in a short-lived process and OpenSSL's
//                 tables never stay in the agent) before touching anything; a
//                 running slave is stopped first (it holds the slot);
//                 pg_basebackup -X stream -S <slot> --no-sync into
//                 P/B.tandem-new (a leftover from a killed attempt is removed
//                 first), one syncfs(2) of that filesystem, configures the copy
//                 as a standby there, then stops the server and swaps
//                 directories. Progress comes from pg_basebackup -P (done and
//                 total bytes; reported on the caller's thread).
//   Follow        standby.signal + primary_conninfo/primary_slot_name; never
//                 turns a writable server or a non-standby copy into a slave.
//   MakeWritable  pg_promote, then drops the standby settings and any fence.
#ifndef TANDEM_ENGINES_POSTGRESQL_POSTGRESQL_ENGINE_H_
#define TANDEM_ENGINES_POSTGRESQL_POSTGRESQL_ENGINE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "engines/engine.h"
#include "engines/engine_config.h"

namespace tandem {

// Validates `config` and returns the engine. InvalidArgument naming the
// field ("engine.data_dir: must be an absolute path") for: a type other than
// postgresql; an empty host or user; a port outside 1-65535; a data_dir that
// is not absolute or whose parent does not exist; an os_user that does not
// exist or that the agent cannot act as; a bin_dir without pg_ctl,
// pg_basebackup, pg_controldata or psql (an empty bin_dir means the newest
// /usr/lib/postgresql/<N>/bin, else the directory of pg_ctl in PATH); a
// password file that is unreadable or readable by group/others; a
// replication_user that is not a plain identifier; timeout_seconds < 1.
// Connects to nothing.
absl::StatusOr<std::unique_ptr<Engine>> MakePostgresqlEngine(const EngineConfig& config);

}  // namespace tandem

#endif  // TANDEM_ENGINES_POSTGRESQL_POSTGRESQL_ENGINE_H_

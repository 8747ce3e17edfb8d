// The MySQL/MariaDB engine: GTID replication, slaves seeded with a backup
// streamed from the master's agent. Tested with MariaDB 10.11 (Debian's
// mariadb-server and mariadb-backup); where MySQL 8 differs (CHANGE
// REPLICATION SOURCE TO, super_read_only, gtid_executed) the statements come
// from mysql::Dialect (engines/mysql/mysql_text.h), chosen from the server's
// version. Seeding needs MariaDB's tools: a MySQL server is observed, fenced,
// re-pointed and made writable, but not seeded.
//
// What it needs:
//   * engine.user can do everything (CREATE USER, GRANT, SHUTDOWN, SET
//     GLOBAL, replication statements, and mariadb-backup's / mariadb-dump's
//     reads); it logs in at engine.host (a socket path, or a host for TCP
//     on engine.port) with the password of engine.password_file when set
//     (given to libmariadb and, for the tools, in a private option file;
//     never in argv or logs). engine.host "" (the default) is the stock
//     socket /run/mysqld/mysqld.sock when the server there listens on
//     engine.port, else 127.0.0.1. Over a socket without a password the
//     server's unix_socket authentication checks the OS user: root logs in
//     as the agent (root), and mariadb-backup / mariadb-dump then run as the
//     agent too; a login named os_user logs in as os_user. A seeded slave's
//     accounts are its master's: use the same admin account on every node
//     of a group.
//   * The agent runs as root or as engine.os_user; mariadbd and the tools
//     (mariadb-backup, mbstream, mariadb-dump, mariadb) run as os_user. As
//     root with the default start, os_user is required.
//   * A unique server_id per node (e.g. engine.server_args: [--server-id=2]);
//     a slave refuses a master with its own server_id. GTID strict mode
//     (--gtid-strict-mode=ON) is recommended: with it a write on a slave
//     always shows as out of sync.
//   * TLS between stacks (engine.tls_mode, tls_ca_file, ...): the master's
//     server has ssl_cert/ssl_key; its certificate names the address its
//     slaves connect to (its external address); tls_ca_file is readable by
//     os_user (mariadbd's replication thread reads it).
//
// Files (D = engine.data_dir, P = its parent, B = basename of D):
//   P/B.sock, P/B.pid            socket and pid file of the default start
//   P/B.log                      server log (--log-error) of the default
//                                start (engine.log_file overrides it)
//   P/B.tandem-new               a seed copy in progress (removed when a new
//                                attempt starts)
//   P/B.tandem-seed.log          output of mbstream / prepare / loading
//   P/B.tandem-old-<UTC time>    data directories moved aside, never deleted
//   P/.tandem-B.served           the slaves this master serves ("id host")
//   P/.tandem-B.backup-XXXXXX    private work dir of one streamed backup
//                                (option file, tool log); removed after it
//   D/tandem-seed.info           a seeded copy whose replication is not set
//                                up yet (see Bootstrap)
// D itself must not be a mount point (it is renamed); P receives the copy.
//
// Per method (engines/engine.h has the contract and the status codes):
//   Observe       answers? Then @@version (flavour), server_id, log_bin,
//                 binlog_format, gtid_binlog_pos / gtid_slave_pos /
//                 gtid_current_pos (position), read_only, SHOW SLAVE STATUS
//                 (is_slave = replication configured; upstream =
//                 Master_Host:Master_Port; streaming = IO and SQL threads
//                 running; lag_seconds = Seconds_Behind_Master; lag_bytes =
//                 Read - Exec position within one binlog file; link_error =
//                 Last_IO_Error / Last_SQL_Error), data size
//                 (files of D without binary/relay/redo logs), served slaves
//                 (the record, for hosts that still have an account). A
//                 stopped server is read from its files: master.info, the
//                 seed marker, the record. writable = not a slave and
//                 read_only OFF. position: a slave's gtid_slave_pos; else
//                 (MariaDB) per domain the later of gtid_binlog_pos and
//                 gtid_slave_pos, i.e. all a fenced master has.
//                 out_of_sync (slave): transactions written on the slave
//                 itself (the last GTID of a domain in gtid_binlog_pos
//                 carries its own server_id and is beyond gtid_slave_pos:
//                 read locally, no query to the master), an SQL thread
//                 stopped by an error (Last_SQL_Errno), an IO thread refused
//                 with error 1236 (binary logs purged on the master, GTID
//                 missing there); connection errors are not. Changes nothing.
//   Start/Stop    default: `mariadbd --no-defaults --datadir=D --port=...
//                 --socket=P/B.sock --pid-file=P/B.pid --log-error=<log>
//                 --read-only=ON --log-bin=mysql-bin --log-slave-updates=ON
//                 --binlog-format=ROW <server_args>` detached, as os_user,
//                 then waits until it answers. It always comes up read-only:
//                 only MakeWritable opens it to writes, so a restarted node
//                 never becomes a second writer by itself. Stop: SHUTDOWN,
//                 then waits until the pid file's process is gone.
//                 engine.systemd_unit (systemctl start/stop, as root) or
//                 engine.start_command / stop_command (as os_user) replace
//                 both (engines/server_control.h); they should start the
//                 server read-only too (read-only = ON in its configuration).
//                 A unit is stopped even when its server does not answer.
//   Fence         SET GLOBAL read_only=ON (MySQL: super_read_only), then,
//                 unless the server is a slave, ends every client session
//                 but the agent's own and replication's (binlog dumps, slave
//                 threads): open transactions roll back, applications
//                 reconnect (to wherever their env file points). Accounts
//                 with READ_ONLY ADMIN (MariaDB 10.11: root, ALL PRIVILEGES)
//                 can still write after reconnecting; such writes on a
//                 fenced master become errant transactions that its Rejoin
//                 refuses (a full copy then moves its data aside). Give
//                 applications accounts without that privilege. A stopped
//                 server needs nothing: it starts read-only.
//   ServeSlaves   checks log_bin, log_slave_updates and server_id; log_bin and
//                 log_slave_updates need a restart, done only with
//                 engine.allow_restart (FailedPrecondition naming them
//                 otherwise). One account replication_user@<slave host> per
//                 distinct slave host with only REPLICATION SLAVE, its
//                 password sent as a mysql_native_password hash; accounts of
//                 replication_user for other hosts are dropped (and their
//                 binlog dump sessions ended); the record is rewritten. A
//                 slave that ReplicationTls says comes over TLS (engine.stack
//                 is this node's) gets REQUIRE SSL; one in another stack gets
//                 the account for host '%' (bound by TLS and the password:
//                 across stacks the address its connections come from, NAT
//                 or an egress gateway, is often not the one it is reached
//                 at).
//   Bootstrap     upstream.transfer_port must be set (the master's agent
//                 serves transfers). Checks the master accepts this node's
//                 replication login and has another server_id, then streams
//                 the master's backup through the BackupSource into
//                 P/B.tandem-new: free disk must be at least twice the
//                 stream's announced size (FailedPrecondition, before
//                 anything is written). Physical (mariadb-backup xbstream):
//                 `mbstream -x`, then `mariadb-backup --prepare`, GTID from
//                 xtrabackup_binlog_info (or mariadb_backup_binlog_info).
//                 Logical (mariadb-dump): a scratch server on the side
//                 directory (no network, no binlog) loads it with the
//                 `mariadb` client; GTID from the dump's gtid_slave_pos line.
//                 Then the seed marker, one syncfs, stop, D moved aside, the
//                 copy swapped in, start (read-only), gtid_slave_pos, CHANGE
//                 MASTER TO ... MASTER_USE_GTID=slave_pos (with MASTER_SSL=1,
//                 MASTER_SSL_CA=tls_ca_file, MASTER_SSL_VERIFY_SERVER_CERT=1
//                 and the client certificate when ReplicationTls; the agent's
//                 own replication login uses TLS then too), START SLAVE, marker
//                 removed. A marker left by a killed agent resumes from the
//                 start step, without copying again. Progress: bytes of the
//                 stream received / announced. Returns "" (no data id).
//   Follow        starts the server if down. A seeded copy (marker) gets its
//                 replication set up as in Bootstrap. A slave of the same
//                 master: makes sure it is read-only and its threads run.
//                 Re-pointing to another master (or to TLS on or off) first
//                 refuses (FailedPrecondition) errant transactions: GTIDs in
//                 this node's binary log that the new master does not have,
//                 named in the message; then gtid_slave_pos becomes, per
//                 domain, the later of gtid_binlog_pos and gtid_slave_pos. A
//                 server that is not a slave becomes one only through
//                 Bootstrap or Rejoin (FailedPrecondition).
//   Rejoin        the cheap path of a switchover follower or an automatic
//                 resync (no copy). Refuses a writable server and a seeded
//                 copy of another upstream (FailedPrecondition). Waits
//                 (timeout_seconds) until `upstream` accepts the replication
//                 login and is writable: a promoted slave opens to writes
//                 only once it replayed all its fenced master had, before
//                 which that master's last transactions would look errant
//                 (Unavailable after the wait). Then re-points by GTID as
//                 Follow does (errant transactions: FailedPrecondition naming
//                 them), and returns "" once the slave threads run and this
//                 node applied what `upstream` had when it was asked;
//                 FailedPrecondition when replication stops with an SQL
//                 error or IO error 1236 meanwhile (out of sync again), and
//                 Unavailable after timeout_seconds. A slave already
//                 streaming from `upstream` without errant transactions is
//                 left as it is.
//   HasReplayed   gtid_slave_pos merged with gtid_binlog_pos reaches, in
//                 every domain of `position`, its sequence number (GTID strict
//                 mode keeps them growing). InvalidArgument for a position
//                 that is not a GTID list.
//   MakeWritable  on a slave: stops the IO thread, waits (timeout_seconds)
//                 until what was received is applied, STOP SLAVE, RESET
//                 SLAVE ALL; then read_only=OFF.
//   StreamBackup  the master side of Bootstrap: a one-line header naming the
//                 format, then `mariadb-backup --backup --stream=xbstream`
//                 (engine.seed_method "backup", the default) or
//                 `mariadb-dump --single-transaction --gtid --master-data=2
//                 --all-databases` ("dump") stdout, in 1 MiB pieces, with the
//                 data size as the estimate. Needs log_bin (the copy's
//                 position is a GTID).
#ifndef TANDEM_ENGINES_MYSQL_MYSQL_ENGINE_H_
#define TANDEM_ENGINES_MYSQL_MYSQL_ENGINE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "engines/engine.h"
#include "engines/engine_config.h"

namespace tandem {

// Files the engine keeps (see above).
inline constexpr char kMysqlSeedMarkerFile[] = "tandem-seed.info";
inline constexpr char kMysqlSideDirSuffix[] = ".tandem-new";
inline constexpr char kMysqlOldDirInfix[] = ".tandem-old-";

// Validates `config` and returns the engine. InvalidArgument naming the
// field ("engine.data_dir: must be an absolute path") for: a type other than
// mysql; an empty host or user; a port outside 1-65535; a data_dir that is
// not absolute, or whose parent does not exist, or whose socket path would be
// too long; an os_user that does not exist or that the agent cannot act as
// (or none while the agent is root and uses the default start); a password
// file that is unreadable or readable by group/others; a replication_user
// that is not a plain identifier of at most 32 characters; timeout_seconds <
// 1; a relative log_file; a seed_method other than "", "backup", "dump";
// server_args that set what the default start sets (datadir, port, socket,
// pid-file, log-error, defaults, user); missing tools: mariadbd (default
// start), mariadb-backup and mbstream (backup), mariadb-dump, mariadb and
// mariadb-install-db (dump), in bin_dir or else PATH, /usr/sbin, /usr/bin.
// `source` (not owned, may be null: Bootstrap then fails with
// FailedPrecondition) is where Bootstrap fetches the master's backup.
// Connects to nothing.
absl::StatusOr<std::unique_ptr<Engine>> MakeMysqlEngine(const EngineConfig& config,
                                                        BackupSource* source = nullptr);

}  // namespace tandem

#endif  // TANDEM_ENGINES_MYSQL_MYSQL_ENGINE_H_

// A real MariaDB server for tests: a data directory in a temp dir, started on
// a free loopback port as a ChildProcess, stopped and removed with the object.
//
// Runs as root in CI: mariadbd then runs as the `mysql` OS user (the test's
// own user when it is not root), which owns the temp dir. The socket, pid
// file and log sit where the MySQL engine's default start puts them
// (<dir>/<name>.sock, .pid, .log), so the destructor stops whichever of the
// two started a server there. root has no password over TCP
// (--auth-root-authentication-method=normal).
//
// Data directories are copied from one template per test process (made by
// mariadb-install-db once): a new server costs a copy of about 30 MB, not a
// bootstrap.
//
//   absl::StatusOr<std::unique_ptr<MysqlServer>> my = MysqlServer::Create({.name = "a"});
//   ASSERT_TRUE(my.ok()) << my.status();
//   ASSERT_TRUE((*my)->Exec("CREATE DATABASE app").ok());
#ifndef TANDEM_TESTS_HARNESS_MYSQL_SERVER_H_
#define TANDEM_TESTS_HARNESS_MYSQL_SERVER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engines/mysql/mysql_client.h"
#include "tests/harness/harness.h"

namespace tandem::testing {

// The OS user that runs MariaDB in tests: "mysql" when the test runs as
// root, else the test's own user.
std::string MysqlOsUser();

// Stops the mariadbd whose pid file is `pid_file`, whoever started it:
// SIGTERM, poll until the process is gone, SIGKILL after `timeout`, and reap
// it when it is this process's (adopted) child. OK when no server runs there
// (no pid file, a stale one, or a reused pid).
absl::Status StopMysqlByPidFile(const std::string& pid_file,
                                std::chrono::milliseconds timeout = std::chrono::seconds(30));

struct MysqlServerOptions {
  // Name of the data directory inside the server's temp dir.
  std::string name = "my";
  // --server-id; give each server of a group its own.
  uint32_t server_id = 1;
  // With the binary log (--log-bin, --log-slave-updates, ROW) when the
  // harness starts the server; without it, what a master lacks.
  bool log_bin = true;
  // More server arguments after the harness's own.
  std::vector<std::string> extra_args;
  // Start the server in Create (else call Start()).
  bool start = true;
};

class MysqlServer {
 public:
  // Creates a temp dir /tmp/tmy.XXXXXX owned by os_user() with the data
  // directory <dir>/<name> and, unless options.start is false, starts it.
  // Calls AdoptOrphans(), so servers an engine starts detached can be
  // reaped. Errors carry the tail of the tool's or the server's log.
  static absl::StatusOr<std::unique_ptr<MysqlServer>> Create(const MysqlServerOptions& options = {});

  // Stops whatever server runs on the pid file (and an engine's scratch
  // loading server), reaps adopted zombies and removes the temp dir.
  ~MysqlServer();
  MysqlServer(const MysqlServer&) = delete;
  MysqlServer& operator=(const MysqlServer&) = delete;

  // Spawns `mariadbd --no-defaults --datadir --port --socket --pid-file
  // --log-error <server_args()> [binlog args]` and polls a root login until
  // it works (60 s). The first start picks a free port; later starts reuse
  // it. OK if a server already answers there.
  absl::Status Start();
  // SIGTERM and wait; also stops a server an engine started. OK when
  // nothing runs.
  absl::Status Stop();
  // A root login over TCP works.
  bool Answers() const;

  // One statement on a fresh root connection over TCP.
  absl::StatusOr<MysqlResult> Query(const std::string& sql) const;
  absl::Status Exec(const std::string& sql) const;
  // First column of the first row ("" for NULL).
  absl::StatusOr<std::string> Value(const std::string& sql) const;
  // One statement as another account (e.g. an application user).
  absl::Status ExecAs(const std::string& user, const std::string& password,
                      const std::string& sql) const;

  const std::string& dir() const { return dir_.path(); }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& log_file() const { return log_file_; }
  const std::string& socket() const { return socket_; }
  const std::string& pid_file() const { return pid_file_; }
  const std::string& os_user() const { return os_user_; }
  uint16_t port() const { return port_; }
  // What the harness passes besides the data directory, port, socket, pid
  // file, log and binary log settings: loopback only, the server id, GTID
  // strict mode, small InnoDB buffers, no fsync. Reuse it as an
  // EngineConfig's server_args.
  std::vector<std::string> server_args() const;

 private:
  MysqlServer(TempDir dir, std::string name, std::string os_user, MysqlServerOptions options);
  absl::Status StartOnce();

  TempDir dir_;
  std::string data_dir_;
  std::string log_file_;
  std::string socket_;
  std::string pid_file_;
  std::string os_user_;
  MysqlServerOptions options_;
  uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> child_;
};

}  // namespace tandem::testing

#endif  // TANDEM_TESTS_HARNESS_MYSQL_SERVER_H_

// A real PostgreSQL server for tests: initdb into a temp dir, started on a
// free loopback port as a ChildProcess, stopped and removed with the object.
//
// Runs as root in CI: initdb and postgres refuse root, so they run as the
// `postgres` OS user (the test's own user when it is not root), and the data
// directory is owned by that user.
//
//   absl::StatusOr<std::unique_ptr<PgServer>> pg = PgServer::Create({.name = "a"});
//   ASSERT_TRUE(pg.ok()) << pg.status();
//   ASSERT_TRUE((*pg)->Exec("CREATE TABLE t (i int)").ok());
#ifndef TANDEM_TESTS_HARNESS_PG_SERVER_H_
#define TANDEM_TESTS_HARNESS_PG_SERVER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/harness/harness.h"

namespace tandem::testing {

// The PostgreSQL server tools: /usr/lib/postgresql/15/bin when it exists,
// else the newest /usr/lib/postgresql/<N>/bin. NotFound naming what was
// looked for otherwise. The one place tests look for them.
absl::StatusOr<std::string> PostgresBinDir();

// The OS user that runs PostgreSQL in tests: "postgres" when the test runs
// as root, else the test's own user.
std::string PostgresOsUser();

// Stops the server whose data directory is `data_dir`, whoever started it
// (the harness, or an engine through pg_ctl): reads the postmaster pid from
// postmaster.pid, sends SIGINT (fast shutdown), polls until the process is
// gone, SIGKILLs it after `timeout`, and reaps it when it is this process's
// (adopted) child. OK when no server runs there.
absl::Status StopPostgresByPidFile(const std::string& data_dir,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(30));

struct PgServerOptions {
  // Name of the data directory inside the server's temp dir.
  std::string name = "pg";
  // More server arguments after the harness's own (e.g. {"-c", "wal_level=minimal"}).
  std::vector<std::string> extra_args;
  // Start the server in Create (else call Start()).
  bool start = true;
};

// Rows of a query result, text format; NULL is "".
using Rows = std::vector<std::vector<std::string>>;

class PgServer {
 public:
  // Creates a temp dir /tmp/tpg.XXXXXX owned by os_user(), runs
  //   initdb --no-sync -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --wal-segsize=1
  // into <dir>/<name> and, unless options.start is false, starts it.
  // (1 MB WAL segments instead of 16 MB: every copy a test makes is 40%
  // smaller, which matters on a shared disk.)
  // Also calls AdoptOrphans(), so servers that engines start through pg_ctl
  // can be reaped. Errors carry the tail of initdb's or the server's log.
  static absl::StatusOr<std::unique_ptr<PgServer>> Create(const PgServerOptions& options = {});

  // Stops whatever server runs on data_dir() (StopPostgresByPidFile), reaps
  // adopted zombies and removes the temp dir.
  ~PgServer();
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  // Spawns `postgres -D <data_dir> -p <port> <server_args()...>` and polls
  // PQping until it answers (30 s). A restart keeps port(); when the port
  // was taken meanwhile, picks another one and tries again. OK if the
  // harness's server already runs.
  absl::Status Start();
  // SIGINT (fast shutdown) and wait; also stops a server an engine started
  // on data_dir(). OK when nothing runs.
  absl::Status Stop();
  // PQping says the server answers.
  bool Answers() const;

  // Runs `sql` on a fresh libpq connection over TCP (user postgres, database
  // postgres). Query returns the rows of the last statement; Exec accepts
  // several statements. Errors carry PostgreSQL's message and SQLSTATE.
  absl::StatusOr<Rows> Query(const std::string& sql) const;
  absl::Status Exec(const std::string& sql) const;
  // Query of a single value (first column of the first row).
  absl::StatusOr<std::string> Value(const std::string& sql) const;

  const std::string& dir() const { return dir_.path(); }  // temp dir, also the socket dir
  const std::string& data_dir() const { return data_dir_; }
  const std::string& log_file() const { return log_file_; }
  const std::string& bin_dir() const { return bin_dir_; }
  const std::string& os_user() const { return os_user_; }
  // Chosen by Create, also when the server is not started there.
  uint16_t port() const { return port_; }
  // "host=127.0.0.1 port=<port> user=postgres dbname=postgres connect_timeout=5"
  std::string conninfo() const;
  // What the harness passes after "-p <port>": listen on 127.0.0.1 only, the
  // socket in dir(), fsync off, small shared_buffers, 30 connections, plus
  // options.extra_args. Reuse it as an EngineConfig's server_args.
  std::vector<std::string> server_args() const;

 private:
  PgServer(TempDir dir, std::string data_dir, std::string bin_dir, std::string os_user,
           std::vector<std::string> extra_args);
  absl::Status StartOnce();

  TempDir dir_;
  std::string data_dir_;
  std::string log_file_;
  std::string bin_dir_;
  std::string os_user_;
  std::vector<std::string> extra_args_;
  uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> child_;
};

}  // namespace tandem::testing

#endif  // TANDEM_TESTS_HARNESS_PG_SERVER_H_

// A real redis-server for tests: started on a free loopback port in a temp
// dir as a ChildProcess, stopped and removed with the object.
//
// The server runs with a config file (<data_dir>/redis.conf, created empty)
// so that CONFIG REWRITE works, and with its pid file at
// <data_dir>/redis.pid, the place the Redis engine's default start uses too:
// the destructor stops whichever of the two started a server there.
//
//   absl::StatusOr<std::unique_ptr<RedisServer>> r = RedisServer::Create({.name = "a"});
//   ASSERT_TRUE(r.ok()) << r.status();
//   ASSERT_TRUE((*r)->Command({"SET", "k", "v"}).ok());
#ifndef TANDEM_TESTS_HARNESS_REDIS_SERVER_H_
#define TANDEM_TESTS_HARNESS_REDIS_SERVER_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engines/redis/redis_client.h"
#include "tests/harness/harness.h"

namespace tandem::testing {

// Stops the redis-server whose pid file is <data_dir>/redis.pid, whoever
// started it: SIGTERM, poll until the process is gone, SIGKILL after
// `timeout`, and reap it when it is this process's (adopted) child. OK when
// no server runs there (no pid file, a stale one, or a reused pid).
absl::Status StopRedisByPidFile(const std::string& data_dir,
                                std::chrono::milliseconds timeout = std::chrono::seconds(30));

struct RedisServerOptions {
  // Name of the data directory inside the server's temp dir.
  std::string name = "redis";
  // false: --save "" --appendonly no (a pure in-memory server);
  // true:  --save "3600 1" --appendonly yes (what a master needs).
  bool persistence = false;
  // requirepass; "" = none. Also written to password_file().
  std::string password;
  // More server arguments after the harness's own.
  std::vector<std::string> extra_args;
  // Set: the server also serves TLS on tls_port() with these files
  // (--tls-port, --tls-cert-file, --tls-key-file, --tls-ca-cert-file,
  // --tls-auth-clients yes: a client, a replica too, must show a certificate
  // the CA signed). The harness's own commands use the plain port.
  std::optional<TestCertificates> tls;
  // Start the server in Create (else call Start()).
  bool start = true;
};

class RedisServer {
 public:
  // Creates a temp dir /tmp/trd.XXXXXX with <dir>/<name> (the server's dir)
  // and an empty <dir>/<name>/redis.conf, and unless options.start is false
  // starts the server. Calls AdoptOrphans(), so servers that an engine
  // daemonizes can be reaped. Errors carry the tail of the server's log.
  static absl::StatusOr<std::unique_ptr<RedisServer>> Create(
      const RedisServerOptions& options = {});

  // Stops whatever server runs on data_dir() (StopRedisByPidFile), reaps
  // adopted zombies and removes the temp dir.
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Spawns `redis-server <data_dir>/redis.conf --port <port> <server_args()>
  // --dir <data_dir> --pidfile <data_dir>/redis.pid --logfile <log_file>
  // --daemonize no` and polls PING until it answers (30 s). The first start
  // picks a free port (and TLS port); later starts reuse them (an engine
  // config points at them).
  // OK if the harness's server already runs.
  absl::Status Start();
  // SIGTERM and wait; also stops a server an engine started on data_dir().
  // OK when nothing runs.
  absl::Status Stop();
  // PING answers PONG.
  bool Answers() const;

  // Runs one command on a fresh connection (logged in with the password).
  // Error replies become a status (engines/redis/redis_client.h).
  absl::StatusOr<RedisReply> Command(const std::vector<std::string>& args) const;
  // Command() expecting a string or status reply.
  absl::StatusOr<std::string> Text(const std::vector<std::string>& args) const;
  // INFO <section> as key -> value.
  absl::StatusOr<std::map<std::string, std::string>> Info(const std::string& section) const;

  const std::string& dir() const { return dir_.path(); }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& log_file() const { return log_file_; }
  // A mode 0600 file holding the password ("" when there is none).
  const std::string& password_file() const { return password_file_; }
  uint16_t port() const { return port_; }
  // The TLS port (options.tls), 0 without TLS or before the first start.
  uint16_t tls_port() const { return tls_port_; }
  // What the harness passes besides port, dir, pidfile, logfile and
  // daemonize: --bind 127.0.0.1, the persistence settings,
  // --repl-diskless-sync-delay 0, requirepass/masterauth, the TLS settings
  // (options.tls), the extra args.
  // Reuse it as an EngineConfig's server_args.
  std::vector<std::string> server_args() const;

 private:
  RedisServer(TempDir dir, std::string data_dir, RedisServerOptions options);
  absl::Status StartOnce();

  TempDir dir_;
  std::string data_dir_;
  std::string log_file_;
  std::string password_file_;
  RedisServerOptions options_;
  uint16_t port_ = 0;
  uint16_t tls_port_ = 0;
  std::unique_ptr<ChildProcess> child_;
};

}  // namespace tandem::testing

#endif  // TANDEM_TESTS_HARNESS_REDIS_SERVER_H_

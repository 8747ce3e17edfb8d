// Test harness: temp dirs, free ports, polling, child processes.
//
// Used by every integration and end-to-end test of the project. Tests wait
// only through PollUntil (never a fixed sleep), start servers and binaries
// only through ChildProcess (posix_spawn, never fork: gRPC threads may be
// running), and keep everything they create under a TempDir.
//
// Thread-safety: FreePort, AdoptOrphans and ReapAdoptedZombies may be called
// from any thread; a TempDir or ChildProcess is used by one thread at a time.
#ifndef TANDEM_TESTS_HARNESS_HARNESS_H_
#define TANDEM_TESTS_HARNESS_HARNESS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tandem::testing {

// A directory /tmp/<prefix>.XXXXXX (kept short: unix socket paths must stay
// under 107 bytes), mode 0755 so that the postgres/mysql users can traverse
// it. Removed recursively by the destructor unless the environment has
// TANDEM_KEEP_TEMP=1 (the path is then printed to stderr). A failure to
// create it aborts the test binary with a message: nothing can run without it.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "tdm");
  ~TempDir();
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string Sub(std::string_view name) const;

 private:
  void Remove();
  std::string path_;
};

// A TCP connection to 127.0.0.1:port (a socket to close), or -1.
int ConnectLoopback(uint16_t port);

// An HTTP answer (HttpCall).
struct HttpReply {
  int status = -1;  // -1: no answer
  std::string headers;
  std::string body;
};

// One HTTP/1.1 request to 127.0.0.1:port (plain text); reads until the
// server closes the connection or is silent for 10 s.
HttpReply HttpCall(uint16_t port, const std::string& target, const std::string& method = "GET");

// The paths that match the shell pattern `pattern`, sorted (glob(3)); empty
// when none does.
std::vector<std::string> Glob(const std::string& pattern);

// A TCP port on 127.0.0.1 that is free right now: chosen at random in
// 20000-29999 (below the kernel's ephemeral range, so outgoing connections do
// not take it), checked by binding it, and never returned twice by one
// process. Aborts when none is found after many tries.
uint16_t FreePort();

// Calls `cond` until it returns true or `timeout` has passed, sleeping
// `every` in between; returns the last result. The only way tests wait.
bool PollUntil(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
               std::chrono::milliseconds every = std::chrono::milliseconds(50));

struct ChildOptions {
  // Run as this OS user (setpriv --reuid/--regid/--init-groups) when the
  // test runs as root and the user is another one. Empty: the test's user.
  std::string run_as;
  // Added to (or replacing in) the test's environment.
  std::vector<std::pair<std::string, std::string>> env;
  // stdout and stderr are appended here; "" = /dev/null.
  std::string log_file;
  std::string cwd;
};

// A process started with posix_spawn through
//   setpriv [--reuid=U --regid=U --init-groups] --pdeathsig KILL -- argv...
// so that it dies with the test even when the test crashes, in its own
// process group. The destructor SIGKILLs the group and reaps the process.
// Note: the death signal follows the *thread* that started the process;
// start children from the test's main thread.
class ChildProcess {
 public:
  // NotFound when argv[0] is not an executable path nor found in PATH,
  // PermissionDenied when run_as needs root.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv,
                                                             const ChildOptions& options = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Reaps without blocking: a zombie counts as dead.
  bool Running();
  // Sends `sig` to the process (not its group). FailedPrecondition once it
  // has been reaped.
  absl::Status Signal(int sig);
  // Waits up to `timeout` for the exit; returns the exit code, or 128+N when
  // killed by signal N. DeadlineExceeded when it is still running.
  absl::StatusOr<int> Wait(std::chrono::milliseconds timeout);
  // Exit status once reaped (as Wait returns it).
  std::optional<int> exit_status() const { return exit_status_; }
  const std::string& log_file() const { return log_file_; }

 private:
  ChildProcess(pid_t pid, std::string log_file) : pid_(pid), log_file_(std::move(log_file)) {}
  pid_t pid_;
  std::string log_file_;
  std::optional<int> exit_status_;
};

// Makes this process a child subreaper (prctl PR_SET_CHILD_SUBREAPER):
// daemons started by tools the test runs (pg_ctl start, ...) are reparented
// to the test instead of PID 1, so that ReapAdoptedZombies can reap them
// once they exit. Idempotent; PgServer::Create calls it.
void AdoptOrphans();

// Reaps the zombie children of this process that no live ChildProcess owns
// (adopted daemons that have exited). Call it only while no other thread is
// waiting on a child of its own (common/subprocess.h Run). Returns how many.
int ReapAdoptedZombies();

// True when `pid` exists and is not a zombie.
bool ProcessAlive(pid_t pid);

// The user this test runs as ("root" in CI).
std::string CurrentUserName();

// The last `max_bytes` of a file ("" when unreadable), for failure messages.
std::string FileTail(const std::string& path, size_t max_bytes = 2000);

// A throwaway certificate authority and one server certificate it signed,
// made with openssl in `dir`: ca.pem, server.pem and server.key (0600).
// The server certificate names `ip_addresses` (subjectAltName IP entries).
// With `owner` set, the three files are chowned to that OS user (servers
// refuse keys they do not own). Valid for two days.
struct TestCertificates {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};
absl::StatusOr<TestCertificates> MakeTestCertificates(const std::string& dir,
                                                      const std::vector<std::string>& ip_addresses,
                                                      const std::string& owner = "");

}  // namespace tandem::testing

#endif  // TANDEM_TESTS_HARNESS_HARNESS_H_

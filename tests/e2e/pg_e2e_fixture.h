// The PostgreSQL end-to-end fixture: a Cluster (the real binaries) whose
// nodes are real PostgreSQL 15 servers, and helpers to look at them.
#ifndef TANDEM_TESTS_E2E_PG_E2E_FIXTURE_H_
#define TANDEM_TESTS_E2E_PG_E2E_FIXTURE_H_

#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "common/subprocess.h"
#include "gtest/gtest.h"
#include "tests/e2e/cluster.h"
#include "tests/harness/pg_server.h"

namespace tandem::testing {

using std::chrono::milliseconds;
using std::chrono::seconds;

class PostgresqlE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    password_file_ = cluster_.dir().Sub("replication.password");
    ASSERT_TRUE(WriteFileAtomic(password_file_, "repl-secret-4711\n", 0600).ok());
    cluster_.StartController();
  }

  // Creates a PostgreSQL data dir (initdb; the agent starts the server) and
  // the node's agent.
  // `engine_yaml`: more lines of the agent's engine section; `server_args`:
  // more server settings.
  PgServer& AddPgNode(const std::string& id, const std::string& stack = "main",
                      const std::string& external = "", const std::string& engine_yaml = "",
                      const std::vector<std::string>& server_args = {}) {
    PgServerOptions options;
    options.name = id;
    options.start = false;
    if (!external.empty()) {
      // The later -c wins over the harness's listen_addresses.
      options.extra_args = {"-c", absl::StrCat("listen_addresses=127.0.0.1,", external)};
    }
    options.extra_args.insert(options.extra_args.end(), server_args.begin(), server_args.end());
    absl::StatusOr<std::unique_ptr<PgServer>> pg = PgServer::Create(options);
    EXPECT_TRUE(pg.ok()) << pg.status();
    PgServer& server = *servers_.emplace_back(*std::move(pg));
    std::vector<std::string> quoted;
    for (const std::string& arg : server.server_args()) quoted.push_back(absl::StrCat("\"", arg, "\""));
    const std::string addresses =
        external.empty() ? "{internal: 127.0.0.1}"
                         : absl::StrCat("{internal: 127.0.0.1, external: ", external, "}");
    cluster_.AddNode(id, stack,
                     absl::StrCat("addresses: ", addresses, "\n"
                                  "engine:\n"
                                  "  type: postgresql\n"
                                  "  port: ", server.port(), "\n",
                                  "  data_dir: ", server.data_dir(), "\n",
                                  "  user: postgres\n"
                                  "  os_user: ", server.os_user(), "\n",
                                  "  bin_dir: ", server.bin_dir(), "\n",
                                  "  server_args: [", absl::StrJoin(quoted, ", "), "]\n",
                                  "  replication_password_file: ", password_file_, "\n",
                                  "  timeout: 60\n", engine_yaml));
    return server;
  }

  static int64_t Count(const PgServer& pg, const std::string& table) {
    absl::StatusOr<std::string> v = pg.Value(absl::StrCat("SELECT count(*) FROM ", table));
    return v.ok() ? std::stoll(*v) : -1;
  }

  // Polls until `pg` has `rows` rows in `table`; returns how long it took.
  static bool HasRows(const PgServer& pg, const std::string& table, int64_t rows, milliseconds within) {
    return PollUntil([&] { return Count(pg, table) == rows; }, within, milliseconds(10));
  }

  // Data directories moved aside next to `pg`'s (one per full copy).
  static size_t MovedAside(const PgServer& pg) {
    return Glob(pg.data_dir() + ".tandem-old-*").size();
  }

  // As the server's OS user (pg_ctl, file changes the server must own).
  static void AsPostgres(const PgServer& pg, const std::vector<std::string>& argv) {
    RunOptions options;
    options.run_as = pg.os_user();
    options.timeout = std::chrono::seconds(60);
    absl::StatusOr<RunResult> r = ::tandem::Run(argv, options);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->exit_code, 0) << absl::StrJoin(argv, " ") << ": " << r->output;
  }

  // Accepts application writes: not in recovery, not fenced read-only.
  static bool Writable(const PgServer& pg) {
    absl::StatusOr<std::string> v = pg.Value(
        "SELECT (NOT pg_is_in_recovery() AND "
        "current_setting('default_transaction_read_only') = 'off')::text");
    return v.ok() && *v == "true";
  }

  // Stops (SIGSTOP) or resumes (SIGCONT) a node's agent: a hung agent keeps
  // its connection to the controller open and answers nothing.
  void HangAgent(const std::string& id) {
    ASSERT_TRUE(cluster_.node(id).agent->Signal(SIGSTOP).ok());
  }
  void ResumeAgent(const std::string& id) {
    ASSERT_TRUE(cluster_.node(id).agent->Signal(SIGCONT).ok());
  }

  static bool InRecovery(const PgServer& pg) {
    absl::StatusOr<std::string> v = pg.Value("SELECT pg_is_in_recovery()");
    return v.ok() && *v == "t";
  }

  // Servers outlive the cluster: its agents stop before their data goes.
  std::vector<std::unique_ptr<PgServer>> servers_;
  Cluster cluster_;
  std::string password_file_;
};

}  // namespace tandem::testing

#endif  // TANDEM_TESTS_E2E_PG_E2E_FIXTURE_H_

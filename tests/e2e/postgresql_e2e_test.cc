// The PostgreSQL user story, end to end: real tandem-controller, one real
// tandem-agent per node, real PostgreSQL 15 servers, driven by tandemctl.
#include <glob.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <memory>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/subprocess.h"
#include "gtest/gtest.h"
#include "tests/e2e/cluster.h"
#include "tests/harness/pg_server.h"
#include "absl/strings/str_replace.h"
#include "security/certs.h"
#include "security/tls.h"
#include "tandem.grpc.pb.h"
#include <grpcpp/grpcpp.h>

namespace tandem::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::vector<std::string> Glob(const std::string& pattern) {
  glob_t g{};
  std::vector<std::string> out;
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  return out;
}

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

  static bool InRecovery(const PgServer& pg) {
    absl::StatusOr<std::string> v = pg.Value("SELECT pg_is_in_recovery()");
    return v.ok() && *v == "t";
  }

  // Servers outlive the cluster: its agents stop before their data goes.
  std::vector<std::unique_ptr<PgServer>> servers_;
  Cluster cluster_;
  std::string password_file_;
};

TEST_F(PostgresqlE2eTest, UserStory) {
  PgServer& db1 = AddPgNode("db1");
  PgServer& db2 = AddPgNode("db2");
  PgServer& db3 = AddPgNode("db3");
  const std::string p1 = std::to_string(db1.port());

  // 1. Every node registers and converges as standalone.
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 3; }, seconds(30)));
  cluster_.Wait({"db1", "db2", "db3"});
  {
    auto nodes = cluster_.Nodes();
    ASSERT_EQ(nodes.size(), 3u) << cluster_.Ctl({"nodes"}).out;
    for (const auto& [id, n] : nodes) {
      EXPECT_EQ(n["desired"]["role"], "standalone") << id;
      EXPECT_EQ(n["observed"]["role"], "standalone") << id;
      EXPECT_TRUE(n["converged"].get<bool>()) << id;
    }
    CtlResult table = cluster_.Ctl({"nodes"});
    EXPECT_EQ(table.exit_code, 0);
    EXPECT_NE(table.out.find("db2"), std::string::npos);
  }
  ASSERT_TRUE(db1.Exec("CREATE TABLE t (id serial PRIMARY KEY, v text);"
                       "INSERT INTO t (v) SELECT 'row ' || g FROM generate_series(1, 200000) g")
                  .ok());
  ASSERT_TRUE(db2.Exec("CREATE TABLE own_db2 (x int); INSERT INTO own_db2 VALUES (42)").ok());

  // Invalid requests are refused and change nothing.
  {
    CtlResult self = cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db1"});
    EXPECT_NE(self.exit_code, 0);
    EXPECT_NE(self.out.find("own upstream"), std::string::npos) << self.out;
    CtlResult unknown = cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db9"});
    EXPECT_NE(unknown.exit_code, 0);
    EXPECT_NE(unknown.out.find("db9"), std::string::npos) << unknown.out;
    EXPECT_EQ(cluster_.Nodes()["db1"]["desired"]["role"], "standalone");
  }

  // 2. Enable replication db1 -> db2.
  CtlResult enable = cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"});
  ASSERT_EQ(enable.exit_code, 0) << enable.out;
  cluster_.Wait({"db1", "db2"});
  EXPECT_TRUE(InRecovery(db2));
  EXPECT_EQ(Count(db2, "t"), 200000);
  // db2's previous data directory was moved aside, with its own table in it.
  std::vector<std::string> aside = Glob(db2.data_dir() + ".tandem-old-*");
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_TRUE(PathExists(aside[0] + "/PG_VERSION"));
  EXPECT_NE(Count(db2, "own_db2"), 1) << "db2's data was replaced";
  // A row written on db1 is readable on db2 within a second.
  ASSERT_TRUE(db1.Exec("INSERT INTO t (v) VALUES ('after enable')").ok());
  EXPECT_TRUE(HasRows(db2, "t", 200001, seconds(1)));
  // db2 refuses writes.
  absl::Status write = db2.Exec("INSERT INTO t (v) VALUES ('on the slave')");
  EXPECT_FALSE(write.ok());
  EXPECT_NE(write.message().find("read-only"), std::string::npos) << write;

  // 3. Env files and hooks.
  for (const char* id : {"db1", "db2"}) {
    auto env = cluster_.Env(id);
    EXPECT_EQ(env["POSTGRESQL_ADDRESS"], "127.0.0.1") << id;
    EXPECT_EQ(env["POSTGRESQL_ADDRESS_INT"], "127.0.0.1") << id;
    EXPECT_TRUE(env.count("POSTGRESQL_ADDRESS_EXT")) << id;
    EXPECT_EQ(env["POSTGRESQL_PORT"], p1) << id;
    EXPECT_EQ(env["POSTGRESQL_SLAVE_ADDRESSES"], absl::StrCat("127.0.0.1:", db2.port())) << id;
    EXPECT_EQ(env["POSTGRESQL_SLAVE_ADDRESSES_INT"], absl::StrCat("127.0.0.1:", db2.port())) << id;
  }
  EXPECT_EQ(cluster_.Env("db1")["TANDEM_ROLE"], "master");
  EXPECT_EQ(cluster_.Env("db2")["TANDEM_ROLE"], "slave");
  EXPECT_EQ(cluster_.HookRuns("db1"), 2) << "standalone, then master";
  EXPECT_EQ(cluster_.HookRuns("db2"), 2) << "standalone, then slave";

  // 6. env, status, nodes -o json.
  {
    CtlResult env = cluster_.Ctl({"env", "db2"});
    EXPECT_EQ(env.exit_code, 0);
    EXPECT_NE(env.out.find("POSTGRESQL_ADDRESS=127.0.0.1"), std::string::npos) << env.out;
    EXPECT_NE(env.out.find("TANDEM_ROLE=slave"), std::string::npos) << env.out;
    CtlResult status = cluster_.Ctl({"status", "db2"});
    EXPECT_EQ(status.exit_code, 0);
    EXPECT_NE(status.out.find("slave"), std::string::npos) << status.out;
    auto nodes = cluster_.Nodes();
    EXPECT_EQ(nodes["db2"]["observed"]["role"], "slave");
    EXPECT_TRUE(nodes["db2"]["observed"]["streaming"].get<bool>());
    EXPECT_EQ(nodes["db2"]["upstream_id"], "db1");
    EXPECT_EQ(nodes["db1"]["observed"]["role"], "master");
  }

  // The agent's own tools: plan (nothing to do once converged), check-config.
  {
    absl::StatusOr<RunResult> plan =
        tandem::Run({TANDEM_AGENT_BIN, "plan", "--config", cluster_.node("db2").config_path});
    ASSERT_TRUE(plan.ok());
    EXPECT_EQ(plan->exit_code, 0) << plan->output;
    EXPECT_NE(plan->output.find("nothing to do"), std::string::npos) << plan->output;
    absl::StatusOr<RunResult> check =
        tandem::Run({TANDEM_AGENT_BIN, "check-config", "--config", cluster_.node("db2").config_path});
    ASSERT_TRUE(check.ok());
    EXPECT_EQ(check->exit_code, 0) << check->output;
  }

  // 4. Add db3; kill -9 its agent in the middle of the bootstrap.
  CtlResult add = cluster_.Ctl({"slave", "add", "db3", "--master", "db1"});
  ASSERT_EQ(add.exit_code, 0) << add.out;
  const std::string side_dir = db3.data_dir() + ".tandem-new";
  const bool caught = PollUntil([&] { return PathExists(side_dir); }, seconds(60), milliseconds(2));
  cluster_.KillAgent("db3");
  cluster_.StartAgent("db3");
  cluster_.Wait({"db1", "db3"});
  EXPECT_TRUE(caught) << "the bootstrap's side directory never appeared";
  EXPECT_TRUE(InRecovery(db3));
  EXPECT_EQ(Count(db3, "t"), 200001);
  EXPECT_FALSE(PathExists(side_dir));
  EXPECT_EQ(Glob(db3.data_dir() + ".tandem-old-*").size(), 1u) << "db3's own data kept once";
  ASSERT_TRUE(db1.Exec("INSERT INTO t (v) VALUES ('after add')").ok());
  EXPECT_TRUE(HasRows(db3, "t", 200002, seconds(5)));
  EXPECT_EQ(cluster_.Env("db1")["POSTGRESQL_SLAVE_ADDRESSES"],
            absl::StrCat("127.0.0.1:", db2.port(), ",127.0.0.1:", db3.port()));

  // The controller is killed and restarted: agents hold their roles while it
  // is away, and it comes back with the same desired states.
  auto before = cluster_.Nodes();
  cluster_.KillController();
  ASSERT_TRUE(db1.Exec("INSERT INTO t (v) VALUES ('controller away')").ok());
  EXPECT_TRUE(HasRows(db2, "t", 200003, seconds(5)));
  EXPECT_TRUE(InRecovery(db2));
  cluster_.StartController();
  auto after = cluster_.Nodes();
  for (const char* id : {"db1", "db2", "db3"}) {
    EXPECT_EQ(after[id]["desired"]["generation"], before[id]["desired"]["generation"]) << id;
    EXPECT_EQ(after[id]["desired"]["role"], before[id]["desired"]["role"]) << id;
  }
  cluster_.Wait({"db1", "db2", "db3"});

  // Remove db3: standalone and writable again, its slot gone from db1.
  CtlResult remove = cluster_.Ctl({"slave", "remove", "db3"});
  ASSERT_EQ(remove.exit_code, 0) << remove.out;
  cluster_.Wait({"db1", "db3"});
  EXPECT_FALSE(InRecovery(db3));
  EXPECT_TRUE(db3.Exec("INSERT INTO t (v) VALUES ('db3 on its own')").ok());
  EXPECT_EQ(*db1.Value("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%db3%'"), "0");
  EXPECT_EQ(cluster_.Env("db3")["TANDEM_ROLE"], "standalone");
  EXPECT_EQ(cluster_.Env("db3")["POSTGRESQL_PORT"], std::to_string(db3.port()));
  EXPECT_EQ(cluster_.Env("db1")["POSTGRESQL_SLAVE_ADDRESSES"], absl::StrCat("127.0.0.1:", db2.port()));

  // Resync: db2 is rebuilt from a fresh copy of db1 (its data moved aside
  // again); a standalone node cannot be resynced.
  {
    CtlResult refused = cluster_.Ctl({"resync", "db3"});
    EXPECT_NE(refused.exit_code, 0);
    EXPECT_NE(refused.out.find("db3"), std::string::npos) << refused.out;
    const int64_t rows = Count(db1, "t");
    CtlResult resync = cluster_.Ctl({"resync", "db2"});
    ASSERT_EQ(resync.exit_code, 0) << resync.out;
    cluster_.Wait({"db1", "db2"});
    EXPECT_EQ(Glob(db2.data_dir() + ".tandem-old-*").size(), 2u);
    EXPECT_TRUE(InRecovery(db2));
    EXPECT_EQ(Count(db2, "t"), rows);
    ASSERT_TRUE(db1.Exec("INSERT INTO t (v) VALUES ('after resync')").ok());
    EXPECT_TRUE(HasRows(db2, "t", rows + 1, seconds(5)));
  }

  // 5. Disable replication: every member standalone and writable, data kept,
  // no slot left on db1.
  CtlResult disable = cluster_.Ctl({"replication", "disable", "--master", "db1"});
  ASSERT_EQ(disable.exit_code, 0) << disable.out;
  cluster_.Wait({"db1", "db2"});
  EXPECT_FALSE(InRecovery(db2));
  EXPECT_EQ(Count(db2, "t"), 200004);
  EXPECT_TRUE(db2.Exec("INSERT INTO t (v) VALUES ('db2 on its own')").ok());
  EXPECT_TRUE(db1.Exec("INSERT INTO t (v) VALUES ('db1 on its own')").ok());
  EXPECT_EQ(*db1.Value("SELECT count(*) FROM pg_replication_slots"), "0");
  EXPECT_EQ(Count(db1, "t"), 200005) << "nothing lost on the master";
  for (const char* id : {"db1", "db2"}) {
    auto env = cluster_.Env(id);
    EXPECT_EQ(env["TANDEM_ROLE"], "standalone") << id;
    EXPECT_EQ(env["POSTGRESQL_SLAVE_ADDRESSES"], "") << id;
  }
  EXPECT_EQ(cluster_.Env("db2")["POSTGRESQL_PORT"], std::to_string(db2.port()));
  for (const auto& [id, n] : cluster_.Nodes()) {
    EXPECT_EQ(n["observed"]["role"], "standalone") << id;
  }
}

// Three slaves added in one command are bootstrapped one at a time: the
// master never serves two full copies at once.
TEST_F(PostgresqlE2eTest, SlavesAddedTogetherBootstrapOneAtATime) {
  PgServer& db1 = AddPgNode("db1");
  for (const char* id : {"db2", "db3", "db4"}) AddPgNode(id);
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 4; }, seconds(30)));
  cluster_.Wait({"db1", "db2", "db3", "db4"});
  ASSERT_TRUE(db1.Exec("CREATE TABLE t (id serial PRIMARY KEY, v text);"
                       "INSERT INTO t (v) SELECT 'row ' || g FROM generate_series(1, 100000) g")
                  .ok());

  CtlResult add = cluster_.Ctl({"slave", "add", "db2", "db3", "db4", "--master", "db1"});
  ASSERT_EQ(add.exit_code, 0) << add.out;
  cluster_.ExpectBootstrapsOneAtATime({"db2", "db3", "db4"});
  ASSERT_TRUE(db1.Exec("INSERT INTO t (v) VALUES ('last')").ok());
  for (const auto& pg : servers_) EXPECT_TRUE(HasRows(*pg, "t", 100001, seconds(5))) << pg->port();
}

// Fenced switchover with a writer hammering the old master the whole time:
// never two writable nodes (sampled every 50 ms), no acknowledged write lost.
TEST_F(PostgresqlE2eTest, PromoteIsAFencedSwitchover) {
  PgServer& db1 = AddPgNode("db1");
  PgServer& db2 = AddPgNode("db2");
  PgServer& db3 = AddPgNode("db3");
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 3; }, seconds(30)));
  cluster_.Wait({"db1", "db2", "db3"});
  ASSERT_TRUE(db1.Exec("CREATE TABLE w (id bigint PRIMARY KEY)").ok());
  ASSERT_EQ(cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"}).exit_code, 0);
  ASSERT_EQ(cluster_.Ctl({"slave", "add", "db3", "--master", "db1"}).exit_code, 0);
  cluster_.Wait({"db1", "db2", "db3"});

  std::atomic<bool> stop{false};
  std::vector<int64_t> acknowledged;
  std::thread writer([&] {
    for (int64_t id = 1; !stop.load(); ++id) {
      if (db1.Exec(absl::StrCat("INSERT INTO w VALUES (", id, ")")).ok()) acknowledged.push_back(id);
    }
  });
  std::atomic<int> max_writable{0};
  std::atomic<int> samples{0};
  std::thread sampler([&] {
    PollUntil(
        [&] {
          // The new master first: once it is writable it stays so, so a
          // writable old master seen after it is a real overlap.
          int writable = 0;
          for (const PgServer* pg : {&db2, &db1, &db3}) {
            absl::StatusOr<std::string> v = pg->Value(
                "SELECT (NOT pg_is_in_recovery() AND "
                "current_setting('default_transaction_read_only') = 'off')::text");
            writable += v.ok() && *v == "true";
          }
          max_writable = std::max(max_writable.load(), writable);
          ++samples;
          return stop.load();
        },
        std::chrono::minutes(10), milliseconds(50));
  });
  EXPECT_TRUE(PollUntil([&] { return samples.load() >= 5; }, seconds(30)));

  const size_t db1_aside = MovedAside(db1);
  const size_t db3_aside = MovedAside(db3);
  CtlResult promote = cluster_.Ctl({"promote", "db2"});
  EXPECT_EQ(promote.exit_code, 0) << promote.out;
  EXPECT_NE(promote.out.find("fenced"), std::string::npos) << promote.out;
  cluster_.Wait({"db1", "db2", "db3"}, "180s");
  stop = true;
  writer.join();
  sampler.join();

  EXPECT_LE(max_writable.load(), 1) << "two writable nodes at once";
  EXPECT_GT(samples.load(), 5);
  ASSERT_FALSE(acknowledged.empty());
  // Every acknowledged write is on the new master.
  absl::StatusOr<std::string> missing = db2.Value(absl::StrCat(
      "SELECT count(*) FROM unnest(ARRAY[", absl::StrJoin(acknowledged, ","),
      "]::bigint[]) AS a(id) WHERE NOT EXISTS (SELECT 1 FROM w WHERE w.id = a.id)"));
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(*missing, "0") << "acknowledged writes lost";
  // db2 is the writable master; db1 and db3 follow it.
  EXPECT_FALSE(InRecovery(db2));
  EXPECT_TRUE(InRecovery(db1));
  EXPECT_TRUE(InRecovery(db3));
  ASSERT_TRUE(db2.Exec("INSERT INTO w VALUES (-1)").ok());
  for (const PgServer* pg : {&db1, &db3}) {
    EXPECT_TRUE(PollUntil([&] { return *pg->Value("SELECT count(*) FROM w WHERE id = -1") == "1"; },
                          seconds(5)));
  }
  auto nodes = cluster_.Nodes();
  EXPECT_EQ(nodes["db2"]["desired"]["role"], "master");
  EXPECT_EQ(nodes["db1"]["upstream_id"], "db2");
  EXPECT_EQ(nodes["db3"]["upstream_id"], "db2");
  for (const char* id : {"db1", "db2", "db3"}) {
    EXPECT_EQ(cluster_.Env(id)["POSTGRESQL_PORT"], std::to_string(db2.port())) << id;
  }
  EXPECT_EQ(cluster_.Env("db2")["TANDEM_ROLE"], "master");
  EXPECT_EQ(cluster_.Env("db1")["TANDEM_ROLE"], "slave");
  // The old master and the other slave rejoined in place (pg_rewind), no
  // full copy: no data directory was moved aside.
  EXPECT_EQ(MovedAside(db1), db1_aside);
  EXPECT_EQ(MovedAside(db3), db3_aside);
}

// The master's host is gone: promote is refused without --force; with it
// the slave takes over at once, and when the old master comes back it is
// fenced and rebuilt from the new one (a full copy: its own data is kept
// aside), never writable on its own.
TEST_F(PostgresqlE2eTest, PromoteForceWhenTheMasterIsGone) {
  PgServer& db1 = AddPgNode("db1");
  PgServer& db2 = AddPgNode("db2");
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 2; }, seconds(30)));
  cluster_.Wait({"db1", "db2"});
  ASSERT_TRUE(db1.Exec("CREATE TABLE t (v text); INSERT INTO t VALUES ('before')").ok());
  ASSERT_EQ(cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"}).exit_code, 0);
  cluster_.Wait({"db1", "db2"});
  ASSERT_TRUE(HasRows(db2, "t", 1, seconds(10)));

  cluster_.KillAgent("db1");
  AsPostgres(db1, {db1.bin_dir() + "/pg_ctl", "-D", db1.data_dir(), "stop", "-m", "fast", "-w"});
  ASSERT_TRUE(PollUntil([&] { return !cluster_.Nodes()["db1"].value("agent_connected", true); },
                        seconds(30)));
  CtlResult refused = cluster_.Ctl({"promote", "db2"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.out.find("--force"), std::string::npos) << refused.out;
  CtlResult forced = cluster_.Ctl({"promote", "db2", "--force"});
  ASSERT_EQ(forced.exit_code, 0) << forced.out;
  cluster_.Wait({"db2"});
  EXPECT_FALSE(InRecovery(db2));
  EXPECT_TRUE(db2.Exec("INSERT INTO t VALUES ('on db2')").ok());
  EXPECT_EQ(cluster_.Env("db2")["TANDEM_ROLE"], "master");

  // The old master returns: fenced, rebuilt, following db2.
  const size_t aside = MovedAside(db1);
  std::atomic<bool> stop{false};
  std::atomic<int> writable_samples{0};
  std::thread sampler([&] {
    PollUntil(
        [&] {
          absl::StatusOr<std::string> v = db1.Value(
              "SELECT (NOT pg_is_in_recovery() AND "
              "current_setting('default_transaction_read_only') = 'off')::text");
          if (v.ok() && *v == "true") ++writable_samples;
          return stop.load();
        },
        std::chrono::minutes(5), milliseconds(50));
  });
  cluster_.StartAgent("db1");
  cluster_.Wait({"db1", "db2"}, "180s");
  stop = true;
  sampler.join();
  EXPECT_EQ(writable_samples.load(), 0) << "the old master was writable after it came back";
  EXPECT_TRUE(InRecovery(db1));
  EXPECT_EQ(MovedAside(db1), aside + 1) << "its own data is kept aside";
  EXPECT_TRUE(HasRows(db1, "t", 2, seconds(10)));
  EXPECT_EQ(cluster_.Nodes()["db1"]["upstream_id"], "db2");
  EXPECT_EQ(cluster_.Env("db1")["POSTGRESQL_PORT"], std::to_string(db2.port()));
}

// A slave in another stack replicates over its master's external address,
// with TLS (verify-full against the test CA), and each side's env file
// points at the master as reachable from its stack.
TEST_F(PostgresqlE2eTest, ReplicationBetweenStacksUsesExternalAddressesAndTls) {
  TempDir certs_dir("tcert");
  absl::StatusOr<TestCertificates> certs =
      MakeTestCertificates(certs_dir.path(), {"127.0.0.2", "127.0.0.3"}, PostgresOsUser());
  ASSERT_TRUE(certs.ok()) << certs.status();
  const std::vector<std::string> tls_server = {"-c", "ssl=on", "-c",
                                               "ssl_cert_file=" + certs->cert_file, "-c",
                                               "ssl_key_file=" + certs->key_file};
  const std::string tls_agent = absl::StrCat("  tls_mode: between-stacks\n  tls_ca_file: ",
                                             certs->ca_file, "\n");
  PgServer& db1 = AddPgNode("db1", "eu", "127.0.0.2", tls_agent, tls_server);
  PgServer& db2 = AddPgNode("db2", "us", "127.0.0.3", tls_agent, tls_server);
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 2; }, seconds(30)));
  cluster_.Wait({"db1", "db2"});
  ASSERT_TRUE(db1.Exec("CREATE TABLE t (v text); INSERT INTO t VALUES ('eu')").ok());
  CtlResult enable = cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"});
  ASSERT_EQ(enable.exit_code, 0) << enable.out;
  cluster_.Wait({"db1", "db2"});
  auto nodes = cluster_.Nodes();
  EXPECT_EQ(nodes["db2"]["observed"]["upstream"], absl::StrCat("127.0.0.2:", db1.port()));
  EXPECT_EQ(nodes["db2"]["desired"]["upstream"]["host"], "127.0.0.2");
  EXPECT_EQ(Count(db2, "t"), 1);
  ASSERT_TRUE(db1.Exec("INSERT INTO t VALUES ('after')").ok());
  EXPECT_TRUE(HasRows(db2, "t", 2, seconds(5)));
  // The replication connection is encrypted, and the slave checks the
  // master's certificate and name.
  absl::StatusOr<std::string> ssl = db1.Value(
      "SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE s.ssl");
  ASSERT_TRUE(ssl.ok()) << ssl.status();
  EXPECT_EQ(*ssl, "1");
  absl::StatusOr<std::string> conninfo = db2.Value("SHOW primary_conninfo");
  ASSERT_TRUE(conninfo.ok()) << conninfo.status();
  EXPECT_NE(conninfo->find("sslmode=verify-full"), std::string::npos) << *conninfo;
  // The slave's stack reaches the master by its external address; the
  // master's stack by its internal one.
  auto slave_env = cluster_.Env("db2");
  EXPECT_EQ(slave_env["POSTGRESQL_ADDRESS"], "127.0.0.2");
  EXPECT_EQ(slave_env["POSTGRESQL_ADDRESS_INT"], "127.0.0.1");
  EXPECT_EQ(slave_env["POSTGRESQL_ADDRESS_EXT"], "127.0.0.2");
  EXPECT_EQ(slave_env["POSTGRESQL_SLAVE_ADDRESSES"], absl::StrCat("127.0.0.1:", db2.port()));
  auto master_env = cluster_.Env("db1");
  EXPECT_EQ(master_env["POSTGRESQL_ADDRESS"], "127.0.0.1");
  EXPECT_EQ(master_env["POSTGRESQL_SLAVE_ADDRESSES"], absl::StrCat("127.0.0.3:", db2.port()));
  EXPECT_EQ(master_env["POSTGRESQL_SLAVE_ADDRESSES_EXT"], absl::StrCat("127.0.0.3:", db2.port()));
  // The master lets the slave in by its external address, over TLS only
  // and with a password.
  absl::StatusOr<std::string> hba = db1.Value(
      "SELECT count(*) FROM pg_hba_file_rules WHERE address = '127.0.0.3' "
      "AND 'replication' = ANY(database) AND type = 'hostssl' AND auth_method = 'scram-sha-256'");
  ASSERT_TRUE(hba.ok()) << hba.status();
  EXPECT_EQ(*hba, "1");
}

// A slave broken behind Tandem's back reports why it is out of sync, and
// with auto_resync the controller rebuilds it without an operator: first a
// timeline fork with a write of its own (the rewind refuses to discard it, a
// full copy keeps it aside), then WAL it needs removed on the master.
TEST_F(PostgresqlE2eTest, OutOfSyncSlavesAreResyncedAutomatically) {
  cluster_.KillController();
  cluster_.StartController("auto_resync_interval: 1\n");
  PgServer& db1 = AddPgNode("db1");
  PgServer& db2 = AddPgNode("db2");
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 2; }, seconds(30)));
  cluster_.Wait({"db1", "db2"});
  ASSERT_TRUE(db1.Exec("CREATE TABLE t (v text); INSERT INTO t VALUES ('first')").ok());
  // The group's policy (controller.yaml leaves it off by default).
  CtlResult enable = cluster_.Ctl(
      {"replication", "enable", "--master", "db1", "--slave", "db2", "--auto-resync", "on"});
  ASSERT_EQ(enable.exit_code, 0) << enable.out;
  cluster_.Wait({"db1", "db2"});
  EXPECT_NE(cluster_.Ctl({"status", "db2"}).out.find("on (group policy)"), std::string::npos);
  const std::string pg_ctl = db2.bin_dir() + "/pg_ctl";
  auto resynced_because = [&](const std::string& reason) {
    return PollUntil(
        [&] {
          for (const std::string& m : cluster_.EventMessages("db2")) {
            if (m.find("auto-resync db2: " + reason) != std::string::npos) return true;
          }
          return false;
        },
        seconds(60), milliseconds(200));
  };

  // 1. Promoted and written to behind Tandem's back, then a standby again.
  size_t aside = MovedAside(db2);
  cluster_.KillAgent("db2");
  AsPostgres(db2, {pg_ctl, "-D", db2.data_dir(), "promote", "-w"});
  ASSERT_TRUE(PollUntil([&] { return !InRecovery(db2); }, seconds(30)));
  ASSERT_TRUE(db2.Exec("INSERT INTO t VALUES ('forked')").ok());
  AsPostgres(db2, {pg_ctl, "-D", db2.data_dir(), "stop", "-m", "fast", "-w"});
  AsPostgres(db2, {"touch", db2.data_dir() + "/standby.signal"});
  cluster_.StartAgent("db2");
  EXPECT_TRUE(resynced_because("timeline fork"))
      << absl::StrJoin(cluster_.EventMessages("db2"), "\n");
  cluster_.Wait({"db1", "db2"}, "180s");
  ASSERT_TRUE(db1.Exec("INSERT INTO t VALUES ('second')").ok());
  EXPECT_TRUE(HasRows(db2, "t", 2, seconds(10)));
  EXPECT_EQ(Count(db2, "t WHERE v = 'forked'"), 0);
  EXPECT_EQ(MovedAside(db2), aside + 1) << "the forked data is kept aside";

  // 2. The master no longer has WAL the stopped slave needs.
  aside = MovedAside(db2);
  cluster_.KillAgent("db2");
  AsPostgres(db2, {pg_ctl, "-D", db2.data_dir(), "stop", "-m", "fast", "-w"});
  ASSERT_TRUE(db1.Exec("SELECT pg_drop_replication_slot('tandem_db2')").ok());
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(db1.Exec("INSERT INTO t SELECT 'filler' FROM generate_series(1, 20000);"
                         "SELECT pg_switch_wal(); CHECKPOINT")
                    .ok());
  }
  cluster_.StartAgent("db2");
  EXPECT_TRUE(resynced_because("WAL it needs was already removed"))
      << absl::StrJoin(cluster_.EventMessages("db2"), "\n");
  cluster_.Wait({"db1", "db2"}, "180s");
  ASSERT_TRUE(db1.Exec("INSERT INTO t VALUES ('third')").ok());
  EXPECT_TRUE(HasRows(db2, "t", 80003, seconds(10)));
  EXPECT_EQ(MovedAside(db2), aside + 1);
  auto nodes = cluster_.Nodes();
  EXPECT_EQ(nodes["db2"]["observed"]["out_of_sync"], "");
}


// ---------------------------------------------------------------- trust

// Who may do what, with the real binaries: every caller is known by its
// certificate, and a certificate opens only what its identity allows.
TEST_F(PostgresqlE2eTest, CertificatesDecideWhoMayDoWhat) {
  PgServer& db1 = AddPgNode("db1");
  AddPgNode("db2");
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 2; }, seconds(30)));
  cluster_.Wait({"db1", "db2"});

  // No client certificate: refused before anything is sent, with how to
  // make one; even `nodes`.
  TempDir empty("tdnocert");
  absl::StatusOr<RunResult> none = ::tandem::Run(
      {TANDEM_CTL_BIN, "--controller", cluster_.controller_address(), "--certs-dir", empty.path(),
       "nodes"},
      RunOptions{});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->exit_code, 1);
  EXPECT_NE(none->output.find("tandemctl cert create-client NAME --role admin|viewer"),
            std::string::npos)
      << none->output;
  // A plaintext client gets nothing either.
  absl::StatusOr<RunResult> plain = ::tandem::Run(
      {TANDEM_CTL_BIN, "--controller", cluster_.controller_address(), "--insecure", "nodes"},
      RunOptions{});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->exit_code, 1) << plain->output;

  // Another cluster's CA and admin: the handshake fails.
  TempDir other("tdother");
  for (std::vector<std::string> args :
       {std::vector<std::string>{"create-ca"}, {"create-client", "mallory", "--role", "admin"}}) {
    args.insert(args.begin(), {TANDEM_CTL_BIN, "cert"});
    args.insert(args.end(), {"--certs-dir", other.path()});
    ASSERT_EQ(::tandem::Run(args, RunOptions{})->exit_code, 0);
  }
  absl::StatusOr<RunResult> foreign = ::tandem::Run(
      {TANDEM_CTL_BIN, "--controller", cluster_.controller_address(), "--certs-dir", other.path(),
       "nodes"},
      RunOptions{});
  ASSERT_TRUE(foreign.ok());
  EXPECT_EQ(foreign->exit_code, 1);
  EXPECT_NE(foreign->output.find("TLS handshake failed"), std::string::npos) << foreign->output;

  // An expired certificate of this very CA: refused, saying when it expired.
  {
    TempDir old("tdold");
    absl::StatusOr<std::string> ca_key = ReadFile(cluster_.certs_dir() + "/ca.key");
    absl::StatusOr<std::string> ca_cert = ReadFile(cluster_.certs_dir() + "/ca.crt");
    ASSERT_TRUE(ca_key.ok() && ca_cert.ok());
    absl::StatusOr<KeyAndCert> expired =
        IssueCertificate({*ca_key, *ca_cert}, {Identity::Operator("old", OperatorRole::kAdmin), {}, 1},
                         absl::Now() - absl::Hours(72));
    ASSERT_TRUE(expired.ok()) << expired.status();
    ASSERT_TRUE(WriteFileAtomic(old.Sub("ca.crt"), *ca_cert, 0644).ok());
    ASSERT_TRUE(WriteFileAtomic(old.Sub("client.old.crt"), expired->cert_pem, 0644).ok());
    ASSERT_TRUE(WriteFileAtomic(old.Sub("client.old.key"), expired->key_pem, 0600).ok());
    absl::StatusOr<RunResult> r = ::tandem::Run(
        {TANDEM_CTL_BIN, "--controller", cluster_.controller_address(), "--certs-dir", old.path(),
         "nodes"},
        RunOptions{});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->exit_code, 1);
    EXPECT_NE(r->output.find("certificate has expired on"), std::string::npos) << r->output;
  }

  // A viewer reads, but cannot promote or change anything.
  cluster_.Cert({"create-client", "bob", "--role", "viewer"});
  EXPECT_EQ(cluster_.Ctl({"nodes"}, "bob").exit_code, 0);
  CtlResult enable = cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"},
                                  "bob");
  EXPECT_EQ(enable.exit_code, 1);
  EXPECT_NE(enable.out.find("operator bob (viewer) may not enable replication: it needs an admin "
                            "certificate"),
            std::string::npos)
      << enable.out;
  ASSERT_EQ(cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"}).exit_code,
            0);
  cluster_.Wait({"db1", "db2"});
  CtlResult promote = cluster_.Ctl({"promote", "db2"}, "bob");
  EXPECT_EQ(promote.exit_code, 1);
  EXPECT_NE(promote.out.find("operator bob (viewer) may not promote"), std::string::npos)
      << promote.out;
  EXPECT_EQ(cluster_.Nodes()["db2"]["desired"]["role"], "slave") << "nothing changed";

  // db2's certificate cannot act as db1: neither Report nor Watch/Register.
  {
    absl::StatusOr<std::shared_ptr<TlsCredentials>> db2 = TlsCredentials::Load(
        {cluster_.certs_dir() + "/ca.crt", cluster_.certs_dir() + "/node.db2.crt",
         cluster_.certs_dir() + "/node.db2.key"},
        IdentityKind::kNode, "db2");
    ASSERT_TRUE(db2.ok()) << db2.status();
    auto stub = v1::Agents::NewStub(grpc::CreateChannel(
        cluster_.controller_address(), (*db2)->Channel(Identity::Controller(""))));
    v1::ReportRequest report;
    report.mutable_node()->set_id("db1");
    report.mutable_node()->set_stack("main");
    report.mutable_node()->set_engine(v1::ENGINE_TYPE_POSTGRESQL);
    report.mutable_node()->set_address_internal("127.0.0.1");
    report.mutable_node()->set_port(1);
    report.mutable_observed()->set_writable(false);
    report.mutable_observed()->set_position("0/FFFFFFF");
    v1::ReportResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + seconds(10));
    grpc::Status st = stub->Report(&context, report, &response);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
    EXPECT_NE(st.error_message().find("node db2 may not report as node db1"), std::string::npos)
        << st.error_message();
    grpc::ClientContext watch_context;
    watch_context.set_deadline(std::chrono::system_clock::now() + seconds(10));
    v1::WatchRequest watch;
    *watch.mutable_node() = report.node();
    auto reader = stub->Watch(&watch_context, watch);
    v1::DesiredState desired;
    EXPECT_FALSE(reader->Read(&desired));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(cluster_.Nodes()["db1"]["port"], db1.port())
        << "db1's registration is untouched";
  }

  // An agent given another node's certificate, or an address its own does
  // not name, or insecure mode beyond loopback, refuses to start.
  const std::string base = *ReadFile(cluster_.node("db1").config_path);
  struct Refusal {
    std::string extra;
    std::string message;
  };
  for (const Refusal& r : std::vector<Refusal>{
           {absl::StrCat("tls_cert_file: ", cluster_.certs_dir(), "/node.db2.crt\ntls_key_file: ",
                         cluster_.certs_dir(), "/node.db2.key\n"),
            "it names node db2, not node db1"},
           {"insecure: true\ntransfer_listen: 0.0.0.0:7999\n",
            "insecure is allowed only when every address this process listens on is loopback, "
            "and transfer_listen is 0.0.0.0:7999"}}) {
    const std::string path = cluster_.dir().Sub("refused.yaml");
    ASSERT_TRUE(WriteFileAtomic(path, base + r.extra, 0600).ok());
    absl::StatusOr<RunResult> agent = ::tandem::Run({TANDEM_AGENT_BIN, "--config", path},
                                                    RunOptions{});
    ASSERT_TRUE(agent.ok());
    EXPECT_EQ(agent->exit_code, 2) << agent->output;
    EXPECT_NE(agent->output.find(r.message), std::string::npos) << agent->output;
  }
  {
    std::string moved = absl::StrReplaceAll(base, {{"internal: 127.0.0.1", "internal: 127.0.0.9"}});
    ASSERT_NE(moved, base);
    const std::string path = cluster_.dir().Sub("moved.yaml");
    ASSERT_TRUE(WriteFileAtomic(path, moved, 0600).ok());
    absl::StatusOr<RunResult> agent = ::tandem::Run({TANDEM_AGENT_BIN, "--config", path},
                                                    RunOptions{});
    ASSERT_TRUE(agent.ok());
    EXPECT_EQ(agent->exit_code, 2) << agent->output;
    EXPECT_NE(agent->output.find("not addresses.internal 127.0.0.9"), std::string::npos)
        << agent->output;
  }
}

// No secret anywhere it could leak: the replication password and the key
// material of every certificate are never in a log, an event, an answer of
// tandemctl, or the command line of a tool Tandem starts (sampled from
// /proc while a slave is copied, promoted and rebuilt).
TEST_F(PostgresqlE2eTest, NoSecretInLogsEventsOrArgv) {
  AddPgNode("db1");
  AddPgNode("db2");
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 2; }, seconds(30)));
  cluster_.Wait({"db1", "db2"});
  std::vector<std::string> secrets = {"repl-secret-4711", "PRIVATE KEY"};
  for (const char* key : {"ca.key", "controller.key", "client.admin.key", "node.db1.key",
                          "node.db2.key"}) {
    std::vector<std::string> lines =
        absl::StrSplit(*ReadFile(cluster_.certs_dir() + "/" + key), '\n');
    ASSERT_GT(lines.size(), 2u);
    secrets.push_back(lines[1].substr(0, 40));
  }

  std::atomic<bool> stop{false};
  std::atomic<int> samples{0};
  std::set<std::string> tools_seen;
  std::vector<std::string> leaks;
  std::thread sampler([&] {
    PollUntil(
        [&] {
          for (const std::string& cmdline : Glob("/proc/[0-9]*/cmdline")) {
            absl::StatusOr<std::string> argv = ReadFile(cmdline);
            if (!argv.ok() || argv->empty()) continue;
            for (const char* tool : {"pg_basebackup", "pg_rewind", "psql", "pg_ctl"}) {
              if (argv->find(tool) != std::string::npos) tools_seen.insert(tool);
            }
            for (const std::string& secret : secrets) {
              if (argv->find(secret) != std::string::npos) leaks.push_back(*argv);
            }
          }
          ++samples;
          return stop.load();
        },
        std::chrono::minutes(10), milliseconds(20));
  });
  ASSERT_EQ(cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"}).exit_code,
            0);
  cluster_.Wait({"db1", "db2"});
  ASSERT_EQ(cluster_.Ctl({"promote", "db2"}).exit_code, 0);
  cluster_.Wait({"db1", "db2"});
  ASSERT_EQ(cluster_.Ctl({"resync", "db1"}).exit_code, 0);
  cluster_.Wait({"db1", "db2"});
  stop = true;
  sampler.join();
  EXPECT_GT(samples.load(), 20);
  EXPECT_TRUE(tools_seen.count("pg_basebackup") || tools_seen.count("pg_rewind"))
      << "the sampler saw the tools run";
  EXPECT_TRUE(leaks.empty()) << leaks.front();

  auto expect_none = [&](const std::string& text, const std::string& where) {
    for (const std::string& secret : secrets) {
      EXPECT_EQ(text.find(secret), std::string::npos) << where << " holds " << secret;
    }
  };
  expect_none(cluster_.Ctl({"events", "-o", "json"}).out, "events");
  expect_none(cluster_.Ctl({"nodes", "-o", "json"}).out, "nodes");
  expect_none(cluster_.Ctl({"status", "db1", "-o", "json"}).out, "status");
  expect_none(*ReadFile(cluster_.dir().Sub("controller.log")), "controller log");
  for (const char* id : {"db1", "db2"}) {
    expect_none(*ReadFile(cluster_.dir().Sub(std::string(id) + "-agent.log")), "agent log");
  }
}

}  // namespace
}  // namespace tandem::testing

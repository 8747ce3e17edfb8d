// The MySQL/MariaDB user story, end to end: real tandem-controller, one real
// tandem-agent per node, real MariaDB 10.11 servers (started by the agents'
// engine), driven by tandemctl. A slave is seeded with a mariadb-backup
// stream that its agent fetches from the master's agent (transfer_listen).
#include <dirent.h>
#include <glob.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "engines/mysql/mysql_engine.h"
#include "gtest/gtest.h"
#include "tests/e2e/cluster.h"
#include "tests/harness/mysql_server.h"
#include "agent/transfer_client.h"
#include "security/tls.h"

namespace tandem::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int64_t kRows = 300000;
constexpr char kAppPassword[] = "app-secret";

std::vector<std::string> Glob(const std::string& pattern) {
  glob_t g{};
  std::vector<std::string> out;
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  return out;
}

// Live processes named `comm` whose command line mentions `needle` (our
// temp dirs): the tools an agent ran for this test.
int ToolsMentioning(const std::string& comm, const std::string& needle) {
  int count = 0;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return 0;
  while (dirent* entry = ::readdir(proc)) {
    const std::string pid = entry->d_name;
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream comm_file("/proc/" + pid + "/comm");
    std::string name;
    std::getline(comm_file, name);
    if (name != comm) continue;
    std::ifstream cmdline("/proc/" + pid + "/cmdline");
    std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
    if (absl::StrContains(args, needle) && ProcessAlive(std::stoi(pid))) ++count;
  }
  ::closedir(proc);
  return count;
}

struct NodeOptions {
  std::string stack = "main";
  // The node's external address ("": none). Its server and its agent's
  // transfer service listen there too.
  std::string external;
  std::vector<std::string> server_args;  // more mariadbd arguments
  std::string engine_yaml;               // more engine: fields, indented
};

class MysqlE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    password_file_ = cluster_.dir().Sub("replication.password");
    ASSERT_TRUE(WriteFileAtomic(password_file_, "repl-secret-4711\n", 0600).ok());
    cluster_.StartController();
  }

  // A MariaDB node: the harness copies a data directory and picks a port;
  // the node's agent starts mariadbd itself (read-only, as the engine's
  // default start always does) with the harness's arguments, its own
  // server id among them, and serves transfers on a port of its own.
  MysqlServer& AddMysqlNode(const std::string& id, uint32_t server_id,
                            const NodeOptions& node = NodeOptions()) {
    MysqlServerOptions options;
    options.name = id;
    options.server_id = server_id;
    options.start = false;
    options.extra_args = node.server_args;
    if (!node.external.empty()) {
      options.extra_args.push_back("--bind-address=127.0.0.1," + node.external);
    }
    absl::StatusOr<std::unique_ptr<MysqlServer>> created = MysqlServer::Create(options);
    EXPECT_TRUE(created.ok()) << created.status();
    MysqlServer& server = *servers_.emplace_back(*std::move(created));
    std::vector<std::string> quoted;
    for (const std::string& arg : server.server_args()) quoted.push_back(absl::StrCat("\"", arg, "\""));
    const std::string addresses =
        node.external.empty() ? "{internal: 127.0.0.1}"
                              : absl::StrCat("{internal: 127.0.0.1, external: ", node.external, "}");
    // Slaves fetch their copy from the address their stack reaches the
    // master's agent at.
    const std::string transfer_host = node.external.empty() ? "127.0.0.1" : node.external;
    cluster_.AddNode(id, node.stack,
                     absl::StrCat("addresses: ", addresses, "\n"
                                  "transfer_listen: ", transfer_host, ":", FreePort(), "\n",
                                  "engine:\n"
                                  "  type: mysql\n"
                                  "  port: ", server.port(), "\n",
                                  "  data_dir: ", server.data_dir(), "\n",
                                  "  user: root\n"
                                  "  os_user: ", server.os_user(), "\n",
                                  "  server_args: [", absl::StrJoin(quoted, ", "), "]\n",
                                  "  replication_password_file: ", password_file_, "\n",
                                  "  timeout: 60\n", node.engine_yaml));
    return server;
  }

  void TearDown() override {
    if (!HasFailure()) return;
    for (const auto& server : servers_) {
      std::cerr << "--- MariaDB log " << server->log_file() << ":\n"
                << FileTail(server->log_file(), 3000);
    }
  }

  // A table app.t, an application account `app` (no admin privilege:
  // read_only binds it) and `rows` rows, written on `master`.
  static void CreateApp(const MysqlServer& master, int64_t rows) {
    ASSERT_TRUE(master.Exec("CREATE DATABASE app").ok());
    ASSERT_TRUE(master.Exec("CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, "
                            "v VARCHAR(120)) ENGINE=InnoDB")
                    .ok());
    ASSERT_TRUE(master.Exec(absl::StrCat("INSERT INTO app.t (v) SELECT CONCAT('row ', seq) "
                                         "FROM app.seq_1_to_", rows))
                    .ok());
    ASSERT_TRUE(master.Exec(absl::StrCat("CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '",
                                         kAppPassword, "'"))
                    .ok());
    ASSERT_TRUE(master.Exec("GRANT SELECT, INSERT ON app.* TO 'app'@'127.0.0.1'").ok());
  }

  static std::string ReadOnly(const MysqlServer& s) {
    absl::StatusOr<std::string> v = s.Value("SELECT @@global.read_only");
    return v.ok() ? *v : "down";
  }

  static int64_t Count(const MysqlServer& s, const std::string& table) {
    absl::StatusOr<std::string> v = s.Value("SELECT COUNT(*) FROM " + table);
    return v.ok() ? std::stoll(*v) : -1;
  }

  static bool HasRows(const MysqlServer& s, const std::string& table, int64_t rows,
                      milliseconds within) {
    return PollUntil([&] { return Count(s, table) == rows; }, within, milliseconds(10));
  }

  static bool IsSlave(const MysqlServer& s) {
    absl::StatusOr<MysqlResult> r = s.Query("SHOW SLAVE STATUS");
    return r.ok() && !r->rows.empty() && r->Get(0, "Slave_IO_Running") == "Yes" &&
           r->Get(0, "Slave_SQL_Running") == "Yes";
  }

  static bool Writable(const MysqlServer& s) {
    return s.ExecAs("app", kAppPassword, "INSERT INTO app.t (v) VALUES ('probe')").ok();
  }

  // Destroyed in reverse order: the agents stop before the servers and
  // their directories go (an agent still running would start its server
  // again on a directory being removed).
  std::vector<std::unique_ptr<MysqlServer>> servers_;
  Cluster cluster_;
  std::string password_file_;
};

TEST_F(MysqlE2eTest, UserStory) {
  MysqlServer& db1 = AddMysqlNode("db1", 1);
  MysqlServer& db2 = AddMysqlNode("db2", 2);
  MysqlServer& db3 = AddMysqlNode("db3", 3);
  const std::string p1 = std::to_string(db1.port());

  // 1. Every node registers, its server starts, and it converges as a
  // writable standalone.
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 3; }, seconds(30)));
  cluster_.Wait({"db1", "db2", "db3"});
  for (const auto& [id, n] : cluster_.Nodes()) {
    EXPECT_EQ(n["observed"]["role"], "standalone") << id;
    EXPECT_TRUE(n["converged"].get<bool>()) << id;
  }
  ASSERT_TRUE(db1.Exec("CREATE DATABASE app").ok());
  ASSERT_TRUE(db1.Exec("CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(120)) "
                       "ENGINE=InnoDB")
                  .ok());
  ASSERT_TRUE(db1.Exec(absl::StrCat("INSERT INTO app.t (v) SELECT CONCAT('row ', seq, ' ', "
                                    "REPEAT('x', 80)) FROM app.seq_1_to_",
                                    kRows))
                  .ok());
  ASSERT_TRUE(db1.Exec(absl::StrCat("CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '", kAppPassword, "'"))
                  .ok());
  ASSERT_TRUE(db1.Exec("GRANT SELECT, INSERT ON app.* TO 'app'@'127.0.0.1'").ok());
  ASSERT_TRUE(db2.Exec("CREATE DATABASE own_db2").ok());

  // 2. Enable replication db1 -> db2: db2 is seeded from db1's stream.
  CtlResult enable = cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"});
  ASSERT_EQ(enable.exit_code, 0) << enable.out;
  cluster_.Wait({"db1", "db2"});
  EXPECT_TRUE(IsSlave(db2));
  EXPECT_EQ(Count(db2, "app.t"), kRows);
  std::vector<std::string> aside = Glob(db2.data_dir() + kMysqlOldDirInfix + "*");
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_TRUE(PathExists(aside[0] + "/own_db2")) << "db2's old data moved aside, not deleted";
  // A row written on db1 is readable on db2 within a second.
  ASSERT_TRUE(db1.Exec("INSERT INTO app.t (v) VALUES ('after enable')").ok());
  EXPECT_TRUE(HasRows(db2, "app.t", kRows + 1, seconds(1)));
  // db2 refuses writes from application users.
  absl::Status write = db2.ExecAs("app", kAppPassword, "INSERT INTO app.t (v) VALUES ('slave')");
  EXPECT_FALSE(write.ok());
  EXPECT_TRUE(absl::StrContains(write.message(), "read-only")) << write;
  EXPECT_EQ(*db2.Value("SELECT @@global.read_only"), "1");

  // 3. Env files.
  for (const char* id : {"db1", "db2"}) {
    auto env = cluster_.Env(id);
    EXPECT_EQ(env["MYSQL_ADDRESS"], "127.0.0.1") << id;
    EXPECT_EQ(env["MYSQL_ADDRESS_INT"], "127.0.0.1") << id;
    EXPECT_TRUE(env.count("MYSQL_ADDRESS_EXT")) << id;
    EXPECT_EQ(env["MYSQL_PORT"], p1) << id;
    EXPECT_EQ(env["MYSQL_SLAVE_ADDRESSES"], absl::StrCat("127.0.0.1:", db2.port())) << id;
  }
  EXPECT_EQ(cluster_.Env("db1")["TANDEM_ROLE"], "master");
  EXPECT_EQ(cluster_.Env("db2")["TANDEM_ROLE"], "slave");
  {
    auto nodes = cluster_.Nodes();
    EXPECT_EQ(nodes["db2"]["observed"]["role"], "slave");
    EXPECT_TRUE(nodes["db2"]["observed"]["streaming"].get<bool>());
    EXPECT_EQ(nodes["db2"]["upstream_id"], "db1");
    EXPECT_EQ(nodes["db1"]["observed"]["role"], "master");
    CtlResult status = cluster_.Ctl({"status", "db2"});
    EXPECT_EQ(status.exit_code, 0);
    EXPECT_NE(status.out.find("slave"), std::string::npos) << status.out;
  }

  // 4. Add db3; kill -9 its agent while the backup streams into it (once
  // its side directory holds part of the copy).
  CtlResult add = cluster_.Ctl({"slave", "add", "db3", "--master", "db1"});
  ASSERT_EQ(add.exit_code, 0) << add.out;
  const std::string side_dir = db3.data_dir() + kMysqlSideDirSuffix;
  const bool caught = PollUntil([&] { return DirectorySize(side_dir) > 20'000'000; }, seconds(60),
                                milliseconds(2));
  cluster_.KillAgent("db3");
  EXPECT_TRUE(caught) << "the seed's side directory never held part of the copy";
  EXPECT_FALSE(PathExists(side_dir + "/" + kMysqlSeedMarkerFile)) << "killed before the copy ended";
  // The tools of the cut transfer die on both sides: mbstream with db3's
  // agent, mariadb-backup when db1's agent sees the stream end.
  EXPECT_TRUE(PollUntil([&] { return ToolsMentioning("mbstream", db3.dir()) == 0; }, seconds(10)));
  EXPECT_TRUE(PollUntil([&] { return ToolsMentioning("mariadb-backup", db1.dir()) == 0; },
                        seconds(30)));
  EXPECT_TRUE(PollUntil([&] { return Glob(db1.dir() + "/.tandem-*.backup-*").empty(); }, seconds(30)))
      << "db1's agent removed the work dir of the cut transfer";
  cluster_.StartAgent("db3");
  cluster_.Wait({"db1", "db3"});
  EXPECT_TRUE(IsSlave(db3));
  EXPECT_EQ(Count(db3, "app.t"), kRows + 1);
  EXPECT_FALSE(PathExists(side_dir));
  EXPECT_EQ(Glob(db3.data_dir() + kMysqlOldDirInfix + "*").size(), 1u) << "db3's data kept once";
  EXPECT_EQ(Count(db1, "app.t"), kRows + 1) << "nothing lost on the master";
  ASSERT_TRUE(db1.Exec("INSERT INTO app.t (v) VALUES ('after add')").ok());
  EXPECT_TRUE(HasRows(db3, "app.t", kRows + 2, seconds(5)));
  EXPECT_TRUE(HasRows(db2, "app.t", kRows + 2, seconds(5)));
  EXPECT_EQ(cluster_.Env("db1")["MYSQL_SLAVE_ADDRESSES"],
            absl::StrCat("127.0.0.1:", db2.port(), ",127.0.0.1:", db3.port()));

  // 5. Remove db3: standalone and writable again, with the data it had.
  CtlResult remove = cluster_.Ctl({"slave", "remove", "db3"});
  ASSERT_EQ(remove.exit_code, 0) << remove.out;
  cluster_.Wait({"db1", "db3"});
  EXPECT_FALSE(IsSlave(db3));
  EXPECT_TRUE(Writable(db3));
  EXPECT_EQ(Count(db3, "app.t"), kRows + 3);
  EXPECT_EQ(cluster_.Env("db3")["TANDEM_ROLE"], "standalone");
  EXPECT_EQ(cluster_.Env("db3")["MYSQL_PORT"], std::to_string(db3.port()));
  EXPECT_EQ(cluster_.Env("db1")["MYSQL_SLAVE_ADDRESSES"], absl::StrCat("127.0.0.1:", db2.port()));
  EXPECT_TRUE(IsSlave(db2)) << "db2 still streams";

  // 6. Disable replication: every member standalone and writable, data kept,
  // no replication account left on db1.
  CtlResult disable = cluster_.Ctl({"replication", "disable", "--master", "db1"});
  ASSERT_EQ(disable.exit_code, 0) << disable.out;
  cluster_.Wait({"db1", "db2"});
  EXPECT_FALSE(IsSlave(db2));
  EXPECT_EQ(Count(db2, "app.t"), kRows + 2);
  EXPECT_TRUE(Writable(db2));
  EXPECT_TRUE(Writable(db1));
  EXPECT_EQ(Count(db1, "app.t"), kRows + 3) << "nothing lost on the master";
  EXPECT_EQ(*db1.Value("SELECT COUNT(*) FROM mysql.user WHERE User = 'tandem_repl'"), "0");
  for (const char* id : {"db1", "db2"}) {
    auto env = cluster_.Env(id);
    EXPECT_EQ(env["TANDEM_ROLE"], "standalone") << id;
    EXPECT_EQ(env["MYSQL_SLAVE_ADDRESSES"], "") << id;
  }
  for (const auto& [id, n] : cluster_.Nodes()) {
    EXPECT_EQ(n["observed"]["role"], "standalone") << id;
  }
}

// Three slaves added in one command are bootstrapped one at a time: the
// master never streams two copies at once.
TEST_F(MysqlE2eTest, SlavesAddedTogetherBootstrapOneAtATime) {
  MysqlServer& db1 = AddMysqlNode("db1", 1);
  for (uint32_t i = 2; i <= 4; ++i) AddMysqlNode(absl::StrCat("db", i), i);
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 4; }, seconds(30)));
  cluster_.Wait({"db1", "db2", "db3", "db4"});
  CreateApp(db1, 20000);

  CtlResult add = cluster_.Ctl({"slave", "add", "db2", "db3", "db4", "--master", "db1"});
  ASSERT_EQ(add.exit_code, 0) << add.out;
  cluster_.ExpectBootstrapsOneAtATime({"db2", "db3", "db4"});
  ASSERT_TRUE(db1.Exec("INSERT INTO app.t (v) VALUES ('last')").ok());
  for (const auto& server : servers_) {
    EXPECT_TRUE(HasRows(*server, "app.t", 20001, seconds(10))) << server->data_dir();
    if (server.get() != &db1) {
      EXPECT_TRUE(IsSlave(*server)) << server->data_dir();
    }
  }
  EXPECT_EQ(cluster_.Env("db1")["MYSQL_SLAVE_ADDRESSES"],
            absl::StrCat("127.0.0.1:", servers_[1]->port(), ",127.0.0.1:", servers_[2]->port(),
                         ",127.0.0.1:", servers_[3]->port()));
}

// Fenced switchover with an application writing to the master the whole
// time (it reconnects to whatever its env file names, as applications do):
// never two writable nodes (sampled every 50 ms), no acknowledged write
// lost, the old master and the other slave follow the new one by GTID
// (no copy), and the env files switch once the new master is writable.
TEST_F(MysqlE2eTest, PromoteIsAFencedSwitchover) {
  MysqlServer& db1 = AddMysqlNode("db1", 1);
  MysqlServer& db2 = AddMysqlNode("db2", 2);
  MysqlServer& db3 = AddMysqlNode("db3", 3);
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 3; }, seconds(30)));
  cluster_.Wait({"db1", "db2", "db3"});
  CreateApp(db1, 1000);
  ASSERT_TRUE(db1.Exec("CREATE TABLE app.w (id BIGINT PRIMARY KEY) ENGINE=InnoDB").ok());
  ASSERT_EQ(cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"}).exit_code, 0);
  ASSERT_EQ(cluster_.Ctl({"slave", "add", "db3", "--master", "db1"}).exit_code, 0);
  cluster_.Wait({"db1", "db2", "db3"});
  const std::vector<const MysqlServer*> all = {&db1, &db2, &db3};
  std::map<std::string, const MysqlServer*> by_port;
  for (const MysqlServer* s : all) by_port[std::to_string(s->port())] = s;

  // The application beside db1: connects to the master its env file names.
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<int64_t> acknowledged;
  std::vector<std::chrono::steady_clock::time_point> acknowledged_at;
  std::vector<std::string> env_too_early;  // env pointed at a read-only node
  std::set<std::string> used_ports;
  std::thread writer([&] {
    std::unique_ptr<MysqlClient> conn;
    std::string port;
    for (int64_t id = 1; !stop.load(); ++id) {
      if (conn == nullptr) {
        std::map<std::string, std::string> env = cluster_.Env("db1");
        if (env["MYSQL_PORT"] != port) {
          port = env["MYSQL_PORT"];
          auto it = by_port.find(port);
          if (it != by_port.end() && ReadOnly(*it->second) != "0") {
            std::lock_guard<std::mutex> lock(mu);
            env_too_early.push_back(port);
          }
        }
        MysqlLogin login;
        login.host = env["MYSQL_ADDRESS"];
        uint32_t p = 0;
        login.port = absl::SimpleAtoi(port, &p) ? p : 0;
        login.user = "app";
        login.password = kAppPassword;
        absl::StatusOr<std::unique_ptr<MysqlClient>> c = MysqlClient::Connect(login, seconds(5));
        if (c.ok()) conn = *std::move(c);
      }
      if (conn != nullptr &&
          conn->Exec("writing", absl::StrCat("INSERT INTO app.w VALUES (", id, ")")).ok()) {
        std::lock_guard<std::mutex> lock(mu);
        acknowledged.push_back(id);
        acknowledged_at.push_back(std::chrono::steady_clock::now());
        used_ports.insert(port);
        continue;
      }
      // Refused (read-only), ended by the fence, or not reachable: the
      // application reconnects after a short pause (cut short by the end of
      // the test), reading its env again.
      conn.reset();
      PollUntil([&] { return stop.load(); }, milliseconds(20), milliseconds(5));
    }
  });
  std::atomic<int> max_writable{0};
  std::atomic<int> samples{0};
  std::thread sampler([&] {
    PollUntil(
        [&] {
          int writable = 0;
          for (const MysqlServer* s : all) writable += ReadOnly(*s) == "0";
          max_writable = std::max(max_writable.load(), writable);
          ++samples;
          return stop.load();
        },
        std::chrono::minutes(10), milliseconds(50));
  });
  EXPECT_TRUE(PollUntil(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return acknowledged.size() >= 50 && samples.load() >= 5;
      },
      seconds(30)));

  CtlResult promote = cluster_.Ctl({"promote", "db2"});
  EXPECT_EQ(promote.exit_code, 0) << promote.out;
  EXPECT_NE(promote.out.find("fenced"), std::string::npos) << promote.out;
  cluster_.Wait({"db1", "db2", "db3"}, "180s");
  // The application writes to the new master.
  const std::string p2 = std::to_string(db2.port());
  EXPECT_TRUE(PollUntil(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return used_ports.count(p2) != 0;
      },
      seconds(30)));
  size_t before_stop = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    before_stop = acknowledged.size();
  }
  EXPECT_TRUE(PollUntil(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return acknowledged.size() >= before_stop + 20;
      },
      seconds(30)));
  stop = true;
  writer.join();
  sampler.join();

  EXPECT_LE(max_writable.load(), 1) << "two writable nodes at once";
  EXPECT_GT(samples.load(), 5);
  std::chrono::steady_clock::duration longest_gap{};
  for (size_t i = 1; i < acknowledged_at.size(); ++i) {
    longest_gap = std::max(longest_gap, acknowledged_at[i] - acknowledged_at[i - 1]);
  }
  std::cout << "switchover: " << acknowledged.size() << " writes acknowledged, " << samples.load()
            << " samples, longest write pause "
            << std::chrono::duration_cast<milliseconds>(longest_gap).count() << " ms\n";
  EXPECT_TRUE(env_too_early.empty()) << "an env file named a read-only node as the master";
  EXPECT_EQ(used_ports, (std::set<std::string>{std::to_string(db1.port()), p2}));
  // Every acknowledged write is on the new master, and on its slaves.
  ASSERT_FALSE(acknowledged.empty());
  absl::StatusOr<MysqlResult> rows = db2.Query("SELECT id FROM app.w");
  ASSERT_TRUE(rows.ok()) << rows.status();
  std::set<int64_t> present;
  for (size_t i = 0; i < rows->rows.size(); ++i) present.insert(std::stoll(rows->Get(i, "id")));
  int64_t lost = 0;
  for (int64_t id : acknowledged) lost += present.count(id) == 0;
  EXPECT_EQ(lost, 0) << "acknowledged writes lost (of " << acknowledged.size() << ")";
  const int64_t total = static_cast<int64_t>(present.size());
  EXPECT_TRUE(HasRows(db1, "app.w", total, seconds(10)));
  EXPECT_TRUE(HasRows(db3, "app.w", total, seconds(10)));

  // db2 is the writable master; db1 and db3 follow it, by GTID: no copy was
  // made (no data directory moved aside beyond db3's first seed).
  EXPECT_EQ(ReadOnly(db2), "0");
  EXPECT_TRUE(IsSlave(db1));
  EXPECT_TRUE(IsSlave(db3));
  for (const MysqlServer* s : {&db1, &db3}) {
    absl::StatusOr<MysqlResult> rs = s->Query("SHOW SLAVE STATUS");
    ASSERT_TRUE(rs.ok() && !rs->rows.empty());
    EXPECT_EQ(rs->Get(0, "Master_Port"), p2);
  }
  EXPECT_TRUE(Glob(db1.data_dir() + kMysqlOldDirInfix + "*").empty()) << "db1 was copied";
  EXPECT_EQ(Glob(db3.data_dir() + kMysqlOldDirInfix + "*").size(), 1u) << "db3 was copied again";
  ASSERT_TRUE(db2.Exec("INSERT INTO app.w VALUES (-1)").ok());
  EXPECT_TRUE(HasRows(db1, "app.w", total + 1, seconds(10)));
  EXPECT_TRUE(HasRows(db3, "app.w", total + 1, seconds(10)));
  auto nodes = cluster_.Nodes();
  EXPECT_EQ(nodes["db2"]["desired"]["role"], "master");
  EXPECT_EQ(nodes["db1"]["upstream_id"], "db2");
  EXPECT_EQ(nodes["db3"]["upstream_id"], "db2");
  for (const char* id : {"db1", "db2", "db3"}) {
    EXPECT_EQ(cluster_.Env(id)["MYSQL_PORT"], p2) << id;
    EXPECT_EQ(nodes[id]["observed"]["out_of_sync"], "") << id;
  }
  EXPECT_EQ(cluster_.Env("db2")["TANDEM_ROLE"], "master");
  EXPECT_EQ(cluster_.Env("db1")["TANDEM_ROLE"], "slave");
  EXPECT_EQ(cluster_.Env("db1")["MYSQL_SLAVE_ADDRESSES"],
            absl::StrCat("127.0.0.1:", db1.port(), ",127.0.0.1:", db3.port()));
}

// A write on the slave breaks its replication: the agent reports the slave
// out of sync with the reason, and with auto_resync the controller has it
// rebuilt (the cheap rejoin refuses the errant transaction, so a full copy
// is made and the diverged data moved aside).
TEST_F(MysqlE2eTest, OutOfSyncSlaveIsReportedAndRebuiltAutomatically) {
  MysqlServer& db1 = AddMysqlNode("db1", 1);
  MysqlServer& db2 = AddMysqlNode("db2", 2);
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 2; }, seconds(30)));
  cluster_.Wait({"db1", "db2"});
  CreateApp(db1, 1000);
  ASSERT_EQ(cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"}).exit_code, 0);
  cluster_.Wait({"db1", "db2"});
  ASSERT_EQ(Glob(db2.data_dir() + kMysqlOldDirInfix + "*").size(), 1u);

  // An errant transaction on db2 (root is not bound by read_only), then the
  // same key on db1: db2's replication stops.
  ASSERT_TRUE(db2.Exec("INSERT INTO app.t (id, v) VALUES (5000, 'written on the slave')").ok());
  ASSERT_TRUE(db1.Exec("INSERT INTO app.t (id, v) VALUES (5000, 'written on the master')").ok());
  CtlResult status;
  EXPECT_TRUE(PollUntil(
      [&] {
        status = cluster_.Ctl({"status", "db2"});
        return absl::StrContains(status.out, "out of sync");
      },
      seconds(60)))
      << status.out;
  EXPECT_TRUE(absl::StrContains(status.out, "errant GTIDs 0-2-")) << status.out;
  EXPECT_TRUE(absl::StrContains(status.out, "SQL error")) << status.out;
  EXPECT_FALSE(cluster_.Nodes()["db2"]["observed"]["streaming"].get<bool>());

  // With auto_resync the controller has db2 rebuilt.
  cluster_.KillController();
  cluster_.StartController("auto_resync: true\n");
  EXPECT_TRUE(PollUntil(
      [&] {
        auto nodes = cluster_.Nodes();
        return nodes["db2"]["converged"] == true && nodes["db2"]["observed"]["out_of_sync"] == "" &&
               nodes["db2"]["observed"]["streaming"] == true;
      },
      seconds(180), milliseconds(500)))
      << cluster_.Ctl({"nodes"}).out;
  cluster_.Wait({"db1", "db2"});
  bool auto_resynced = false;
  for (const nlohmann::json& e : cluster_.Events()) {
    auto_resynced |= absl::StrContains(e.value("message", ""), "auto-resync db2");
  }
  EXPECT_TRUE(auto_resynced) << "no auto-resync event for db2";
  std::vector<std::string> aside = Glob(db2.data_dir() + kMysqlOldDirInfix + "*");
  EXPECT_EQ(aside.size(), 2u) << "the diverged data was moved aside, not deleted";
  EXPECT_TRUE(IsSlave(db2));
  EXPECT_EQ(*db2.Value("SELECT v FROM app.t WHERE id = 5000"), "written on the master");
  ASSERT_TRUE(db1.Exec("INSERT INTO app.t (v) VALUES ('after the resync')").ok());
  EXPECT_TRUE(HasRows(db2, "app.t", 1002, seconds(10)));

  // The operator's resync: a fresh copy, whatever state the slave is in.
  CtlResult resync = cluster_.Ctl({"resync", "db2"});
  ASSERT_EQ(resync.exit_code, 0) << resync.out;
  cluster_.Wait({"db1", "db2"});
  EXPECT_EQ(Glob(db2.data_dir() + kMysqlOldDirInfix + "*").size(), 3u);
  EXPECT_TRUE(IsSlave(db2));
  EXPECT_EQ(Count(db2, "app.t"), 1002);
  ASSERT_TRUE(db1.Exec("INSERT INTO app.t (v) VALUES ('after the operator resync')").ok());
  EXPECT_TRUE(HasRows(db2, "app.t", 1003, seconds(10)));
}

// A slave in another stack replicates from its master's external address
// over TLS (verifying the master's certificate), its copy comes from the
// master agent's external address, and each side's env file points at the
// master as reachable from its stack.
TEST_F(MysqlE2eTest, ReplicationBetweenStacksUsesExternalAddressesAndTls) {
  TempDir tls_dir("tmytls");
  absl::StatusOr<TestCertificates> tls =
      MakeTestCertificates(tls_dir.path(), {"127.0.0.2", "127.0.0.3"}, MysqlOsUser());
  ASSERT_TRUE(tls.ok()) << tls.status();
  const std::string tls_yaml =
      absl::StrCat("  tls_mode: between-stacks\n  tls_ca_file: ", tls->ca_file, "\n");
  NodeOptions a;
  a.stack = "a";
  a.external = "127.0.0.2";
  a.server_args = {"--ssl-ca=" + tls->ca_file, "--ssl-cert=" + tls->cert_file,
                   "--ssl-key=" + tls->key_file, "--performance-schema=ON"};
  a.engine_yaml = tls_yaml;
  NodeOptions b;
  b.stack = "b";
  b.external = "127.0.0.3";
  b.engine_yaml = tls_yaml;
  MysqlServer& db1 = AddMysqlNode("db1", 1, a);
  MysqlServer& db2 = AddMysqlNode("db2", 2, b);
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 2; }, seconds(30)));
  cluster_.Wait({"db1", "db2"});
  CreateApp(db1, 1000);
  CtlResult enable = cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"});
  ASSERT_EQ(enable.exit_code, 0) << enable.out;
  cluster_.Wait({"db1", "db2"});

  auto nodes = cluster_.Nodes();
  EXPECT_EQ(nodes["db2"]["observed"]["upstream"], absl::StrCat("127.0.0.2:", db1.port()));
  EXPECT_EQ(nodes["db2"]["desired"]["upstream"]["host"], "127.0.0.2");
  EXPECT_EQ(Count(db2, "app.t"), 1000);
  ASSERT_TRUE(db1.Exec("INSERT INTO app.t (v) VALUES ('across stacks')").ok());
  EXPECT_TRUE(HasRows(db2, "app.t", 1001, seconds(10)));

  // TLS: the slave verifies the master's certificate; the master's account
  // for it requires TLS; the master's binlog dump session is encrypted.
  absl::StatusOr<MysqlResult> rs = db2.Query("SHOW SLAVE STATUS");
  ASSERT_TRUE(rs.ok() && !rs->rows.empty());
  EXPECT_EQ(rs->Get(0, "Master_Host"), "127.0.0.2");
  EXPECT_EQ(rs->Get(0, "Master_SSL_Allowed"), "Yes");
  EXPECT_EQ(rs->Get(0, "Master_SSL_Verify_Server_Cert"), "Yes");
  EXPECT_EQ(*db1.Value("SELECT GROUP_CONCAT(CONCAT(Host, ' ', ssl_type)) FROM mysql.user "
                       "WHERE User = 'tandem_repl'"),
            "% ANY");
  absl::StatusOr<std::string> cipher = db1.Value(
      "SELECT s.VARIABLE_VALUE FROM performance_schema.status_by_thread s "
      "JOIN performance_schema.threads t USING (THREAD_ID) "
      "JOIN information_schema.PROCESSLIST p ON p.ID = t.PROCESSLIST_ID "
      "WHERE s.VARIABLE_NAME = 'Ssl_cipher' AND p.COMMAND = 'Binlog Dump'");
  ASSERT_TRUE(cipher.ok()) << cipher.status();
  EXPECT_FALSE(cipher->empty()) << "the replication session is not encrypted";

  // The slave's stack reaches the master by its external address; the
  // master's stack by its internal one.
  auto slave_env = cluster_.Env("db2");
  EXPECT_EQ(slave_env["MYSQL_ADDRESS"], "127.0.0.2");
  EXPECT_EQ(slave_env["MYSQL_ADDRESS_INT"], "127.0.0.1");
  EXPECT_EQ(slave_env["MYSQL_ADDRESS_EXT"], "127.0.0.2");
  EXPECT_EQ(slave_env["MYSQL_PORT"], std::to_string(db1.port()));
  EXPECT_EQ(slave_env["MYSQL_SLAVE_ADDRESSES"], absl::StrCat("127.0.0.1:", db2.port()));
  EXPECT_EQ(slave_env["TANDEM_ROLE"], "slave");
  auto master_env = cluster_.Env("db1");
  EXPECT_EQ(master_env["MYSQL_ADDRESS"], "127.0.0.1");
  EXPECT_EQ(master_env["MYSQL_ADDRESS_EXT"], "127.0.0.2");
  EXPECT_EQ(master_env["MYSQL_SLAVE_ADDRESSES"], absl::StrCat("127.0.0.3:", db2.port()));
  EXPECT_EQ(master_env["MYSQL_SLAVE_ADDRESSES_EXT"], absl::StrCat("127.0.0.3:", db2.port()));
  EXPECT_EQ(master_env["MYSQL_SLAVE_ADDRESSES_INT"], absl::StrCat("127.0.0.1:", db2.port()));
  EXPECT_EQ(master_env["TANDEM_ROLE"], "master");
}

// The backup that seeds a slave goes to that slave's agent alone: the
// master's agent checks the caller's certificate against the slave the
// controller has bootstrapping, whatever id the request names.
TEST_F(MysqlE2eTest, BackupsGoOnlyToTheBootstrappingSlavesCertificate) {
  AddMysqlNode("db1", 1);
  AddMysqlNode("db2", 2);
  AddMysqlNode("db3", 3);
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 3; }, seconds(60)));
  cluster_.Wait({"db1", "db2", "db3"});
  // The designated slave's fetch works: db2 converges on its copy.
  ASSERT_EQ(cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"}).exit_code,
            0);
  cluster_.Wait({"db1", "db2"});
  EXPECT_TRUE(absl::StrContains(*ReadFile(cluster_.dir().Sub("db1-agent.log")),
                                "transfer: backup for db2 done"));
  auto nodes = cluster_.Nodes();
  ASSERT_EQ(nodes["db1"]["desired"]["slaves"].size(), 1u);
  EXPECT_FALSE(nodes["db1"]["desired"]["slaves"][0].value("bootstrapping", false))
      << "db2 holds its copy: nobody is bootstrapping";
  Peer master{"db1", "main", "127.0.0.1", 0,
              nodes["db1"].value("transfer_port", uint32_t{0})};
  ASSERT_NE(master.transfer_port, 0u);

  auto creds = [&](const std::string& file, IdentityKind kind) {
    absl::StatusOr<std::shared_ptr<TlsCredentials>> c = TlsCredentials::Load(
        {cluster_.certs_dir() + "/ca.crt", cluster_.certs_dir() + "/" + file + ".crt",
         cluster_.certs_dir() + "/" + file + ".key"},
        kind, "");
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  };
  auto fetch = [&](std::shared_ptr<TlsCredentials> tls, const std::string& as) {
    GrpcBackupSource source(std::move(tls), EngineType::kMysql);
    uint64_t received = 0;
    absl::Status st = source.Fetch(master, as, [&](std::string_view chunk, uint64_t) {
      received += chunk.size();
      return absl::OkStatus();
    });
    EXPECT_EQ(received, 0u) << "not a byte of the database for " << as;
    return st;
  };
  absl::Status st = fetch(creds("node.db3", IdentityKind::kNode), "db2");
  EXPECT_TRUE(absl::IsPermissionDenied(st)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "node db3 may not fetch a backup as node db2")) << st;
  st = fetch(creds("node.db3", IdentityKind::kNode), "db3");
  EXPECT_TRUE(absl::IsPermissionDenied(st)) << st;
  st = fetch(creds("node.db2", IdentityKind::kNode), "db2");
  EXPECT_TRUE(absl::IsPermissionDenied(st)) << "db2 is seeded, not bootstrapping: " << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "not a slave the controller has bootstrapping"))
      << st;
  st = fetch(creds("client.admin", IdentityKind::kOperator), "db2");
  EXPECT_TRUE(absl::IsPermissionDenied(st)) << "an operator is no node: " << st;
  st = fetch(nullptr, "db2");
  EXPECT_TRUE(absl::IsUnavailable(st)) << "plaintext: " << st;
  EXPECT_TRUE(absl::StrContains(*ReadFile(cluster_.dir().Sub("db1-agent.log")),
                                "transfer: refused: node db3 may not fetch a backup as node db2"));
  // Still served to the designated slave: a resync copies again.
  ASSERT_EQ(cluster_.Ctl({"resync", "db2"}).exit_code, 0);
  cluster_.Wait({"db1", "db2"});
  EXPECT_TRUE(IsSlave(*servers_[1]));
}

}  // namespace
}  // namespace tandem::testing

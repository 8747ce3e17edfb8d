// The MySQL/MariaDB user story, end to end: real tandem-controller, one real
// tandem-agent per node, real MariaDB 10.11 servers (started by the agents'
// engine), driven by tandemctl. A slave is seeded with a mariadb-backup
// stream that its agent fetches from the master's agent (transfer_listen).
#include <dirent.h>
#include <glob.h>

#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "engines/mysql/mysql_engine.h"
#include "gtest/gtest.h"
#include "tests/e2e/cluster.h"
#include "tests/harness/mysql_server.h"

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
  MysqlServer& AddMysqlNode(const std::string& id, uint32_t server_id) {
    MysqlServerOptions options;
    options.name = id;
    options.server_id = server_id;
    options.start = false;
    absl::StatusOr<std::unique_ptr<MysqlServer>> created = MysqlServer::Create(options);
    EXPECT_TRUE(created.ok()) << created.status();
    MysqlServer& server = *servers_.emplace_back(*std::move(created));
    std::vector<std::string> quoted;
    for (const std::string& arg : server.server_args()) quoted.push_back(absl::StrCat("\"", arg, "\""));
    cluster_.AddNode(id, "main",
                     absl::StrCat("addresses: {internal: 127.0.0.1}\n"
                                  "transfer_listen: 127.0.0.1:", FreePort(), "\n",
                                  "engine:\n"
                                  "  type: mysql\n"
                                  "  port: ", server.port(), "\n",
                                  "  data_dir: ", server.data_dir(), "\n",
                                  "  user: root\n"
                                  "  os_user: ", server.os_user(), "\n",
                                  "  server_args: [", absl::StrJoin(quoted, ", "), "]\n",
                                  "  replication_password_file: ", password_file_, "\n",
                                  "  timeout: 60\n"));
    return server;
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

}  // namespace
}  // namespace tandem::testing

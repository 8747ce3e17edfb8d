// Integration test of the PostgreSQL engine against real PostgreSQL servers
// started by the test harness (as the postgres OS user when run as root).
#include "engines/postgresql/postgresql_engine.h"

#include <libpq-fe.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/subprocess.h"
#include "engines/postgresql/pg_files.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"
#include "tests/harness/pg_server.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
namespace th = tandem::testing;
using std::chrono::seconds;

constexpr char kReplPassword[] = "Repl-Pw-7f3a";

// Everything an agent-side test needs about one database node.
struct Node {
  std::unique_ptr<th::PgServer> pg;
  EngineConfig config;
  std::unique_ptr<Engine> engine;
  Peer peer;
};

std::string Secret(const std::string& dir, const std::string& name, const std::string& content,
                   unsigned mode = 0600) {
  std::string path = dir + "/" + name;
  absl::Status st = WriteFileAtomic(path, content + "\n", mode);
  EXPECT_TRUE(st.ok()) << st;
  return path;
}

EngineConfig ConfigFor(const th::PgServer& pg) {
  EngineConfig config;
  config.type = EngineType::kPostgresql;
  config.host = "127.0.0.1";
  config.port = pg.port();
  config.data_dir = pg.data_dir();
  config.user = "postgres";
  config.os_user = pg.os_user();
  config.bin_dir = pg.bin_dir();
  config.server_args = pg.server_args();
  config.timeout_seconds = 30;
  return config;
}

// Starts a server named `id` and an engine on it. `repl_password` empty:
// no replication password file.
Node MakeNode(const std::string& id, const std::string& repl_password = kReplPassword,
              std::vector<std::string> extra_args = {}) {
  Node node;
  th::PgServerOptions options;
  options.name = id;
  options.extra_args = std::move(extra_args);
  absl::StatusOr<std::unique_ptr<th::PgServer>> pg = th::PgServer::Create(options);
  EXPECT_TRUE(pg.ok()) << pg.status();
  if (!pg.ok()) return node;
  node.pg = *std::move(pg);
  node.config = ConfigFor(*node.pg);
  if (!repl_password.empty()) {
    node.config.replication_password_file = Secret(node.pg->dir(), "repl.pw", repl_password);
  }
  absl::StatusOr<std::unique_ptr<Engine>> engine = MakePostgresqlEngine(node.config);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (engine.ok()) node.engine = *std::move(engine);
  node.peer = Peer{.id = id, .stack = "s1", .host = "127.0.0.1", .port = node.pg->port()};
  return node;
}

std::unique_ptr<Engine> EngineOrDie(const EngineConfig& config) {
  absl::StatusOr<std::unique_ptr<Engine>> engine = MakePostgresqlEngine(config);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

EngineFacts ObserveOrDie(Engine& engine) {
  absl::StatusOr<EngineFacts> facts = engine.Observe();
  EXPECT_TRUE(facts.ok()) << facts.status();
  return facts.value_or(EngineFacts{});
}

std::string ValueOrEmpty(const th::PgServer& pg, const std::string& sql) {
  absl::StatusOr<std::string> v = pg.Value(sql);
  return v.ok() ? *v : "";
}

std::string SystemId(const th::PgServer& pg) {
  return ValueOrEmpty(pg, "SELECT system_identifier::text FROM pg_control_system()");
}

// The system identifier of a data directory, from pg_controldata.
std::string ControldataId(const th::PgServer& pg, const std::string& data_dir) {
  RunOptions options;
  options.run_as = pg.os_user();
  options.env = {{"LC_ALL", "C"}};
  absl::StatusOr<RunResult> out = Run({pg.bin_dir() + "/pg_controldata", data_dir}, options);
  EXPECT_TRUE(out.ok() && out->exit_code == 0) << data_dir;
  if (!out.ok()) return "";
  return pg::ControldataField(out->output, "Database system identifier").value_or("");
}

std::vector<std::string> TandemSlots(const th::PgServer& pg) {
  absl::StatusOr<th::Rows> rows = pg.Query(
      "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'tandem\\_%' ORDER BY 1");
  EXPECT_TRUE(rows.ok()) << rows.status();
  std::vector<std::string> out;
  for (const auto& row : rows.value_or(th::Rows{})) out.push_back(row[0]);
  return out;
}

std::string FileOrEmpty(const std::string& path) { return ReadFile(path).value_or(""); }

std::vector<std::string> OldDirs(const std::string& data_dir) {
  std::vector<std::string> out;
  const std::string prefix = fs::path(data_dir).filename().string() + ".tandem-old-";
  for (const auto& entry : fs::directory_iterator(fs::path(data_dir).parent_path())) {
    if (entry.path().filename().string().rfind(prefix, 0) == 0) out.push_back(entry.path());
  }
  return out;
}

struct StatInfo {
  unsigned mode = 0;
  unsigned uid = 0;
  ino_t ino = 0;
};
StatInfo StatOf(const std::string& path) {
  struct stat sb {};
  EXPECT_EQ(::stat(path.c_str(), &sb), 0) << path;
  return StatInfo{static_cast<unsigned>(sb.st_mode & 07777), sb.st_uid, sb.st_ino};
}

unsigned UidOf(const std::string& user) {
  absl::StatusOr<UserIds> ids = LookupUser(user);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? ids->uid : 0;
}

class PostgresqlEngineTest : public ::testing::Test {
 protected:
  void TearDown() override { th::ReapAdoptedZombies(); }
};

// ------------------------------------------------------------------ config

TEST_F(PostgresqlEngineTest, ConfigValidationNamesTheField) {
  th::TempDir dir("tpv");
  absl::StatusOr<std::string> bin = th::PostgresBinDir();
  ASSERT_TRUE(bin.ok()) << bin.status();
  const std::string secret = "Top-Secret-Content-91";
  const std::string good_pw = Secret(dir.path(), "good.pw", secret);
  const std::string open_pw = Secret(dir.path(), "open.pw", secret, 0644);
  const std::string group_pw = Secret(dir.path(), "group.pw", secret, 0640);

  EngineConfig base;
  base.type = EngineType::kPostgresql;
  base.port = 5432;
  base.data_dir = dir.Sub("data");
  base.user = "postgres";
  base.os_user = th::PostgresOsUser();
  base.bin_dir = *bin;
  base.password_file = good_pw;
  base.replication_password_file = good_pw;
  ASSERT_TRUE(MakePostgresqlEngine(base).ok());
  EngineConfig no_bin = base;
  no_bin.bin_dir = "";
  EXPECT_TRUE(MakePostgresqlEngine(no_bin).ok()) << "an empty bin_dir is looked up";

  struct Case {
    std::string name;
    std::function<void(EngineConfig&)> mutate;
    std::string want;  // in the message
  };
  const std::vector<Case> cases = {
      {"type", [](EngineConfig& c) { c.type = EngineType::kRedis; }, "engine.type: is redis"},
      {"unit_and_command",
       [](EngineConfig& c) {
         c.systemd_unit = "postgresql@15-main";
         c.start_command = "pg_ctlcluster 15 main start";
       },
       "engine.start_command: not used with engine.systemd_unit"},
      {"port0", [](EngineConfig& c) { c.port = 0; }, "engine.port: must be between 1 and 65535"},
      {"port_big", [](EngineConfig& c) { c.port = 70000; }, "engine.port:"},
      {"data_dir_rel", [](EngineConfig& c) { c.data_dir = "var/lib/pg"; },
       "engine.data_dir: must be an absolute path"},
      {"data_dir_empty", [](EngineConfig& c) { c.data_dir = ""; },
       "engine.data_dir: must be an absolute path"},
      {"data_dir_parent", [](EngineConfig& c) { c.data_dir = "/nonexistent-tandem-x/y/data"; },
       "engine.data_dir: parent directory /nonexistent-tandem-x/y does not exist"},
      {"user", [](EngineConfig& c) { c.user = ""; }, "engine.user: must not be empty"},
      {"os_user", [](EngineConfig& c) { c.os_user = "no-such-user-tandem"; }, "engine.os_user:"},
      {"bin_dir", [&](EngineConfig& c) { c.bin_dir = dir.path(); }, "engine.bin_dir:"},
      {"password_missing", [](EngineConfig& c) { c.password_file = "/nonexistent-tandem.pw"; },
       "engine.password_file:"},
      {"password_relative", [](EngineConfig& c) { c.password_file = "pw.txt"; },
       "engine.password_file: must be an absolute path"},
      {"password_open", [&](EngineConfig& c) { c.password_file = open_pw; },
       "engine.password_file: secret file " + open_pw + " has mode 0644"},
      {"repl_password_group", [&](EngineConfig& c) { c.replication_password_file = group_pw; },
       "engine.replication_password_file: secret file " + group_pw + " has mode 0640"},
      {"repl_user", [](EngineConfig& c) { c.replication_user = "repl-user"; },
       "engine.replication_user: must be a plain identifier"},
      {"repl_user_empty", [](EngineConfig& c) { c.replication_user = ""; },
       "engine.replication_user:"},
      {"timeout", [](EngineConfig& c) { c.timeout_seconds = 0; },
       "engine.timeout_seconds: must be at least 1"},
      {"log_file", [](EngineConfig& c) { c.log_file = "pg.log"; },
       "engine.log_file: must be an absolute path"},
  };
  for (const Case& c : cases) {
    EngineConfig config = base;
    c.mutate(config);
    absl::StatusOr<std::unique_ptr<Engine>> engine = MakePostgresqlEngine(config);
    ASSERT_FALSE(engine.ok()) << c.name;
    EXPECT_TRUE(absl::IsInvalidArgument(engine.status())) << c.name << ": " << engine.status();
    EXPECT_NE(engine.status().message().find(c.want), std::string::npos)
        << c.name << ": " << engine.status();
    EXPECT_EQ(engine.status().message().find(secret), std::string::npos) << c.name;
  }
}

// ------------------------------------------------------------------ observe, start, stop

TEST_F(PostgresqlEngineTest, ObserveStandaloneRunningAndStopped) {
  Node a = MakeNode("a");
  ASSERT_TRUE(a.engine);
  EXPECT_EQ(a.engine->type(), EngineType::kPostgresql);
  EXPECT_EQ(a.engine->DataParentDir(), a.pg->dir());
  const std::string system_id = SystemId(*a.pg);
  ASSERT_FALSE(system_id.empty());

  EngineFacts up = ObserveOrDie(*a.engine);
  EXPECT_TRUE(up.running);
  EXPECT_TRUE(up.has_data);
  EXPECT_TRUE(up.writable);
  EXPECT_FALSE(up.is_slave);
  EXPECT_FALSE(up.streaming);
  EXPECT_EQ(up.upstream, "");
  EXPECT_EQ(up.data_id, system_id);
  EXPECT_TRUE(up.served_slaves.empty());
  EXPECT_FALSE(up.position.empty());
  EXPECT_GT(up.data_bytes, 1000000u);

  ASSERT_TRUE(a.engine->Stop().ok());
  EXPECT_FALSE(a.pg->Answers());
  EXPECT_TRUE(a.engine->Stop().ok()) << "Stop is idempotent";
  EngineFacts down = ObserveOrDie(*a.engine);
  EXPECT_FALSE(down.running);
  EXPECT_TRUE(down.has_data);
  EXPECT_FALSE(down.writable);
  EXPECT_FALSE(down.is_slave);
  EXPECT_EQ(down.data_id, system_id) << "from pg_controldata";
  EXPECT_GT(down.data_bytes, 1000000u);

  ASSERT_TRUE(a.engine->Start().ok());
  EXPECT_TRUE(a.engine->Start().ok()) << "Start is idempotent";
  EXPECT_TRUE(a.pg->Answers());
  EXPECT_TRUE(ObserveOrDie(*a.engine).writable);
  // The default start command logs beside the data directory.
  EXPECT_NE(FileOrEmpty(a.pg->dir() + "/a.log").find("database system is ready"),
            std::string::npos);
  // The server runs with the configured server_args (a copied data dir
  // would otherwise bring its master's settings).
  EXPECT_EQ(ValueOrEmpty(*a.pg, "SHOW max_connections"), "30");
}

// Each pass looks through the agent's one session (no new backend per
// pass), and still sees at once a server stopped behind its back, and within
// a bound one that hangs.
TEST_F(PostgresqlEngineTest, ObserveKeepsOneSessionAndBoundsAHungServer) {
  Node a = MakeNode("a");
  ASSERT_TRUE(a.engine);
  ObserveOrDie(*a.engine);
  const std::string kSession =
      "SELECT string_agg(pid::text || '@' || backend_start::text, ',') FROM pg_stat_activity "
      "WHERE application_name = 'tandem-agent'";
  const std::string session = ValueOrEmpty(*a.pg, kSession);
  ASSERT_FALSE(session.empty());
  const std::string connections_before =
      ValueOrEmpty(*a.pg, "SELECT sum(sessions)::text FROM pg_stat_database");
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(ObserveOrDie(*a.engine).running);
  EXPECT_EQ(ValueOrEmpty(*a.pg, kSession), session) << "the same single session";
  // Only this test's own queries (one session each) were added.
  EXPECT_EQ(std::stoll(ValueOrEmpty(*a.pg, "SELECT sum(sessions)::text FROM pg_stat_database")),
            std::stoll(connections_before) + 2);

  ASSERT_TRUE(a.pg->Stop().ok());
  EXPECT_FALSE(ObserveOrDie(*a.engine).running) << "seen on the first look, without an error";
  ASSERT_TRUE(a.engine->Start().ok());
  EXPECT_TRUE(ObserveOrDie(*a.engine).running);

  // Every process of the server stopped: the look ends, Unavailable.
  absl::StatusOr<std::string> pid_file = ReadFile(a.pg->data_dir() + "/postmaster.pid");
  ASSERT_TRUE(pid_file.ok()) << pid_file.status();
  const pid_t postmaster = std::stoi(pid_file->substr(0, pid_file->find('\n')));
  std::vector<pid_t> server = {postmaster};
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    absl::StatusOr<std::string> text = ReadFile(entry.path().string() + "/stat");
    if (!text.ok()) continue;
    const size_t paren = text->rfind(')');
    if (paren == std::string::npos) continue;
    int ppid = 0;
    char state = 0;
    if (std::sscanf(text->c_str() + paren + 1, " %c %d", &state, &ppid) == 2 &&
        ppid == postmaster) {
      server.push_back(std::stoi(name));
    }
  }
  for (pid_t pid : server) ::kill(pid, SIGSTOP);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<EngineFacts> hung = a.engine->Observe();
  const auto took = std::chrono::steady_clock::now() - start;
  for (pid_t pid : server) ::kill(pid, SIGCONT);
  ASSERT_FALSE(hung.ok());
  EXPECT_EQ(hung.status().code(), absl::StatusCode::kUnavailable) << hung.status();
  EXPECT_LT(took, seconds(20));
  EXPECT_TRUE(th::PollUntil([&] { return a.engine->Observe().ok(); }, seconds(30)))
      << "a server that resumes is seen again";
}

TEST_F(PostgresqlEngineTest, NoDataDirectory) {
  th::TempDir dir("tpn");
  absl::StatusOr<std::string> bin = th::PostgresBinDir();
  ASSERT_TRUE(bin.ok());
  EngineConfig config;
  config.type = EngineType::kPostgresql;
  config.port = th::FreePort();
  config.data_dir = dir.Sub("empty");
  config.user = "postgres";
  config.os_user = th::PostgresOsUser();
  config.bin_dir = *bin;
  std::unique_ptr<Engine> engine = EngineOrDie(config);
  ASSERT_TRUE(engine);
  EngineFacts facts = ObserveOrDie(*engine);
  EXPECT_FALSE(facts.running);
  EXPECT_FALSE(facts.has_data);
  absl::Status start = engine->Start();
  EXPECT_TRUE(absl::IsFailedPrecondition(start)) << start;
  EXPECT_NE(start.message().find("needs a bootstrap"), std::string::npos) << start;
  EXPECT_TRUE(absl::IsUnavailable(engine->MakeWritable()));
  EXPECT_TRUE(engine->Stop().ok());
  EXPECT_TRUE(engine->Fence().ok()) << "nothing to fence";
}

// ------------------------------------------------------------------ fence

TEST_F(PostgresqlEngineTest, FenceThenMakeWritable) {
  Node a = MakeNode("a");
  ASSERT_TRUE(a.engine);
  ASSERT_TRUE(a.pg->Exec("CREATE TABLE t (i int)").ok());
  // An application session opened before the fence.
  PGconn* app = PQconnectdb(a.pg->conninfo().c_str());
  ASSERT_EQ(PQstatus(app), CONNECTION_OK);

  ASSERT_TRUE(a.engine->Fence().ok());
  EXPECT_FALSE(ObserveOrDie(*a.engine).writable);
  absl::Status insert = a.pg->Exec("INSERT INTO t VALUES (1)");
  EXPECT_NE(insert.message().find("25006"), std::string::npos) << insert;
  PGresult* res = PQexec(app, "INSERT INTO t VALUES (2)");
  EXPECT_NE(PQresultStatus(res), PGRES_COMMAND_OK) << "the old session was ended";
  PQclear(res);
  PQfinish(app);
  EXPECT_TRUE(a.engine->Fence().ok()) << "Fence is idempotent";
  EXPECT_EQ(ValueOrEmpty(*a.pg, "SELECT count(*) FROM t"), "0");

  ASSERT_TRUE(a.engine->MakeWritable().ok());
  EXPECT_TRUE(ObserveOrDie(*a.engine).writable);
  EXPECT_TRUE(a.pg->Exec("INSERT INTO t VALUES (3)").ok());
  EXPECT_TRUE(a.engine->MakeWritable().ok()) << "MakeWritable is idempotent";

  // A stopped server is fenced through its files and comes up read-only.
  ASSERT_TRUE(a.engine->Stop().ok());
  ASSERT_TRUE(a.engine->Fence().ok());
  EXPECT_EQ(pg::ConfValue(FileOrEmpty(a.pg->data_dir() + "/postgresql.auto.conf"),
                          "default_transaction_read_only"),
            std::optional<std::string>("on"));
  ASSERT_TRUE(a.engine->Start().ok());
  EngineFacts fenced = ObserveOrDie(*a.engine);
  EXPECT_TRUE(fenced.running);
  EXPECT_FALSE(fenced.writable);
  ASSERT_TRUE(a.engine->MakeWritable().ok());
  EXPECT_TRUE(ObserveOrDie(*a.engine).writable);
  EXPECT_TRUE(a.pg->Exec("INSERT INTO t VALUES (4)").ok());
}

// ------------------------------------------------------------------ serve slaves

TEST_F(PostgresqlEngineTest, ServeSlavesManagesRoleHbaAndSlots) {
  Node a = MakeNode("a");
  ASSERT_TRUE(a.engine);
  ASSERT_TRUE(a.pg->Exec("SELECT pg_create_physical_replication_slot('other_slot')").ok());
  const std::string hba_path = ValueOrEmpty(*a.pg, "SHOW hba_file");
  const std::string original_hba = FileOrEmpty(hba_path);
  const StatInfo original_stat = StatOf(hba_path);
  const Peer b{.id = "b", .stack = "s1", .host = "127.0.0.1", .port = 1};
  const Peer c{.id = "C-2", .stack = "s2", .host = "10.9.8.7", .port = 2};

  ASSERT_TRUE(a.engine->ServeSlaves({b, c}).ok());
  const std::string hba = FileOrEmpty(hba_path);
  EXPECT_EQ(hba.rfind(std::string(pg::kHbaBegin), 0), 0u) << "the block is at the top";
  EXPECT_NE(hba.find("host replication tandem_repl 127.0.0.1/32 scram-sha-256  # tandem slave b\n"),
            std::string::npos)
      << hba;
  EXPECT_NE(
      hba.find("host replication tandem_repl 10.9.8.7/32 scram-sha-256  # tandem slave C-2\n"),
      std::string::npos)
      << hba;
  EXPECT_NE(hba.find(original_hba), std::string::npos) << "the rest is kept";
  const StatInfo stat = StatOf(hba_path);
  EXPECT_EQ(stat.mode, original_stat.mode);
  EXPECT_EQ(stat.uid, original_stat.uid);
  EXPECT_EQ(TandemSlots(*a.pg), (std::vector<std::string>{"tandem_b", "tandem_c_2"}));
  EXPECT_EQ(ValueOrEmpty(*a.pg,
                         "SELECT rolcanlogin::text || rolreplication::text FROM pg_roles "
                         "WHERE rolname = 'tandem_repl'"),
            "truetrue");
  const std::string verifier =
      ValueOrEmpty(*a.pg, "SELECT rolpassword FROM pg_authid WHERE rolname = 'tandem_repl'");
  EXPECT_EQ(verifier.rfind("SCRAM-SHA-256$", 0), 0u) << verifier;
  EXPECT_EQ(ObserveOrDie(*a.engine).served_slaves, (std::vector<std::string>{"C-2", "b"}));

  // Idempotent: nothing is rewritten, not even the password.
  ASSERT_TRUE(a.engine->ServeSlaves({b, c}).ok());
  EXPECT_EQ(FileOrEmpty(hba_path), hba);
  EXPECT_EQ(StatOf(hba_path).ino, stat.ino) << "pg_hba.conf was rewritten";
  EXPECT_EQ(ValueOrEmpty(*a.pg, "SELECT rolpassword FROM pg_authid WHERE rolname = 'tandem_repl'"),
            verifier);

  // A new password in the file reaches the role.
  Secret(a.pg->dir(), "repl.pw", "Another-Pw-55");
  ASSERT_TRUE(a.engine->ServeSlaves({b, c}).ok());
  EXPECT_NE(ValueOrEmpty(*a.pg, "SELECT rolpassword FROM pg_authid WHERE rolname = 'tandem_repl'"),
            verifier);

  // Scaling down drops the slave's line and slot, and only those.
  ASSERT_TRUE(a.engine->ServeSlaves({b}).ok());
  EXPECT_EQ(pg::HbaBlockSlaveIds(FileOrEmpty(hba_path)), (std::vector<std::string>{"b"}));
  EXPECT_EQ(TandemSlots(*a.pg), (std::vector<std::string>{"tandem_b"}));
  EXPECT_EQ(ObserveOrDie(*a.engine).served_slaves, (std::vector<std::string>{"b"}));

  ASSERT_TRUE(a.engine->ServeSlaves({}).ok());
  EXPECT_EQ(FileOrEmpty(hba_path), original_hba);
  EXPECT_TRUE(TandemSlots(*a.pg).empty());
  EXPECT_TRUE(ObserveOrDie(*a.engine).served_slaves.empty());
  EXPECT_EQ(ValueOrEmpty(*a.pg,
                         "SELECT count(*) FROM pg_replication_slots WHERE slot_name = "
                         "'other_slot'"),
            "1")
      << "slots the engine does not manage stay";

  // Bad input changes nothing.
  absl::Status bad =
      a.engine->ServeSlaves({Peer{.id = "x", .stack = "s", .host = "a b", .port = 1}});
  EXPECT_TRUE(absl::IsInvalidArgument(bad)) << bad;
  absl::Status clash =
      a.engine->ServeSlaves({Peer{.id = "d.1", .stack = "s", .host = "10.0.0.1", .port = 1},
                             Peer{.id = "D_1", .stack = "s", .host = "10.0.0.2", .port = 1}});
  EXPECT_TRUE(absl::IsInvalidArgument(clash)) << clash;
  EXPECT_EQ(FileOrEmpty(hba_path), original_hba);
}

TEST_F(PostgresqlEngineTest, ServeSlavesRestartsOnlyWhenAllowed) {
  Node a = MakeNode("a");
  ASSERT_TRUE(a.engine);
  const Peer b{.id = "b", .stack = "s1", .host = "127.0.0.1", .port = 1};
  const Peer c{.id = "c", .stack = "s1", .host = "127.0.0.2", .port = 1};
  ASSERT_TRUE(a.pg->Exec("ALTER SYSTEM SET max_wal_senders = 2").ok());
  ASSERT_TRUE(a.engine->Stop().ok());
  ASSERT_TRUE(a.engine->Start().ok());
  ASSERT_EQ(ValueOrEmpty(*a.pg, "SHOW max_wal_senders"), "2");
  const std::string hba_path = ValueOrEmpty(*a.pg, "SHOW hba_file");
  const std::string original_hba = FileOrEmpty(hba_path);

  absl::Status held = a.engine->ServeSlaves({b, c});
  EXPECT_TRUE(absl::IsFailedPrecondition(held)) << held;
  EXPECT_NE(held.message().find("max_wal_senders is 2 (needs 3)"), std::string::npos) << held;
  EXPECT_NE(held.message().find("engine.allow_restart"), std::string::npos) << held;
  EXPECT_TRUE(TandemSlots(*a.pg).empty());
  EXPECT_EQ(FileOrEmpty(hba_path), original_hba);

  EngineConfig restartable = a.config;
  restartable.allow_restart = true;
  std::unique_ptr<Engine> engine = EngineOrDie(restartable);
  ASSERT_TRUE(engine);
  absl::Status restarted = engine->ServeSlaves({b, c});
  ASSERT_TRUE(restarted.ok()) << restarted;
  EXPECT_EQ(ValueOrEmpty(*a.pg, "SHOW max_wal_senders"), "10");
  EXPECT_EQ(ObserveOrDie(*engine).served_slaves, (std::vector<std::string>{"b", "c"}));

  // A setting on the command line survives the restart: said so.
  EngineConfig pinned = restartable;
  pinned.server_args.insert(pinned.server_args.end(), {"-c", "max_wal_senders=2"});
  engine = EngineOrDie(pinned);
  ASSERT_TRUE(engine);
  ASSERT_TRUE(engine->Stop().ok());
  ASSERT_TRUE(engine->Start().ok());
  absl::Status pinned_st =
      engine->ServeSlaves({b, c, Peer{.id = "d", .stack = "s1", .host = "127.0.0.3", .port = 1}});
  EXPECT_TRUE(absl::IsFailedPrecondition(pinned_st)) << pinned_st;
  EXPECT_NE(pinned_st.message().find("after a restart"), std::string::npos) << pinned_st;
}

// ------------------------------------------------------------------ bootstrap, follow, promote

TEST_F(PostgresqlEngineTest, BootstrapFollowResyncPromote) {
  Node a = MakeNode("a");
  Node b = MakeNode("b");
  ASSERT_TRUE(a.engine && b.engine);
  const std::string a_id = SystemId(*a.pg);
  const std::string a_addr = absl::StrCat("127.0.0.1:", a.pg->port());
  ASSERT_TRUE(a.pg->Exec("CREATE TABLE t (i int PRIMARY KEY); INSERT INTO t VALUES (1)").ok());
  ASSERT_TRUE(b.pg->Exec("CREATE TABLE b_marker (i int)").ok());
  const std::string marker_file = ValueOrEmpty(*b.pg, "SELECT pg_relation_filepath('b_marker')");
  const std::string b_id = SystemId(*b.pg);
  ASSERT_NE(b_id, a_id);
  ASSERT_FALSE(marker_file.empty());
  // A partial copy left by an earlier, killed attempt.
  const std::string side = b.pg->data_dir() + ".tandem-new";
  ASSERT_TRUE(MakeDirs(side + "/base").ok());
  ASSERT_TRUE(WriteFileAtomic(side + "/junk", "x").ok());

  ASSERT_TRUE(a.engine->ServeSlaves({b.peer}).ok());
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  auto started = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> data_id = b.engine->Bootstrap(
      b.peer, a.peer, [&](uint64_t done, uint64_t total) { progress.emplace_back(done, total); });
  const double bootstrap_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_TRUE(data_id.ok()) << data_id.status();
  std::printf("bootstrap took %.2f s, %zu progress reports\n", bootstrap_s, progress.size());
  EXPECT_EQ(*data_id, a_id);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().first, progress.back().second);
  EXPECT_GT(progress.back().second, 1000000u);

  // The old data directory is moved aside, with B's own data in it.
  std::vector<std::string> old_dirs = OldDirs(b.pg->data_dir());
  ASSERT_EQ(old_dirs.size(), 1u);
  EXPECT_TRUE(PathExists(old_dirs[0] + "/" + marker_file));
  EXPECT_EQ(ControldataId(*b.pg, old_dirs[0]), b_id);
  EXPECT_FALSE(PathExists(side));
  // The new one is a standby copy of A, owned by the OS user, mode 0700.
  const std::string data = b.pg->data_dir();
  EXPECT_TRUE(PathExists(data + "/standby.signal"));
  const std::string auto_conf = FileOrEmpty(data + "/postgresql.auto.conf");
  EXPECT_EQ(pg::ConfValue(auto_conf, "primary_slot_name"), std::optional<std::string>("tandem_b"));
  EXPECT_NE(pg::ConfValue(auto_conf, "primary_conninfo").value_or("").find("application_name=b"),
            std::string::npos)
      << auto_conf;
  EXPECT_EQ(auto_conf.find(kReplPassword), std::string::npos) << "the password is in a pgpass file";
  EXPECT_EQ(StatOf(data).mode, 0700u);
  EXPECT_EQ(StatOf(data).uid, UidOf(b.pg->os_user()));
  EXPECT_EQ(StatOf(data + "/postgresql.auto.conf").uid, UidOf(b.pg->os_user()));
  const std::string pgpass = b.pg->dir() + "/.tandem-b.pgpass";
  EXPECT_EQ(StatOf(pgpass).mode, 0600u);
  EXPECT_EQ(StatOf(pgpass).uid, UidOf(b.pg->os_user()));

  EngineFacts stopped = ObserveOrDie(*b.engine);
  EXPECT_FALSE(stopped.running);
  EXPECT_TRUE(stopped.is_slave);
  EXPECT_EQ(stopped.upstream, a_addr);
  EXPECT_EQ(stopped.data_id, a_id);

  // Follow on the stopped copy: already configured, nothing changes.
  ASSERT_TRUE(b.engine->Follow(b.peer, a.peer).ok());
  EXPECT_EQ(FileOrEmpty(data + "/postgresql.auto.conf"), auto_conf);
  ASSERT_TRUE(b.engine->Start().ok());

  auto streams_from = [&](const std::string& upstream) {
    return th::PollUntil(
        [&] {
          absl::StatusOr<EngineFacts> f = b.engine->Observe();
          return f.ok() && f->running && f->is_slave && f->streaming && !f->writable &&
                 f->upstream == upstream;
        },
        seconds(30));
  };
  ASSERT_TRUE(streams_from(a_addr)) << th::FileTail(b.pg->dir() + "/b.log");
  ASSERT_TRUE(a.pg->Exec("INSERT INTO t VALUES (2)").ok());
  EXPECT_TRUE(th::PollUntil([&] { return ValueOrEmpty(*b.pg, "SELECT count(*) FROM t") == "2"; },
                            seconds(30)));
  absl::Status write_on_slave = b.pg->Exec("INSERT INTO t VALUES (100)");
  EXPECT_NE(write_on_slave.message().find("25006"), std::string::npos) << write_on_slave;
  EngineFacts slave = ObserveOrDie(*b.engine);
  EXPECT_EQ(slave.data_id, a_id);
  EXPECT_GE(slave.lag_bytes, 0);
  EXPECT_GE(slave.lag_seconds, 0);
  EXPECT_FALSE(slave.position.empty());
  EXPECT_EQ(ObserveOrDie(*a.engine).served_slaves, (std::vector<std::string>{"b"}));
  EXPECT_EQ(ValueOrEmpty(*a.pg, "SELECT application_name FROM pg_stat_replication"), "b");

  // Follow on the running slave: a no-op, then a real change through reload.
  ASSERT_TRUE(b.engine->Follow(b.peer, a.peer).ok());
  EXPECT_EQ(FileOrEmpty(data + "/postgresql.auto.conf"), auto_conf);
  Peer a_by_name = a.peer;
  a_by_name.host = "localhost";
  absl::Status moved = b.engine->Follow(b.peer, a_by_name);
  ASSERT_TRUE(moved.ok()) << moved;
  EXPECT_NE(ValueOrEmpty(*b.pg, "SHOW primary_conninfo").find("host=localhost"), std::string::npos);
  ASSERT_TRUE(b.engine->Follow(b.peer, a.peer).ok());
  EXPECT_NE(ValueOrEmpty(*b.pg, "SHOW primary_conninfo").find("host=127.0.0.1"), std::string::npos);
  ASSERT_TRUE(streams_from(a_addr));

  // A writable server never becomes a slave without a bootstrap.
  absl::Status refuse = a.engine->Follow(a.peer, b.peer);
  EXPECT_TRUE(absl::IsFailedPrecondition(refuse)) << refuse;

  // Resync of the running slave: it holds the slot, so it is stopped first.
  absl::StatusOr<std::string> again = b.engine->Bootstrap(b.peer, a.peer, nullptr);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, a_id);
  EXPECT_EQ(OldDirs(b.pg->data_dir()).size(), 2u);
  ASSERT_TRUE(b.engine->Follow(b.peer, a.peer).ok());
  ASSERT_TRUE(b.engine->Start().ok());
  ASSERT_TRUE(streams_from(a_addr)) << th::FileTail(b.pg->dir() + "/b.log");
  ASSERT_TRUE(a.pg->Exec("INSERT INTO t VALUES (3)").ok());
  EXPECT_TRUE(th::PollUntil([&] { return ValueOrEmpty(*b.pg, "SELECT count(*) FROM t") == "3"; },
                            seconds(30)));

  // Removing the streaming slave ends its walsender and drops its slot.
  ASSERT_TRUE(a.engine->ServeSlaves({}).ok());
  EXPECT_TRUE(TandemSlots(*a.pg).empty());
  EXPECT_TRUE(ObserveOrDie(*a.engine).served_slaves.empty());

  // Promotion keeps the data and makes B writable.
  ASSERT_TRUE(b.engine->MakeWritable().ok());
  EngineFacts promoted = ObserveOrDie(*b.engine);
  EXPECT_TRUE(promoted.writable);
  EXPECT_FALSE(promoted.is_slave);
  EXPECT_EQ(promoted.upstream, "");
  EXPECT_TRUE(b.pg->Exec("INSERT INTO t VALUES (4)").ok());
  EXPECT_EQ(ValueOrEmpty(*b.pg, "SELECT count(*) FROM t"), "4");
  EXPECT_FALSE(PathExists(data + "/standby.signal"));
  const std::string promoted_conf = FileOrEmpty(data + "/postgresql.auto.conf");
  EXPECT_FALSE(pg::ConfValue(promoted_conf, "primary_conninfo").has_value()) << promoted_conf;
  EXPECT_FALSE(pg::ConfValue(promoted_conf, "primary_slot_name").has_value()) << promoted_conf;
  EXPECT_TRUE(b.engine->MakeWritable().ok()) << "MakeWritable is idempotent";
}

// The cheap path after a switchover: the fenced old master rewinds onto the
// new one and streams from it; a server holding a commit the new master
// lacks is refused (a full copy keeps it aside instead).
TEST_F(PostgresqlEngineTest, RejoinRewindsUnlessItWouldDiscardACommit) {
  Node a = MakeNode("a");
  Node b = MakeNode("b");
  ASSERT_TRUE(a.engine && b.engine);
  ASSERT_TRUE(a.pg->Exec("CREATE TABLE t (i int PRIMARY KEY); INSERT INTO t VALUES (1)").ok());
  ASSERT_TRUE(a.engine->ServeSlaves({b.peer}).ok());
  ASSERT_TRUE(b.engine->Bootstrap(b.peer, a.peer, nullptr).ok());
  ASSERT_TRUE(b.engine->Start().ok());
  auto streams = [](Node& n) {
    return th::PollUntil(
        [&] {
          absl::StatusOr<EngineFacts> f = n.engine->Observe();
          return f.ok() && f->streaming;
        },
        seconds(30));
  };
  ASSERT_TRUE(streams(b));
  const size_t a_aside = OldDirs(a.pg->data_dir()).size();

  // The switchover, by hand: fence A, B replays A's last position, B takes over.
  ASSERT_TRUE(a.engine->Fence().ok());
  const std::string position = ObserveOrDie(*a.engine).position;
  ASSERT_TRUE(th::PollUntil([&] { return b.engine->HasReplayed(position).value_or(false); },
                            seconds(30)));
  ASSERT_TRUE(b.engine->MakeWritable().ok());
  ASSERT_TRUE(b.engine->ServeSlaves({a.peer}).ok());
  absl::StatusOr<std::string> rejoined = a.engine->Rejoin(a.peer, b.peer);
  ASSERT_TRUE(rejoined.ok()) << rejoined.status() << "\n" << th::FileTail(a.pg->dir() + "/a.log");
  EXPECT_EQ(*rejoined, SystemId(*b.pg));
  EXPECT_EQ(OldDirs(a.pg->data_dir()).size(), a_aside) << "rejoined in place";
  EngineFacts follower = ObserveOrDie(*a.engine);
  EXPECT_TRUE(follower.is_slave);
  EXPECT_EQ(follower.upstream, absl::StrCat("127.0.0.1:", b.pg->port()));
  ASSERT_TRUE(b.pg->Exec("INSERT INTO t VALUES (2)").ok());
  EXPECT_TRUE(th::PollUntil([&] { return ValueOrEmpty(*a.pg, "SELECT count(*) FROM t") == "2"; },
                            seconds(30)));
  // Idempotent: again, nothing to rewind.
  absl::StatusOr<std::string> again = a.engine->Rejoin(a.peer, b.peer);
  ASSERT_TRUE(again.ok()) << again.status();

  // A promoted behind our back and written to: a rewind would discard it.
  ASSERT_TRUE(b.pg->Exec("CHECKPOINT").ok());
  ASSERT_TRUE(th::PollUntil(
      [&] { return b.engine->HasReplayed(ObserveOrDie(*b.engine).position).value_or(false) &&
                   a.engine->HasReplayed(ObserveOrDie(*b.engine).position).value_or(false); },
      seconds(30)));
  ASSERT_TRUE(a.engine->MakeWritable().ok());
  ASSERT_TRUE(a.pg->Exec("INSERT INTO t VALUES (3)").ok());
  absl::StatusOr<std::string> refused = a.engine->Rejoin(a.peer, b.peer);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("writable"), std::string::npos) << refused.status();
  ASSERT_TRUE(a.engine->Fence().ok());
  refused = a.engine->Rejoin(a.peer, b.peer);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("committed here after the fork"), std::string::npos)
      << refused.status();
  ASSERT_TRUE(a.engine->Start().ok());
  EXPECT_EQ(ValueOrEmpty(*a.pg, "SELECT count(*) FROM t WHERE i = 3"), "1") << "nothing discarded";
}

TEST_F(PostgresqlEngineTest, BootstrapRefusedLeavesDataUntouched) {
  Node a = MakeNode("a");
  Node b = MakeNode("b");
  ASSERT_TRUE(a.engine && b.engine);
  ASSERT_TRUE(b.pg->Exec("CREATE TABLE b_marker (i int); INSERT INTO b_marker VALUES (7)").ok());
  const std::string b_id = SystemId(*b.pg);

  auto untouched = [&](const std::string& why) {
    EXPECT_TRUE(b.pg->Answers()) << why;
    EXPECT_EQ(ValueOrEmpty(*b.pg, "SELECT i FROM b_marker"), "7") << why;
    EXPECT_EQ(SystemId(*b.pg), b_id) << why;
    EXPECT_TRUE(OldDirs(b.pg->data_dir()).empty()) << why;
    EXPECT_FALSE(PathExists(b.pg->data_dir() + ".tandem-new")) << why;
    EXPECT_TRUE(ObserveOrDie(*b.engine).writable) << why;
  };

  // A serves no slave at all: no replication role.
  absl::StatusOr<std::string> no_role = b.engine->Bootstrap(b.peer, a.peer, nullptr);
  ASSERT_FALSE(no_role.ok());
  EXPECT_TRUE(absl::IsUnavailable(no_role.status())) << no_role.status();
  EXPECT_NE(no_role.status().message().find(
                absl::StrCat("master a at 127.0.0.1:", a.pg->port(),
                             " does not accept replication from this node yet")),
            std::string::npos)
      << no_role.status();
  untouched("no role");

  // A serves another slave, not B: no slot for B.
  ASSERT_TRUE(
      a.engine->ServeSlaves({Peer{.id = "z", .stack = "s1", .host = "127.0.0.1", .port = 1}}).ok());
  absl::StatusOr<std::string> no_slot = b.engine->Bootstrap(b.peer, a.peer, nullptr);
  ASSERT_FALSE(no_slot.ok());
  EXPECT_TRUE(absl::IsUnavailable(no_slot.status())) << no_slot.status();
  EXPECT_NE(no_slot.status().message().find(absl::StrCat("master a at 127.0.0.1:", a.pg->port(),
                                                         " does not serve this node yet")),
            std::string::npos)
      << no_slot.status();
  EXPECT_NE(no_slot.status().message().find("tandem_b"), std::string::npos) << no_slot.status();
  untouched("no slot");

  // A serves B, but B has the wrong replication password.
  ASSERT_TRUE(a.engine->ServeSlaves({b.peer}).ok());
  Secret(b.pg->dir(), "repl.pw", "Wrong-Pw-x1");
  absl::StatusOr<std::string> bad_pw = b.engine->Bootstrap(b.peer, a.peer, nullptr);
  ASSERT_FALSE(bad_pw.ok());
  EXPECT_TRUE(absl::IsUnavailable(bad_pw.status())) << bad_pw.status();
  EXPECT_NE(bad_pw.status().message().find("does not accept replication from this node yet"),
            std::string::npos)
      << bad_pw.status();
  EXPECT_EQ(bad_pw.status().message().find(kReplPassword), std::string::npos);
  EXPECT_EQ(bad_pw.status().message().find("Wrong-Pw-x1"), std::string::npos);
  untouched("wrong password");
}

TEST_F(PostgresqlEngineTest, ReplicationWithoutAPasswordIsRefused) {
  Node a = MakeNode("a", "");  // no replication_password_file
  ASSERT_TRUE(a.engine);
  const std::string hba_before = FileOrEmpty(ValueOrEmpty(*a.pg, "SHOW hba_file"));
  absl::Status st = a.engine->ServeSlaves(
      {Peer{.id = "c", .stack = "s1", .host = "127.0.0.1", .port = 5999}});
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_NE(st.message().find("engine.replication_password_file is not set"), std::string::npos)
      << st;
  EXPECT_EQ(FileOrEmpty(ValueOrEmpty(*a.pg, "SHOW hba_file")), hba_before)
      << "no trust rule, no rule at all";
  EXPECT_TRUE(a.engine->ServeSlaves({}).ok()) << "a master without slaves needs no password";
}

TEST_F(PostgresqlEngineTest, BootstrapIntoMissingDataDir) {
  Node a = MakeNode("a");
  ASSERT_TRUE(a.engine);
  ASSERT_TRUE(a.pg->Exec("CREATE TABLE t (i int); INSERT INTO t VALUES (1)").ok());
  // A fresh node, or one whose earlier bootstrap died between the two renames.
  th::TempDir dir("tpm");
  ASSERT_EQ(::chown(dir.path().c_str(), UidOf(th::PostgresOsUser()), static_cast<gid_t>(-1)), 0);
  EngineConfig config = a.config;
  config.port = th::FreePort();
  config.data_dir = dir.Sub("c");
  config.server_args = {"-c", "listen_addresses=127.0.0.1",
                        "-c", "unix_socket_directories=" + dir.path(),
                        "-c", "fsync=off",
                        "-c", "shared_buffers=16MB",
                        "-c", "max_connections=30"};
  std::unique_ptr<Engine> c = EngineOrDie(config);
  ASSERT_TRUE(c);
  const Peer c_peer{.id = "c", .stack = "s1", .host = "127.0.0.1", .port = config.port};

  ASSERT_TRUE(a.engine->ServeSlaves({c_peer}).ok());
  EXPECT_NE(FileOrEmpty(ValueOrEmpty(*a.pg, "SHOW hba_file"))
                .find("host replication tandem_repl 127.0.0.1/32 scram-sha-256  # tandem slave c"),
            std::string::npos);
  absl::StatusOr<std::string> id = c->Bootstrap(c_peer, a.peer, nullptr);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, SystemId(*a.pg));
  EXPECT_TRUE(OldDirs(config.data_dir).empty());
  // The password goes to the master's host and port only.
  EXPECT_EQ(FileOrEmpty(dir.path() + "/.tandem-c.pgpass"),
            absl::StrCat("127.0.0.1:", a.pg->port(), ":*:tandem_repl:", kReplPassword, "\n"));
  ASSERT_TRUE(c->Follow(c_peer, a.peer).ok());
  ASSERT_TRUE(c->Start().ok());
  EXPECT_TRUE(th::PollUntil(
      [&] {
        absl::StatusOr<EngineFacts> f = c->Observe();
        return f.ok() && f->streaming;
      },
      seconds(30)))
      << th::FileTail(dir.path() + "/c.log");
  ASSERT_TRUE(c->Stop().ok());
  EXPECT_TRUE(th::StopPostgresByPidFile(config.data_dir).ok());
}

// ------------------------------------------------------------------ the agent's login

TEST_F(PostgresqlEngineTest, AgentLoginWithPasswordFile) {
  Node a = MakeNode("a");
  ASSERT_TRUE(a.engine);
  ASSERT_TRUE(a.pg->Exec("CREATE ROLE agent SUPERUSER LOGIN PASSWORD 'Agent-Pw-42'").ok());
  const std::string hba_path = ValueOrEmpty(*a.pg, "SHOW hba_file");
  ASSERT_TRUE(WriteFileAtomic(hba_path,
                              "host all agent 127.0.0.1/32 scram-sha-256\n" + FileOrEmpty(hba_path),
                              0600)
                  .ok());
  ASSERT_EQ(::chown(hba_path.c_str(), UidOf(a.pg->os_user()), static_cast<gid_t>(-1)), 0);
  ASSERT_TRUE(a.pg->Exec("SELECT pg_reload_conf()").ok());

  EngineConfig config = a.config;
  config.user = "agent";
  config.password_file = Secret(a.pg->dir(), "agent.pw", "Agent-Pw-42");
  std::unique_ptr<Engine> good = EngineOrDie(config);
  ASSERT_TRUE(good);
  EXPECT_TRUE(th::PollUntil([&] { return good->Observe().ok(); }, seconds(10)));
  EXPECT_TRUE(ObserveOrDie(*good).writable);

  config.password_file = Secret(a.pg->dir(), "wrong.pw", "Not-The-Pw-17");
  std::unique_ptr<Engine> bad = EngineOrDie(config);
  ASSERT_TRUE(bad);
  absl::StatusOr<EngineFacts> refused = bad->Observe();
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("refuses the agent's login as agent"),
            std::string::npos)
      << refused.status();
  EXPECT_EQ(refused.status().message().find("Not-The-Pw-17"), std::string::npos);
  EXPECT_EQ(refused.status().message().find("Agent-Pw-42"), std::string::npos);
}

}  // namespace
}  // namespace tandem

// Integration tests of the MySQL engine against real MariaDB servers started
// by the harness on free loopback ports in temp dirs
// (tests/harness/mysql_server.h). The slave side gets the master's backup
// through an in-process BackupSource that calls the master engine's
// StreamBackup (the agent does the same over gRPC, agent/transfer_*.h).
#include "engines/mysql/mysql_engine.h"

#include <glob.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"
#include "tests/harness/mysql_server.h"

namespace tandem {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::MysqlServer;
using testing::MysqlServerOptions;
using testing::PollUntil;

constexpr char kReplicationPassword[] = "Repl-S3cret-4711";
constexpr char kAppPassword[] = "app-pw";

#define ASSERT_OK(expr)                            \
  do {                                             \
    const absl::Status _st = (expr);               \
    ASSERT_TRUE(_st.ok()) << #expr << ": " << _st; \
  } while (0)

std::vector<std::string> Glob(const std::string& pattern) {
  glob_t g{};
  std::vector<std::string> out;
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  return out;
}

// The slave's source: the master engine's StreamBackup, called directly.
// Optionally breaks the stream after `fail_after` bytes, and runs
// `after_stream` once a stream has been delivered.
class DirectSource : public BackupSource {
 public:
  explicit DirectSource(Engine* master) : master_(master) {}

  absl::Status Fetch(const Peer& upstream, const std::string& self_id,
                     const BackupSink& sink) override {
    (void)upstream;
    ++fetches;
    uint64_t sent = 0;
    absl::Status st =
        master_->StreamBackup(self_id, [&](std::string_view chunk, uint64_t total) -> absl::Status {
          if (fail_after >= 0 && sent + chunk.size() > static_cast<uint64_t>(fail_after)) {
            return absl::UnavailableError("injected: the transfer link broke");
          }
          sent += chunk.size();
          return sink(chunk, total);
        });
    if (st.ok() && after_stream) after_stream();
    return st;
  }

  std::atomic<int> fetches{0};
  int64_t fail_after = -1;
  std::function<void()> after_stream;

 private:
  Engine* master_;
};

class MysqlEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    password_file_ = dir_.Sub("repl.pw");
    ASSERT_OK(WriteFileAtomic(password_file_, std::string(kReplicationPassword) + "\n", 0600));
  }

  std::unique_ptr<MysqlServer> Server(const std::string& name, uint32_t server_id,
                                      bool log_bin = true) {
    MysqlServerOptions options;
    options.name = name;
    options.server_id = server_id;
    options.log_bin = log_bin;
    absl::StatusOr<std::unique_ptr<MysqlServer>> s = MysqlServer::Create(options);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  EngineConfig ConfigFor(const MysqlServer& server) const {
    EngineConfig c;
    c.type = EngineType::kMysql;
    c.host = "127.0.0.1";
    c.port = server.port();
    c.data_dir = server.data_dir();
    c.user = "root";
    c.os_user = server.os_user();
    c.server_args = server.server_args();
    c.replication_password_file = password_file_;
    c.timeout_seconds = 60;
    return c;
  }

  std::unique_ptr<Engine> MustEngine(const EngineConfig& config, BackupSource* source = nullptr) {
    absl::StatusOr<std::unique_ptr<Engine>> e = MakeMysqlEngine(config, source);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  }

  static Peer PeerOf(const std::string& id, const MysqlServer& s) {
    return Peer{id, "main", "127.0.0.1", s.port(), /*transfer_port=*/1};
  }

  static int64_t Count(const MysqlServer& s, const std::string& table) {
    absl::StatusOr<std::string> v = s.Value("SELECT COUNT(*) FROM " + table);
    return v.ok() ? std::stoll(*v) : -1;
  }

  static bool HasRows(const MysqlServer& s, const std::string& table, int64_t rows) {
    return PollUntil([&] { return Count(s, table) == rows; }, seconds(30), milliseconds(10));
  }

  static void Fill(const MysqlServer& s, int rows) {
    ASSERT_OK(s.Exec("CREATE DATABASE IF NOT EXISTS app"));
    ASSERT_OK(s.Exec("CREATE TABLE IF NOT EXISTS app.t (id INT AUTO_INCREMENT PRIMARY KEY, "
                     "v VARCHAR(100)) ENGINE=InnoDB"));
    ASSERT_OK(s.Exec(absl::StrCat("INSERT INTO app.t (v) SELECT CONCAT('row ', seq) FROM app.seq_1_to_",
                                  rows)));
  }

  static void AddAppUser(const MysqlServer& s) {
    ASSERT_OK(s.Exec(absl::StrCat("CREATE USER IF NOT EXISTS 'app'@'127.0.0.1' IDENTIFIED BY '",
                                  kAppPassword, "'")));
    ASSERT_OK(s.Exec("GRANT SELECT, INSERT, UPDATE, DELETE ON app.* TO 'app'@'127.0.0.1'"));
  }

  static EngineFacts MustObserve(Engine& e) {
    absl::StatusOr<EngineFacts> f = e.Observe();
    EXPECT_TRUE(f.ok()) << f.status();
    return f.ok() ? *f : EngineFacts{};
  }

  static bool Streaming(Engine& e) {
    return PollUntil(
        [&] {
          absl::StatusOr<EngineFacts> f = e.Observe();
          return f.ok() && f->streaming;
        },
        seconds(30));
  }

  testing::TempDir dir_{"tmye"};
  std::string password_file_;
};

TEST_F(MysqlEngineTest, ObserveStartStopAndTheReadOnlyStart) {
  std::unique_ptr<MysqlServer> s = Server("db1", 1);
  ASSERT_NE(s, nullptr);
  Fill(*s, 100);
  std::unique_ptr<Engine> e = MustEngine(ConfigFor(*s));
  ASSERT_NE(e, nullptr);

  EngineFacts f = MustObserve(*e);
  EXPECT_TRUE(f.running);
  EXPECT_TRUE(f.has_data);
  EXPECT_TRUE(f.writable);
  EXPECT_FALSE(f.is_slave);
  EXPECT_FALSE(f.streaming);
  EXPECT_GT(f.data_bytes, 1000000u);
  EXPECT_TRUE(absl::StartsWith(f.position, "0-1-")) << f.position;
  EXPECT_TRUE(f.served_slaves.empty());

  ASSERT_OK(e->Stop());
  ASSERT_OK(e->Stop());  // idempotent
  EXPECT_FALSE(s->Answers());
  f = MustObserve(*e);
  EXPECT_FALSE(f.running);
  EXPECT_TRUE(f.has_data);
  EXPECT_FALSE(f.is_slave);
  EXPECT_GT(f.data_bytes, 1000000u);

  // The engine's own start always comes up read-only: a restarted node is
  // not a writer until the agent says so.
  ASSERT_OK(e->Start());
  ASSERT_OK(e->Start());
  f = MustObserve(*e);
  EXPECT_TRUE(f.running);
  EXPECT_FALSE(f.writable);
  EXPECT_EQ(Count(*s, "app.t"), 100);
  ASSERT_OK(e->MakeWritable());
  EXPECT_TRUE(MustObserve(*e).writable);

  // A statement that carries a secret never gets it back in an error.
  MysqlLogin login;
  login.port = s->port();
  login.user = "root";
  absl::StatusOr<std::unique_ptr<MysqlClient>> c = MysqlClient::Connect(login, seconds(5));
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string secret = "it's-S3cret";
  absl::Status bad = (*c)->Exec("testing", "SELEC " + (*c)->Quote(secret), secret);
  EXPECT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.message(), "****")) << bad;
  EXPECT_FALSE(absl::StrContains(bad.message(), "S3cret")) << bad;
}

TEST_F(MysqlEngineTest, FenceRefusesApplicationWritesUntilMadeWritable) {
  std::unique_ptr<MysqlServer> s = Server("db1", 1);
  ASSERT_NE(s, nullptr);
  Fill(*s, 10);
  AddAppUser(*s);
  std::unique_ptr<Engine> e = MustEngine(ConfigFor(*s));
  ASSERT_NE(e, nullptr);
  ASSERT_OK(s->ExecAs("app", kAppPassword, "INSERT INTO app.t (v) VALUES ('before')"));

  ASSERT_OK(e->Fence());
  ASSERT_OK(e->Fence());
  EXPECT_FALSE(MustObserve(*e).writable);
  absl::Status refused = s->ExecAs("app", kAppPassword, "INSERT INTO app.t (v) VALUES ('fenced')");
  EXPECT_FALSE(refused.ok());
  EXPECT_TRUE(absl::StrContains(refused.message(), "read-only")) << refused;
  EXPECT_EQ(*s->Value("SELECT @@global.read_only"), "1");

  ASSERT_OK(e->MakeWritable());
  ASSERT_OK(e->MakeWritable());
  EXPECT_TRUE(MustObserve(*e).writable);
  ASSERT_OK(s->ExecAs("app", kAppPassword, "INSERT INTO app.t (v) VALUES ('after')"));
  EXPECT_EQ(Count(*s, "app.t"), 12);
}

TEST_F(MysqlEngineTest, ServeSlavesNeedsTheBinlogAndRestartsOnlyWhenAllowed) {
  std::unique_ptr<MysqlServer> s = Server("db1", 1, /*log_bin=*/false);
  ASSERT_NE(s, nullptr);
  EngineConfig config = ConfigFor(*s);
  std::unique_ptr<Engine> e = MustEngine(config);
  ASSERT_NE(e, nullptr);
  const std::vector<Peer> slaves = {Peer{"db2", "main", "127.0.0.2", 3306},
                                    Peer{"db3", "main", "127.0.0.3", 3306}};

  absl::Status refused = e->ServeSlaves(slaves);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "log_bin is OFF")) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "allow_restart")) << refused;
  EXPECT_EQ(*s->Value("SELECT COUNT(*) FROM mysql.user WHERE User = 'tandem_repl'"), "0");
  EXPECT_TRUE(MustObserve(*e).served_slaves.empty());

  config.allow_restart = true;
  std::unique_ptr<Engine> restartable = MustEngine(config);
  ASSERT_NE(restartable, nullptr);
  ASSERT_OK(restartable->ServeSlaves(slaves));
  EXPECT_EQ(*s->Value("SELECT @@log_bin"), "1");
  EXPECT_TRUE(MustObserve(*restartable).writable) << "writable before the restart, and after";
  EXPECT_EQ(MustObserve(*restartable).served_slaves, (std::vector<std::string>{"db2", "db3"}));
  // One account per slave host, with REPLICATION SLAVE only and no password
  // in clear.
  absl::StatusOr<MysqlResult> grants = s->Query("SHOW GRANTS FOR 'tandem_repl'@'127.0.0.2'");
  ASSERT_TRUE(grants.ok()) << grants.status();
  ASSERT_EQ(grants->rows.size(), 1u);
  const std::string grant = grants->rows[0][0].value_or("");
  EXPECT_TRUE(absl::StartsWith(grant, "GRANT REPLICATION SLAVE ON *.* TO")) << grant;
  EXPECT_FALSE(absl::StrContains(grant, kReplicationPassword)) << grant;
  EXPECT_EQ(*s->Value("SELECT authentication_string FROM mysql.user WHERE User = 'tandem_repl' "
                      "AND Host = '127.0.0.3'"),
            *s->Value(absl::StrCat("SELECT PASSWORD('", kReplicationPassword, "')")));

  // Never a passwordless replication account: without the password file
  // the request is refused and nothing changes.
  EngineConfig no_password = config;
  no_password.replication_password_file.clear();
  std::unique_ptr<Engine> passwordless = MustEngine(no_password);
  ASSERT_NE(passwordless, nullptr);
  absl::Status no_pw = passwordless->ServeSlaves({Peer{"db4", "main", "127.0.0.4", 3306}});
  EXPECT_TRUE(absl::IsFailedPrecondition(no_pw)) << no_pw;
  EXPECT_TRUE(absl::StrContains(no_pw.message(), "engine.replication_password_file is not set"))
      << no_pw;
  EXPECT_EQ(*s->Value("SELECT COUNT(*) FROM mysql.user WHERE User = 'tandem_repl' AND "
                      "Host = '127.0.0.4'"),
            "0");

  // Scale down to one, then none: the departed hosts lose their account.
  ASSERT_OK(restartable->ServeSlaves({slaves[0]}));
  ASSERT_OK(restartable->ServeSlaves({slaves[0]}));
  EXPECT_EQ(MustObserve(*restartable).served_slaves, (std::vector<std::string>{"db2"}));
  EXPECT_EQ(*s->Value("SELECT COUNT(*) FROM mysql.user WHERE User = 'tandem_repl'"), "1");
  ASSERT_OK(restartable->ServeSlaves({}));
  EXPECT_TRUE(MustObserve(*restartable).served_slaves.empty());
  EXPECT_EQ(*s->Value("SELECT COUNT(*) FROM mysql.user WHERE User = 'tandem_repl'"), "0");
}

TEST_F(MysqlEngineTest, PhysicalSeedReplicatesThenStandsAloneWithItsData) {
  std::unique_ptr<MysqlServer> m = Server("db1", 1);
  std::unique_ptr<MysqlServer> s = Server("db2", 2);
  ASSERT_NE(m, nullptr);
  ASSERT_NE(s, nullptr);
  Fill(*m, 20000);
  AddAppUser(*m);
  ASSERT_OK(s->Exec("CREATE DATABASE own"));
  ASSERT_OK(s->Exec("CREATE TABLE own.x (i INT)"));
  std::unique_ptr<Engine> master = MustEngine(ConfigFor(*m));
  std::unique_ptr<Engine> master_transfer = MustEngine(ConfigFor(*m));
  DirectSource source(master_transfer.get());
  std::unique_ptr<Engine> slave = MustEngine(ConfigFor(*s), &source);
  ASSERT_NE(slave, nullptr);
  ASSERT_OK(master->ServeSlaves({PeerOf("db2", *s)}));

  // What a master's agent killed mid-backup left behind goes with the next one.
  ASSERT_OK(MakeDirs(m->dir() + "/.tandem-db1.backup-stale"));
  ASSERT_OK(WriteFileAtomic(m->dir() + "/.tandem-db1.backup-stale/client.cnf", "x", 0600));

  ASSERT_OK(slave->Fence());
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  absl::StatusOr<std::string> data_id = slave->Bootstrap(
      PeerOf("db2", *s), PeerOf("db1", *m),
      [&](uint64_t done, uint64_t total) { progress.emplace_back(done, total); });
  ASSERT_TRUE(data_id.ok()) << data_id.status();
  EXPECT_EQ(*data_id, "");
  ASSERT_FALSE(progress.empty());
  EXPECT_GT(progress.back().first, 1000000u);
  EXPECT_EQ(progress.back().first, progress.back().second);
  EXPECT_EQ(source.fetches, 1);

  // The old data directory was moved aside with the slave's own table.
  std::vector<std::string> aside = Glob(s->data_dir() + kMysqlOldDirInfix + "*");
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_TRUE(PathExists(aside[0] + "/own"));
  EXPECT_FALSE(PathExists(s->data_dir() + kMysqlSideDirSuffix));
  EXPECT_FALSE(PathExists(s->data_dir() + "/" + kMysqlSeedMarkerFile));
  EXPECT_TRUE(Glob(m->dir() + "/.tandem-*.backup-*").empty()) << "the master's work dirs are gone";

  EXPECT_TRUE(Streaming(*slave));
  EngineFacts f = MustObserve(*slave);
  EXPECT_TRUE(f.is_slave);
  EXPECT_FALSE(f.writable);
  EXPECT_EQ(f.upstream, absl::StrCat("127.0.0.1:", m->port()));
  EXPECT_GE(f.lag_seconds, 0);
  EXPECT_EQ(Count(*s, "app.t"), 20000);
  ASSERT_OK(m->Exec("INSERT INTO app.t (v) VALUES ('after the seed')"));
  EXPECT_TRUE(HasRows(*s, "app.t", 20001));
  absl::Status refused = s->ExecAs("app", kAppPassword, "INSERT INTO app.t (v) VALUES ('slave')");
  EXPECT_TRUE(absl::StrContains(refused.message(), "read-only")) << refused;

  // Follow and Bootstrap's goal hold: nothing to do.
  ASSERT_OK(slave->Follow(PeerOf("db2", *s), PeerOf("db1", *m)));
  EXPECT_EQ(MustObserve(*master).served_slaves, std::vector<std::string>{"db2"});

  // Standalone: replication ends, everything received is kept, writable.
  ASSERT_OK(m->Exec("INSERT INTO app.t (v) VALUES ('last')"));
  EXPECT_TRUE(HasRows(*s, "app.t", 20002));
  ASSERT_OK(slave->MakeWritable());
  ASSERT_OK(slave->MakeWritable());
  f = MustObserve(*slave);
  EXPECT_FALSE(f.is_slave);
  EXPECT_TRUE(f.writable);
  EXPECT_EQ(Count(*s, "app.t"), 20002);
  ASSERT_OK(s->ExecAs("app", kAppPassword, "INSERT INTO app.t (v) VALUES ('own')"));
  EXPECT_EQ(*s->Value("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name='own'"),
            "0");
}

TEST_F(MysqlEngineTest, LogicalSeedWithMariadbDump) {
  std::unique_ptr<MysqlServer> m = Server("db1", 1);
  std::unique_ptr<MysqlServer> s = Server("db2", 2);
  ASSERT_NE(m, nullptr);
  ASSERT_NE(s, nullptr);
  Fill(*m, 5000);
  EngineConfig master_config = ConfigFor(*m);
  master_config.seed_method = "dump";
  std::unique_ptr<Engine> master = MustEngine(master_config);
  std::unique_ptr<Engine> master_transfer = MustEngine(master_config);
  DirectSource source(master_transfer.get());
  std::unique_ptr<Engine> slave = MustEngine(ConfigFor(*s), &source);
  ASSERT_NE(slave, nullptr);
  ASSERT_OK(master->ServeSlaves({PeerOf("db2", *s)}));
  ASSERT_OK(m->Exec("INSERT INTO app.t (v) VALUES ('just before')"));

  absl::StatusOr<std::string> data_id = slave->Bootstrap(PeerOf("db2", *s), PeerOf("db1", *m), nullptr);
  ASSERT_TRUE(data_id.ok()) << data_id.status();
  EXPECT_TRUE(Streaming(*slave));
  EXPECT_EQ(Count(*s, "app.t"), 5001);
  ASSERT_OK(m->Exec("INSERT INTO app.t (v) VALUES ('after the dump')"));
  EXPECT_TRUE(HasRows(*s, "app.t", 5002));
  // The load wrote nothing of its own into the slave's binary log.
  EXPECT_FALSE(absl::StrContains(*s->Value("SELECT @@gtid_binlog_state"), "0-2-"));
}

TEST_F(MysqlEngineTest, BrokenStreamLeavesTheSlaveUntouchedAndAResumeSkipsTheCopy) {
  std::unique_ptr<MysqlServer> m = Server("db1", 1);
  std::unique_ptr<MysqlServer> s = Server("db2", 2);
  ASSERT_NE(m, nullptr);
  ASSERT_NE(s, nullptr);
  Fill(*m, 20000);
  ASSERT_OK(s->Exec("CREATE DATABASE own"));
  std::unique_ptr<Engine> master = MustEngine(ConfigFor(*m));
  std::unique_ptr<Engine> master_transfer = MustEngine(ConfigFor(*m));
  DirectSource source(master_transfer.get());
  std::unique_ptr<Engine> slave = MustEngine(ConfigFor(*s), &source);
  ASSERT_NE(slave, nullptr);
  ASSERT_OK(master->ServeSlaves({PeerOf("db2", *s)}));

  // 1. The link breaks in the middle of the stream.
  source.fail_after = 300000;
  absl::StatusOr<std::string> broken = slave->Bootstrap(PeerOf("db2", *s), PeerOf("db1", *m), nullptr);
  EXPECT_TRUE(absl::IsUnavailable(broken.status())) << broken.status();
  EXPECT_TRUE(absl::StrContains(broken.status().message(), "injected")) << broken.status();
  EXPECT_TRUE(Glob(s->data_dir() + kMysqlOldDirInfix + "*").empty());
  EXPECT_FALSE(PathExists(s->data_dir() + kMysqlSideDirSuffix));
  EXPECT_TRUE(PathExists(s->data_dir() + "/own"));
  EXPECT_TRUE(MustObserve(*slave).writable) << "nothing changed on the slave";
  EXPECT_TRUE(Glob(m->dir() + "/.tandem-*.backup-*").empty()) << "the master cleaned up";

  // 2. The copy is swapped in, but the master refuses the slave before the
  // replication is set up (as if the agent died right after the swap).
  source.fail_after = -1;
  source.after_stream = [&] { ASSERT_OK(master->ServeSlaves({})); };
  absl::StatusOr<std::string> cut = slave->Bootstrap(PeerOf("db2", *s), PeerOf("db1", *m), nullptr);
  EXPECT_TRUE(absl::IsUnavailable(cut.status())) << cut.status();
  EXPECT_EQ(source.fetches, 2);
  EXPECT_TRUE(PathExists(s->data_dir() + "/" + kMysqlSeedMarkerFile));
  EngineFacts f = MustObserve(*slave);
  EXPECT_TRUE(f.is_slave) << "a seeded copy is a slave-to-be";
  EXPECT_FALSE(f.writable);
  EXPECT_FALSE(f.streaming);
  EXPECT_EQ(f.upstream, absl::StrCat("127.0.0.1:", m->port()));
  EXPECT_EQ(Glob(s->data_dir() + kMysqlOldDirInfix + "*").size(), 1u);

  // 3. Once the master serves it again, the next Bootstrap finishes without
  // a new copy.
  source.after_stream = nullptr;
  ASSERT_OK(master->ServeSlaves({PeerOf("db2", *s)}));
  ASSERT_OK(m->Exec("INSERT INTO app.t (v) VALUES ('meanwhile')"));
  absl::StatusOr<std::string> resumed = slave->Bootstrap(PeerOf("db2", *s), PeerOf("db1", *m), nullptr);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(source.fetches, 2) << "no second copy";
  EXPECT_FALSE(PathExists(s->data_dir() + "/" + kMysqlSeedMarkerFile));
  EXPECT_TRUE(Streaming(*slave));
  EXPECT_TRUE(HasRows(*s, "app.t", 20001));
  EXPECT_EQ(Glob(s->data_dir() + kMysqlOldDirInfix + "*").size(), 1u);
}

TEST_F(MysqlEngineTest, SameServerIdIsRefusedBeforeAnythingChanges) {
  std::unique_ptr<MysqlServer> m = Server("db1", 7);
  std::unique_ptr<MysqlServer> s = Server("db2", 7);
  ASSERT_NE(m, nullptr);
  ASSERT_NE(s, nullptr);
  ASSERT_OK(s->Exec("CREATE DATABASE own"));
  std::unique_ptr<Engine> master = MustEngine(ConfigFor(*m));
  std::unique_ptr<Engine> master_transfer = MustEngine(ConfigFor(*m));
  DirectSource source(master_transfer.get());
  std::unique_ptr<Engine> slave = MustEngine(ConfigFor(*s), &source);
  ASSERT_NE(slave, nullptr);
  ASSERT_OK(master->ServeSlaves({PeerOf("db2", *s)}));
  absl::StatusOr<std::string> refused = slave->Bootstrap(PeerOf("db2", *s), PeerOf("db1", *m), nullptr);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "server_id 7")) << refused.status();
  EXPECT_EQ(source.fetches, 0);
  EXPECT_TRUE(PathExists(s->data_dir() + "/own"));
}

TEST_F(MysqlEngineTest, RepointingRefusesErrantTransactionsAndFollowsACleanMaster) {
  std::unique_ptr<MysqlServer> m = Server("db1", 1);
  std::unique_ptr<MysqlServer> s2 = Server("db2", 2);
  std::unique_ptr<MysqlServer> s3 = Server("db3", 3);
  ASSERT_NE(m, nullptr);
  ASSERT_NE(s2, nullptr);
  ASSERT_NE(s3, nullptr);
  Fill(*m, 1000);
  std::unique_ptr<Engine> master = MustEngine(ConfigFor(*m));
  std::unique_ptr<Engine> master_transfer = MustEngine(ConfigFor(*m));
  DirectSource source(master_transfer.get());
  std::unique_ptr<Engine> e2 = MustEngine(ConfigFor(*s2), &source);
  std::unique_ptr<Engine> e3 = MustEngine(ConfigFor(*s3), &source);
  ASSERT_NE(e2, nullptr);
  ASSERT_NE(e3, nullptr);
  ASSERT_OK(master->ServeSlaves({PeerOf("db2", *s2), PeerOf("db3", *s3)}));
  ASSERT_TRUE(e2->Bootstrap(PeerOf("db2", *s2), PeerOf("db1", *m), nullptr).ok());
  ASSERT_TRUE(e3->Bootstrap(PeerOf("db3", *s3), PeerOf("db1", *m), nullptr).ok());
  ASSERT_OK(m->Exec("INSERT INTO app.t (v) VALUES ('both have it')"));
  ASSERT_TRUE(HasRows(*s2, "app.t", 1001));
  ASSERT_TRUE(HasRows(*s3, "app.t", 1001));

  // db2 is promoted (fencing db1 first) and serves db3; db3 follows it.
  ASSERT_OK(master->Fence());
  ASSERT_OK(e2->MakeWritable());
  ASSERT_OK(e2->ServeSlaves({PeerOf("db3", *s3)}));
  ASSERT_OK(e3->Follow(PeerOf("db3", *s3), PeerOf("db2", *s2)));
  EXPECT_TRUE(Streaming(*e3));
  EXPECT_EQ(MustObserve(*e3).upstream, absl::StrCat("127.0.0.1:", s2->port()));
  ASSERT_OK(s2->Exec("INSERT INTO app.t (v) VALUES ('from the new master')"));
  EXPECT_TRUE(HasRows(*s3, "app.t", 1002));

  // A transaction written on db3 itself, which db1 never saw: pointing db3
  // back at db1 would diverge silently, so it is refused and named.
  ASSERT_OK(s3->Exec("INSERT INTO app.t (v) VALUES ('errant')"));
  const std::string state = *s3->Value("SELECT @@gtid_binlog_state");
  ASSERT_TRUE(absl::StrContains(state, "0-3-")) << state;
  absl::Status refused = e3->Follow(PeerOf("db3", *s3), PeerOf("db1", *m));
  EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "errant")) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "0-3-")) << refused;
  EXPECT_EQ(MustObserve(*e3).upstream, absl::StrCat("127.0.0.1:", s2->port())) << "unchanged";

  // The next write of db2 clashes with db3's own: db3's replication stops,
  // and Observe says why.
  ASSERT_OK(s2->Exec("INSERT INTO app.t (v) VALUES ('clash')"));
  EngineFacts broken;
  EXPECT_TRUE(PollUntil(
      [&] {
        broken = MustObserve(*e3);
        // The error can show a moment before the thread reports stopping.
        return !broken.link_error.empty() && !broken.streaming;
      },
      seconds(30)));
  EXPECT_FALSE(broken.streaming);
  EXPECT_TRUE(absl::StrContains(broken.link_error, "SQL thread")) << broken.link_error;
}

// The switchover as the agents run it: the old master is fenced (its
// client sessions end, the position it stopped at is reported), the slave
// being promoted replays up to that position and becomes writable, and the
// old master and the other slave rejoin it by GTID, without a copy.
TEST_F(MysqlEngineTest, FencedSwitchoverRejoinsTheOldMasterAndTheOtherSlaveByGtid) {
  std::unique_ptr<MysqlServer> m = Server("db1", 1);
  std::unique_ptr<MysqlServer> s2 = Server("db2", 2);
  std::unique_ptr<MysqlServer> s3 = Server("db3", 3);
  ASSERT_NE(m, nullptr);
  ASSERT_NE(s2, nullptr);
  ASSERT_NE(s3, nullptr);
  Fill(*m, 1000);
  AddAppUser(*m);
  std::unique_ptr<Engine> master = MustEngine(ConfigFor(*m));
  std::unique_ptr<Engine> master_transfer = MustEngine(ConfigFor(*m));
  DirectSource source(master_transfer.get());
  std::unique_ptr<Engine> e2 = MustEngine(ConfigFor(*s2), &source);
  std::unique_ptr<Engine> e3 = MustEngine(ConfigFor(*s3), &source);
  ASSERT_NE(e2, nullptr);
  ASSERT_NE(e3, nullptr);
  const Peer p1 = PeerOf("db1", *m), p2 = PeerOf("db2", *s2), p3 = PeerOf("db3", *s3);
  ASSERT_OK(master->ServeSlaves({p2, p3}));
  ASSERT_TRUE(e2->Bootstrap(p2, p1, nullptr).ok());
  ASSERT_TRUE(e3->Bootstrap(p3, p1, nullptr).ok());
  ASSERT_OK(m->Exec("INSERT INTO app.t (v) VALUES ('replicated to both')"));
  ASSERT_TRUE(HasRows(*s2, "app.t", 1001));
  ASSERT_TRUE(HasRows(*s3, "app.t", 1001));

  // 1. Fence: read-only, client sessions ended, replication kept, and the
  // position it stopped at reported.
  MysqlLogin app;
  app.port = m->port();
  app.user = "app";
  app.password = kAppPassword;
  absl::StatusOr<std::unique_ptr<MysqlClient>> session = MysqlClient::Connect(app, seconds(10));
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_OK((*session)->Exec("writing before the fence", "INSERT INTO app.t (v) VALUES ('before')"));
  ASSERT_OK(master->Fence());
  ASSERT_OK(master->Fence());
  absl::Status ended = (*session)->Exec("writing after the fence", "SELECT 1");
  EXPECT_TRUE(absl::IsUnavailable(ended)) << "the application's session was ended: " << ended;
  absl::Status refused = m->ExecAs("app", kAppPassword, "INSERT INTO app.t (v) VALUES ('fenced')");
  EXPECT_TRUE(absl::StrContains(refused.message(), "read-only")) << refused;
  EngineFacts fenced = MustObserve(*master);
  EXPECT_FALSE(fenced.writable);
  EXPECT_FALSE(fenced.is_slave);
  const std::string position = fenced.position;
  EXPECT_EQ(position, *m->Value("SELECT @@gtid_binlog_pos"));
  EXPECT_TRUE(Streaming(*e2)) << "the slaves keep streaming from a fenced master";
  EXPECT_TRUE(Streaming(*e3));

  // 2. The old master cannot rejoin db2 while db2 is not the writable master
  // yet (its own last transactions would look errant): nothing changes.
  EngineConfig impatient = ConfigFor(*m);
  impatient.timeout_seconds = 1;
  std::unique_ptr<Engine> early = MustEngine(impatient);
  absl::StatusOr<std::string> too_early = early->Rejoin(p1, p2);
  EXPECT_TRUE(absl::IsUnavailable(too_early.status())) << too_early.status();
  EXPECT_TRUE(absl::StrContains(too_early.status().message(), "read-only")) << too_early.status();
  EXPECT_FALSE(MustObserve(*master).is_slave);

  // 3. db2 replays up to the position and takes over.
  EXPECT_TRUE(PollUntil(
      [&] {
        absl::StatusOr<bool> replayed = e2->HasReplayed(position);
        return replayed.ok() && *replayed;
      },
      seconds(30)));
  absl::StatusOr<bool> bad = e2->HasReplayed("not-a-gtid");
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();
  ASSERT_OK(e2->MakeWritable());
  ASSERT_OK(e2->ServeSlaves({p1, p3}));

  // 4. db1 and db3 rejoin db2 by GTID; a second call changes nothing.
  absl::StatusOr<std::string> rejoined = master->Rejoin(p1, p2);
  ASSERT_TRUE(rejoined.ok()) << rejoined.status();
  EXPECT_EQ(*rejoined, "");
  absl::StatusOr<std::string> rejoined3 = e3->Rejoin(p3, p2);
  ASSERT_TRUE(rejoined3.ok()) << rejoined3.status();
  ASSERT_TRUE(master->Rejoin(p1, p2).ok());
  ASSERT_OK(s2->ExecAs("app", kAppPassword, "INSERT INTO app.t (v) VALUES ('from the new master')"));
  EXPECT_TRUE(HasRows(*m, "app.t", 1003));
  EXPECT_TRUE(HasRows(*s3, "app.t", 1003));
  for (Engine* e : {master.get(), e3.get()}) {
    EngineFacts f = MustObserve(*e);
    EXPECT_TRUE(f.is_slave);
    EXPECT_TRUE(f.streaming);
    EXPECT_FALSE(f.writable);
    EXPECT_EQ(f.upstream, absl::StrCat("127.0.0.1:", s2->port()));
    EXPECT_EQ(f.out_of_sync, "") << "the old master's own transactions are db2's too";
  }
  EXPECT_TRUE(Glob(m->data_dir() + kMysqlOldDirInfix + "*").empty()) << "no copy was made";
  EXPECT_EQ(Glob(s3->data_dir() + kMysqlOldDirInfix + "*").size(), 1u) << "only its first seed";
  EXPECT_EQ(source.fetches, 2);
  EXPECT_TRUE(MustObserve(*e2).writable);
}

// A slave that cannot follow its master by itself says why, and Rejoin
// refuses it (the caller then makes a full copy, which mends it).
TEST_F(MysqlEngineTest, OutOfSyncSlavesSayWhyAndRejoinRefusesThem) {
  std::unique_ptr<MysqlServer> m = Server("db1", 1);
  std::unique_ptr<MysqlServer> s = Server("db2", 2);
  ASSERT_NE(m, nullptr);
  ASSERT_NE(s, nullptr);
  Fill(*m, 1000);
  std::unique_ptr<Engine> master = MustEngine(ConfigFor(*m));
  std::unique_ptr<Engine> master_transfer = MustEngine(ConfigFor(*m));
  DirectSource source(master_transfer.get());
  std::unique_ptr<Engine> slave = MustEngine(ConfigFor(*s), &source);
  ASSERT_NE(slave, nullptr);
  const Peer p1 = PeerOf("db1", *m), p2 = PeerOf("db2", *s);
  ASSERT_OK(master->ServeSlaves({p2}));
  ASSERT_TRUE(slave->Bootstrap(p2, p1, nullptr).ok());
  ASSERT_TRUE(Streaming(*slave));
  EXPECT_EQ(MustObserve(*slave).out_of_sync, "");
  absl::StatusOr<std::string> in_sync = slave->Rejoin(p2, p1);
  EXPECT_TRUE(in_sync.ok()) << "a slave in sync rejoins as it is: " << in_sync.status();

  // 1. An errant transaction: root is not bound by read_only.
  ASSERT_OK(s->Exec("INSERT INTO app.t (id, v) VALUES (5000, 'written on the slave')"));
  EngineFacts f = MustObserve(*slave);
  EXPECT_TRUE(f.streaming) << "replication itself still runs";
  EXPECT_TRUE(absl::StrContains(f.out_of_sync, "errant GTIDs 0-2-")) << f.out_of_sync;
  absl::StatusOr<std::string> refused = slave->Rejoin(p2, p1);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "errant GTIDs 0-2-"))
      << refused.status();

  // 2. The master writes the same key: the slave's SQL thread stops.
  ASSERT_OK(m->Exec("INSERT INTO app.t (id, v) VALUES (5000, 'written on the master')"));
  EXPECT_TRUE(PollUntil(
      [&] {
        f = MustObserve(*slave);
        return absl::StrContains(f.out_of_sync, "SQL error");
      },
      seconds(30)))
      << f.out_of_sync;
  EXPECT_FALSE(f.streaming);

  // 3. A full copy mends it; the diverged data is moved aside.
  ASSERT_TRUE(slave->Bootstrap(p2, p1, nullptr).ok());
  EXPECT_TRUE(Streaming(*slave));
  EXPECT_EQ(MustObserve(*slave).out_of_sync, "");
  EXPECT_EQ(*s->Value("SELECT v FROM app.t WHERE id = 5000"), "written on the master");
  EXPECT_EQ(Glob(s->data_dir() + kMysqlOldDirInfix + "*").size(), 2u);

  // 4. The master purges binary logs the slave still needs.
  ASSERT_OK(s->Exec("STOP SLAVE"));
  // The master's dump thread notices the slave left only when it next
  // writes to it; until it ends, the file it reads cannot be purged.
  absl::StatusOr<MysqlResult> dumps =
      m->Query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'");
  ASSERT_TRUE(dumps.ok()) << dumps.status();
  for (size_t i = 0; i < dumps->rows.size(); ++i) {
    (void)m->Exec("KILL CONNECTION " + dumps->Get(i, "ID"));
  }
  ASSERT_OK(m->Exec("INSERT INTO app.t (v) VALUES ('while the slave was away')"));
  ASSERT_OK(m->Exec("FLUSH BINARY LOGS"));
  // A file is purged only once the storage engine no longer needs it for
  // crash recovery (the binlog checkpoint): try until it goes.
  EXPECT_TRUE(PollUntil(
      [&] {
        absl::StatusOr<MysqlResult> status = m->Query("SHOW MASTER STATUS");
        if (!status.ok()) return false;
        (void)m->Exec(absl::StrCat("PURGE BINARY LOGS TO '", status->Get(0, "File"), "'"));
        absl::StatusOr<MysqlResult> logs = m->Query("SHOW BINARY LOGS");
        return logs.ok() && logs->rows.size() == 1;
      },
      seconds(30), milliseconds(200)));
  ASSERT_OK(s->Exec("START SLAVE"));
  EXPECT_TRUE(PollUntil(
      [&] {
        f = MustObserve(*slave);
        return absl::StrContains(f.out_of_sync, "1236");
      },
      seconds(30)))
      << f.out_of_sync;
  absl::StatusOr<std::string> purged = slave->Rejoin(p2, p1);
  EXPECT_TRUE(absl::IsFailedPrecondition(purged.status())) << purged.status();
  EXPECT_TRUE(absl::StrContains(purged.status().message(), "1236")) << purged.status();
}

// Between stacks with tls_mode between-stacks: the slave replicates from
// the master's external address over TLS, verifying its certificate, and
// the master's account for it requires TLS.
TEST_F(MysqlEngineTest, ReplicationBetweenStacksUsesTls) {
  testing::TempDir tls_dir("tmytls");
  absl::StatusOr<testing::TestCertificates> tls = testing::MakeTestCertificates(
      tls_dir.path(), {"127.0.0.2", "127.0.0.3"}, testing::MysqlOsUser());
  ASSERT_TRUE(tls.ok()) << tls.status();
  MysqlServerOptions options;
  options.name = "db1";
  options.server_id = 1;
  options.extra_args = {"--bind-address=127.0.0.1,127.0.0.2", "--ssl-ca=" + tls->ca_file,
                        "--ssl-cert=" + tls->cert_file, "--ssl-key=" + tls->key_file,
                        "--performance-schema=ON"};
  absl::StatusOr<std::unique_ptr<MysqlServer>> created = MysqlServer::Create(options);
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<MysqlServer> m = *std::move(created);
  std::unique_ptr<MysqlServer> s = Server("db2", 2);
  ASSERT_NE(s, nullptr);
  Fill(*m, 100);
  auto between = [&](EngineConfig c, const std::string& stack) {
    c.stack = stack;
    c.tls_mode = "between-stacks";
    c.tls_ca_file = tls->ca_file;
    return c;
  };
  std::unique_ptr<Engine> master = MustEngine(between(ConfigFor(*m), "a"));
  std::unique_ptr<Engine> master_transfer = MustEngine(between(ConfigFor(*m), "a"));
  DirectSource source(master_transfer.get());
  std::unique_ptr<Engine> slave = MustEngine(between(ConfigFor(*s), "b"), &source);
  ASSERT_NE(master, nullptr);
  ASSERT_NE(slave, nullptr);
  const Peer master_from_b{"db1", "a", "127.0.0.2", m->port(), 1};
  const Peer slave_self{"db2", "b", "127.0.0.1", s->port(), 0};
  const Peer slave_from_a{"db2", "b", "127.0.0.3", s->port(), 0};

  ASSERT_OK(master->ServeSlaves({slave_from_a}));
  EXPECT_EQ(*m->Value("SELECT CONCAT(Host, ' ', ssl_type) FROM mysql.user "
                      "WHERE User = 'tandem_repl'"),
            "% ANY");
  EXPECT_EQ(MustObserve(*master).served_slaves, std::vector<std::string>{"db2"});
  // Without TLS the replication account is refused.
  MysqlLogin plain;
  plain.host = "127.0.0.2";
  plain.port = m->port();
  plain.user = "tandem_repl";
  plain.password = kReplicationPassword;
  EXPECT_FALSE(MysqlClient::Connect(plain, seconds(10)).ok());

  absl::StatusOr<std::string> seeded = slave->Bootstrap(slave_self, master_from_b, nullptr);
  ASSERT_TRUE(seeded.ok()) << seeded.status();
  ASSERT_TRUE(Streaming(*slave));
  EXPECT_EQ(MustObserve(*slave).upstream, absl::StrCat("127.0.0.2:", m->port()));
  absl::StatusOr<MysqlResult> rs = s->Query("SHOW SLAVE STATUS");
  ASSERT_TRUE(rs.ok()) << rs.status();
  EXPECT_EQ(rs->Get(0, "Master_SSL_Allowed"), "Yes");
  EXPECT_EQ(rs->Get(0, "Master_SSL_Verify_Server_Cert"), "Yes");
  EXPECT_EQ(rs->Get(0, "Master_SSL_CA_File"), tls->ca_file);
  // The master's binlog dump session for the slave is encrypted.
  absl::StatusOr<std::string> cipher = m->Value(
      "SELECT s.VARIABLE_VALUE FROM performance_schema.status_by_thread s "
      "JOIN performance_schema.threads t USING (THREAD_ID) "
      "JOIN information_schema.PROCESSLIST p ON p.ID = t.PROCESSLIST_ID "
      "WHERE s.VARIABLE_NAME = 'Ssl_cipher' AND p.COMMAND = 'Binlog Dump'");
  ASSERT_TRUE(cipher.ok()) << cipher.status();
  EXPECT_FALSE(cipher->empty());
  ASSERT_OK(m->Exec("INSERT INTO app.t (v) VALUES ('over TLS')"));
  EXPECT_TRUE(HasRows(*s, "app.t", 101));

  // A slave in the master's own stack keeps an account for its address,
  // without the TLS requirement.
  ASSERT_OK(master->ServeSlaves({slave_from_a, Peer{"db3", "a", "127.0.0.1", 1, 0}}));
  EXPECT_EQ(*m->Value("SELECT GROUP_CONCAT(CONCAT(Host, ' ', ssl_type) ORDER BY Host) "
                      "FROM mysql.user WHERE User = 'tandem_repl'"),
            "% ANY,127.0.0.1 ");
  EXPECT_EQ(MustObserve(*master).served_slaves, (std::vector<std::string>{"db2", "db3"}));
  EXPECT_TRUE(Streaming(*slave));
}

}  // namespace
}  // namespace tandem

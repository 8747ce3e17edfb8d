// Tests of the MySQL engine without a server: the pure helpers of
// mysql_text.h (dialect, GTIDs, files, seed stream), the configuration
// checks of MakeMysqlEngine, and the streaming subprocess.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "engines/mysql/mysql_engine.h"
#include "engines/mysql/mysql_text.h"
#include "engines/mysql/stream_process.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"

namespace tandem {
namespace {

using mysql::Dialect;
using mysql::Flavor;
using mysql::ServerVersion;
using testing::TempDir;

// ------------------------------------------------------------------ flavour

TEST(MysqlParseServerVersionTest, Table) {
  struct Case {
    std::string text;
    Flavor flavor;
    int major, minor, patch;
  };
  const std::vector<Case> cases = {
      {"10.11.19-MariaDB-0+deb12u1-log", Flavor::kMariadb, 10, 11, 19},
      {"5.5.5-10.6.12-MariaDB", Flavor::kMariadb, 10, 6, 12},
      {"11.4.2-MariaDB", Flavor::kMariadb, 11, 4, 2},
      {"8.0.36", Flavor::kMysql, 8, 0, 36},
      {"8.0.36-0ubuntu0.22.04.1", Flavor::kMysql, 8, 0, 36},
      {"8.4.0-log", Flavor::kMysql, 8, 4, 0},
      {"", Flavor::kMysql, 0, 0, 0},
  };
  for (const Case& c : cases) {
    ServerVersion v = mysql::ParseServerVersion(c.text);
    EXPECT_EQ(v.flavor, c.flavor) << c.text;
    EXPECT_EQ(v.major, c.major) << c.text;
    EXPECT_EQ(v.minor, c.minor) << c.text;
    EXPECT_EQ(v.patch, c.patch) << c.text;
  }
}

TEST(MysqlDialectTest, MariadbAndMysqlDifferWhereTheyShould) {
  const Dialect maria(mysql::ParseServerVersion("10.11.6-MariaDB"));
  const Dialect my80(mysql::ParseServerVersion("8.0.36"));
  const Dialect my57(mysql::ParseServerVersion("5.7.44"));
  EXPECT_EQ(maria.Name(), "MariaDB 10.11.6");
  EXPECT_EQ(my80.Name(), "MySQL 8.0.36");

  EXPECT_EQ(maria.ShowReplicaStatus(), "SHOW SLAVE STATUS");
  EXPECT_EQ(my80.ShowReplicaStatus(), "SHOW REPLICA STATUS");
  EXPECT_EQ(my57.ShowReplicaStatus(), "SHOW SLAVE STATUS");
  EXPECT_EQ(maria.Column("Slave_IO_Running"), "Slave_IO_Running");
  EXPECT_EQ(my80.Column("Slave_IO_Running"), "Replica_IO_Running");
  EXPECT_EQ(my80.Column("Seconds_Behind_Master"), "Seconds_Behind_Source");
  EXPECT_EQ(my80.Column("Relay_Master_Log_File"), "Relay_Source_Log_File");
  EXPECT_EQ(my80.Column("Gtid_IO_Pos"), "Retrieved_Gtid_Set");
  EXPECT_EQ(my57.Column("Master_Host"), "Master_Host");

  const std::string maria_change = maria.ChangeSource("'h'", 3307, "'u'", "'p'");
  EXPECT_TRUE(absl::StartsWith(maria_change, "CHANGE MASTER TO MASTER_HOST='h', MASTER_PORT=3307"));
  EXPECT_TRUE(absl::StrContains(maria_change, "MASTER_USE_GTID=slave_pos"));
  const std::string my_change = my80.ChangeSource("'h'", 3307, "'u'", "'p'");
  EXPECT_TRUE(absl::StartsWith(my_change, "CHANGE REPLICATION SOURCE TO SOURCE_HOST='h'"));
  EXPECT_TRUE(absl::StrContains(my_change, "SOURCE_AUTO_POSITION=1"));

  // TLS is always stated: CHANGE MASTER keeps what a statement leaves out.
  EXPECT_TRUE(absl::StrContains(maria_change, "MASTER_SSL=0")) << maria_change;
  mysql::SourceTls tls;
  tls.enabled = true;
  tls.ca_literal = "'/ca.pem'";
  const std::string maria_tls = maria.ChangeSource("'h'", 3307, "'u'", "'p'", tls);
  EXPECT_TRUE(absl::StrContains(maria_tls, "MASTER_SSL=1, MASTER_SSL_CA='/ca.pem', "
                                           "MASTER_SSL_VERIFY_SERVER_CERT=1"))
      << maria_tls;
  EXPECT_TRUE(absl::StrContains(maria_tls, "MASTER_SSL_CERT='', MASTER_SSL_KEY=''")) << maria_tls;
  tls.ca_literal = "'/ca'";
  tls.cert_literal = "'/c'";
  tls.key_literal = "'/k'";
  const std::string my_tls = my80.ChangeSource("'h'", 3307, "'u'", "'p'", tls);
  EXPECT_TRUE(absl::StrContains(my_tls, "SOURCE_SSL=1, SOURCE_SSL_CA='/ca', "
                                        "SOURCE_SSL_VERIFY_SERVER_CERT=1, SOURCE_SSL_CERT='/c', "
                                        "SOURCE_SSL_KEY='/k'"))
      << my_tls;

  EXPECT_EQ(maria.SetReadOnly(true), std::vector<std::string>{"SET GLOBAL read_only = ON"});
  EXPECT_EQ(my80.SetReadOnly(true), std::vector<std::string>{"SET GLOBAL super_read_only = ON"});
  EXPECT_EQ(my80.SetReadOnly(false).size(), 2u);
  EXPECT_EQ(maria.SeedPosition("'0-1-7'"),
            std::vector<std::string>{"SET GLOBAL gtid_slave_pos = '0-1-7'"});
  EXPECT_EQ(my80.SeedPosition("'x'").front(), "RESET MASTER");
  EXPECT_EQ(maria.StartReplica(), "START SLAVE");
  EXPECT_EQ(my80.StartReplica(), "START REPLICA");
  EXPECT_EQ(maria.ResetReplicaAll(), "RESET SLAVE ALL");
  EXPECT_EQ(my80.ResetReplicaAll(), "RESET REPLICA ALL");
  EXPECT_TRUE(absl::StrContains(maria.WaitApplied("'g'", 5), "MASTER_GTID_WAIT('g', 5)"));
  EXPECT_TRUE(absl::StrContains(my80.WaitApplied("'g'", 5), "WAIT_FOR_EXECUTED_GTID_SET"));
  EXPECT_EQ(maria.CreateUser("'r'@'h'", "'*AB'"), "CREATE USER 'r'@'h' IDENTIFIED BY PASSWORD '*AB'");
  EXPECT_TRUE(absl::StrContains(my80.CreateUser("'r'@'h'", "'*AB'"), "mysql_native_password AS"));
  EXPECT_EQ(maria.CreateUser("'r'@'h'", ""), "CREATE USER 'r'@'h'");
  EXPECT_TRUE(maria.SupportsSeeding());
  EXPECT_FALSE(my80.SupportsSeeding());
}

// ------------------------------------------------------------------ GTIDs

TEST(MysqlGtidTest, ParseState) {
  absl::StatusOr<mysql::GtidState> s = mysql::ParseGtidState("0-1-10, 0-2-3,1-1-5");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->size(), 3u);
  EXPECT_EQ((s->at({0, 1})), 10u);
  EXPECT_EQ((s->at({1, 1})), 5u);
  EXPECT_TRUE(mysql::ParseGtidState("")->empty());
  for (const char* bad : {"0-1", "a-b-c", "0-1-2-3", "0-1-x"}) {
    absl::StatusOr<mysql::GtidState> r = mysql::ParseGtidState(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_TRUE(absl::StrContains(r.status().message(), "GTID")) << r.status();
  }
}

TEST(MysqlGtidTest, ErrantTable) {
  struct Case {
    std::string local;
    std::string upstream;
    std::vector<std::string> errant;
  };
  const std::vector<Case> cases = {
      {"", "", {}},
      {"", "0-1-10", {}},
      {"0-1-10", "0-1-10", {}},
      {"0-1-9", "0-1-10", {}},                    // behind: fine
      {"0-1-11", "0-1-10", {"0-1-11"}},           // ahead of the master
      {"0-1-10,0-2-3", "0-1-12", {"0-2-3"}},      // a local write
      {"0-1-10,0-2-3", "0-1-12,0-2-3", {}},       // the master has it too
      {"0-1-10,1-2-4", "0-1-10", {"1-2-4"}},      // another domain
      {"0-3-1,0-1-5", "0-1-4", {"0-1-5", "0-3-1"}},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(mysql::ErrantGtids(*mysql::ParseGtidState(c.local), *mysql::ParseGtidState(c.upstream)),
              c.errant)
        << c.local << " vs " << c.upstream;
  }
}

TEST(MysqlGtidTest, MergeTakesTheLargerPerServer) {
  mysql::GtidState merged = mysql::MergeGtidStates(*mysql::ParseGtidState("0-1-10,0-2-3"),
                                                   *mysql::ParseGtidState("0-1-12,1-5-1"));
  EXPECT_EQ(merged, *mysql::ParseGtidState("0-1-12,0-2-3,1-5-1"));
  // A seeded master knows the seed position though its binary log is empty.
  EXPECT_TRUE(mysql::ErrantGtids(*mysql::ParseGtidState("0-1-100"),
                                 mysql::MergeGtidStates({}, *mysql::ParseGtidState("0-1-100")))
                  .empty());
}

TEST(MysqlGtidTest, PositionReachedTable) {
  struct Case {
    std::string local;
    std::string target;
    bool reached;
  };
  const std::vector<Case> cases = {
      {"0-1-10", "0-1-10", true},
      {"0-1-11", "0-1-10", true},
      {"0-1-9", "0-1-10", false},
      {"0-2-12", "0-1-10", true},   // a later GTID of the same domain
      {"0-1-10", "0-1-10,1-1-3", false},
      {"0-1-10,1-4-3", "0-1-10,1-1-3", true},
      {"", "", true},
      {"", "0-1-1", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(mysql::PositionReached(*mysql::ParseGtidState(c.local), *mysql::ParseGtidState(c.target)),
              c.reached)
        << c.local << " vs " << c.target;
  }
}

TEST(MysqlGtidTest, LatestPerDomainAndFormat) {
  struct Case {
    std::string a;
    std::string b;
    std::string latest;
  };
  const std::vector<Case> cases = {
      {"", "", ""},
      {"0-1-10", "", "0-1-10"},
      {"", "0-1-10", "0-1-10"},
      {"0-1-10", "0-2-12", "0-2-12"},   // a demoted master that replicated later
      {"0-1-12", "0-2-10", "0-1-12"},   // its own later writes
      {"0-1-10", "0-2-10", "0-1-10"},   // a tie: the first argument's
      {"0-1-10,1-1-4", "0-2-12,2-3-1", "0-2-12,1-1-4,2-3-1"},
      {"0-1-10,0-2-3", "", "0-1-10"},   // a state: one GTID per domain
  };
  for (const Case& c : cases) {
    EXPECT_EQ(mysql::FormatGtidState(mysql::LatestPerDomain(*mysql::ParseGtidState(c.a),
                                                            *mysql::ParseGtidState(c.b))),
              c.latest)
        << c.a << " / " << c.b;
  }
  EXPECT_EQ(mysql::FormatGtidState(*mysql::ParseGtidState("1-2-3,0-5-9")), "0-5-9,1-2-3");
}

TEST(MysqlGtidTest, LocalWritesTable) {
  struct Case {
    std::string binlog_pos;
    std::string slave_pos;
    uint32_t server_id;
    std::vector<std::string> writes;
  };
  const std::vector<Case> cases = {
      {"", "", 2, {}},
      {"", "0-1-100", 2, {}},                   // a fresh copy: nothing logged yet
      {"0-1-100", "0-1-100", 2, {}},            // in sync
      {"0-1-99", "0-1-100", 2, {}},             // log_slave_updates off: nothing own
      {"0-2-101", "0-1-100", 2, {"0-2-101"}},   // written on the slave
      {"0-2-101", "0-1-100", 3, {}},            // another server's: in flight
      {"0-1-100", "0-1-100", 1, {}},            // a demoted master, rejoined
      {"0-1-101", "0-1-100", 1, {"0-1-101"}},   // ... that wrote after its fence
      {"0-2-50", "0-1-100", 2, {}},             // an old write, before later replication
      {"0-1-100,5-2-1", "0-1-100", 2, {"5-2-1"}},  // a domain the master never had
  };
  for (const Case& c : cases) {
    EXPECT_EQ(mysql::LocalWrites(*mysql::ParseGtidState(c.binlog_pos),
                                 *mysql::ParseGtidState(c.slave_pos), c.server_id),
              c.writes)
        << c.binlog_pos << " / " << c.slave_pos << " / " << c.server_id;
  }
}

mysql::ReplicationHealth Health(bool sql_running, int sql_errno, std::string sql_error,
                                int io_errno, std::string io_error,
                                std::vector<std::string> local_writes = {}) {
  mysql::ReplicationHealth h;
  h.sql_running = sql_running;
  h.sql_errno = sql_errno;
  h.sql_error = std::move(sql_error);
  h.io_errno = io_errno;
  h.io_error = std::move(io_error);
  h.local_writes = std::move(local_writes);
  return h;
}

TEST(MysqlGtidTest, OutOfSyncReasonTable) {
  struct Case {
    std::string name;
    mysql::ReplicationHealth health;
    std::vector<std::string> contains;  // empty: in sync
  };
  const std::vector<Case> cases = {
      {"in sync", Health(true, 0, "", 0, ""), {}},
      {"not started yet", Health(false, 0, "", 0, ""), {}},
      {"connection refused is transient",
       Health(true, 0, "", 2003, "error connecting to master"), {}},
      {"SQL error", Health(false, 1062, "Duplicate entry '7'\nfor key", 0, ""),
       {"SQL error 1062", "Duplicate entry '7' for key"}},
      {"SQL error cleared by a restart", Health(true, 1062, "old", 0, ""), {}},
      {"binary logs purged", Health(true, 0, "", 1236, "Could not find GTID state"),
       {"error 1236", "Could not find GTID state"}},
      {"errant and broken", Health(false, 1950, "out-of-order", 0, "", {"0-2-7"}),
       {"errant GTIDs 0-2-7", "SQL error 1950"}},
  };
  for (const Case& c : cases) {
    const std::string reason = mysql::OutOfSyncReason(c.health);
    if (c.contains.empty()) {
      EXPECT_EQ(reason, "") << c.name;
      continue;
    }
    for (const std::string& part : c.contains) {
      EXPECT_TRUE(absl::StrContains(reason, part)) << c.name << ": " << reason;
    }
    EXPECT_EQ(reason.find('\n'), std::string::npos) << c.name << ": one line";
  }
  EXPECT_LT(mysql::OutOfSyncReason(Health(false, 1, std::string(5000, 'x'), 0, "")).size(), 400u);
}

// ------------------------------------------------------------------ files

TEST(MysqlFilesTest, GtidFromBinlogInfo) {
  EXPECT_EQ(mysql::GtidFromBinlogInfo("mysql-bin.000001\t1645\t0-1-7\n"), "0-1-7");
  EXPECT_EQ(mysql::GtidFromBinlogInfo("mysql-bin.000002 99 0-1-7,1-2-3"), "0-1-7,1-2-3");
  EXPECT_EQ(mysql::GtidFromBinlogInfo("mysql-bin.000001\t1645\n"), "");
  EXPECT_EQ(mysql::GtidFromBinlogInfo(""), std::nullopt);
}

TEST(MysqlFilesTest, MasterInfo) {
  const std::string info = "33\n\n4\n127.0.0.1\nrepl\nsecret\n23306\n1\n0\n";
  std::optional<mysql::Endpoint> e = mysql::ParseMasterInfo(info);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, 23306u);
  EXPECT_EQ(mysql::ParseMasterInfo(""), std::nullopt);
  EXPECT_EQ(mysql::ParseMasterInfo("33\n\n4\n\nrepl\nx\n1\n"), std::nullopt);  // no host
}

TEST(MysqlFilesTest, SeedMarkerRoundTrip) {
  mysql::SeedMarker m{"db1", {"10.0.0.5", 3306}, "0-1-42"};
  absl::StatusOr<mysql::SeedMarker> back = mysql::ParseSeedMarker(mysql::FormatSeedMarker(m));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, m);
  mysql::SeedMarker empty_gtid{"db1", {"h", 1}, ""};
  EXPECT_EQ(*mysql::ParseSeedMarker(mysql::FormatSeedMarker(empty_gtid)), empty_gtid);
  EXPECT_FALSE(mysql::ParseSeedMarker("upstream_id=db1\nhost=h\n").ok());
  EXPECT_FALSE(mysql::ParseSeedMarker("upstream_id=db1\nhost=h\nport=x\ngtid=\n").ok());
}

TEST(MysqlFilesTest, ServedSlaves) {
  std::string text = mysql::FormatServedSlaves({{"db3", "10.0.0.3"}, {"db2", "10.0.0.2"},
                                                {"db3", "10.0.0.3"}});
  EXPECT_EQ(text, "db2 10.0.0.2\ndb3 10.0.0.3\n");
  mysql::ServedSlaves back = mysql::ParseServedSlaves(text + "\ngarbage\n");
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[1], std::make_pair(std::string("db3"), std::string("10.0.0.3")));
  EXPECT_EQ(mysql::FormatServedSlaves({}), "");
}

TEST(MysqlFilesTest, CountsAsData) {
  for (const char* yes : {"ibdata1", "aria_log.00000001", "aria_log_control", "undo001",
                          "ddl_recovery.log"}) {
    EXPECT_TRUE(mysql::CountsAsData(yes)) << yes;
  }
  for (const char* no : {"mysql-bin.000001", "mysql-bin.index", "db2-relay-bin.000002",
                         "ib_logfile0", "ibtmp1", "master.info", "relay-log.info", "x.pid",
                         "x.err", "multi-master.info"}) {
    EXPECT_FALSE(mysql::CountsAsData(no)) << no;
  }
}

// ------------------------------------------------------------------ seed stream

TEST(MysqlSeedStreamTest, HeaderRoundTripAndPartialInput) {
  for (mysql::SeedFormat f : {mysql::SeedFormat::kXbstream, mysql::SeedFormat::kSql}) {
    const std::string header = mysql::SeedStreamHeader(f);
    const std::string stream = header + "payload";
    for (size_t cut = 0; cut < header.size(); ++cut) {
      auto partial = mysql::ParseSeedStreamHeader(stream.substr(0, cut));
      ASSERT_TRUE(partial.ok()) << cut << ": " << partial.status();
      EXPECT_FALSE(partial->has_value()) << cut;
    }
    auto full = mysql::ParseSeedStreamHeader(stream);
    ASSERT_TRUE(full.ok()) << full.status();
    ASSERT_TRUE(full->has_value());
    EXPECT_EQ((*full)->first, f);
    EXPECT_EQ(stream.substr((*full)->second), "payload");
  }
}

TEST(MysqlSeedStreamTest, RefusesWhatIsNotASeedStream) {
  for (const std::string& bad :
       {std::string("MYSQL"), std::string("TANDEM-MYSQL-SEED 2 xbstream\n"),
        std::string("TANDEM-MYSQL-SEED 1 tar\n"), std::string("TANDEM-MYSQL-SEED") + std::string(200, 'x')}) {
    EXPECT_FALSE(mysql::ParseSeedStreamHeader(bad).ok()) << bad;
  }
}

TEST(MysqlDumpGtidSnifferTest, FindsTheGtidWhateverTheChunks) {
  const std::string dump =
      "-- MariaDB dump\n-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n"
      "INSERT INTO t VALUES " + std::string(5000, 'x') + ";\n"
      "-- SET GLOBAL gtid_slave_pos='0-1-8,1-2-3';\n-- Dump completed\n";
  for (size_t chunk : {1, 2, 7, 64, 4096, 100000}) {
    mysql::DumpGtidSniffer sniffer;
    for (size_t i = 0; i < dump.size(); i += chunk) sniffer.Feed(std::string_view(dump).substr(i, chunk));
    ASSERT_TRUE(sniffer.gtid().has_value()) << chunk;
    EXPECT_EQ(*sniffer.gtid(), "0-1-8,1-2-3") << chunk;
  }
  mysql::DumpGtidSniffer none;
  none.Feed("SET GLOBAL gtid_slave_pos='0-1-1';\n  -- SET GLOBAL gtid_slave_pos='0-1-2';\n");
  EXPECT_FALSE(none.gtid().has_value()) << "only a comment at the start of a line counts";
}

// ------------------------------------------------------------------ misc

TEST(MysqlMiscTest, NativePasswordHashMatchesTheServer) {
  // SELECT PASSWORD('admpw') on MariaDB 10.11.
  EXPECT_EQ(mysql::NativePasswordHash("admpw"), "*4FF029AFB10C2B81D127ADC1E4C533FD62F21DD6");
  EXPECT_EQ(mysql::NativePasswordHash("admpw").size(), 41u);
}

TEST(MysqlMiscTest, AccountHostsAndIdentifiers) {
  EXPECT_TRUE(mysql::ValidAccountHost("10.0.0.5"));
  EXPECT_TRUE(mysql::ValidAccountHost("fd00::1"));
  EXPECT_TRUE(mysql::ValidAccountHost("db-2.example.org"));
  EXPECT_FALSE(mysql::ValidAccountHost(""));
  EXPECT_FALSE(mysql::ValidAccountHost("h'; DROP USER x"));
  EXPECT_TRUE(mysql::PlainIdentifier("tandem_repl", 32));
  EXPECT_FALSE(mysql::PlainIdentifier("1abc", 32));
  EXPECT_FALSE(mysql::PlainIdentifier(std::string(33, 'a'), 32));
}

TEST(MysqlMiscTest, ClientDefaultsFileQuotesThePassword) {
  MysqlLogin login;
  login.host = "127.0.0.1";
  login.port = 3307;
  login.user = "root";
  login.password = "p\"w\\x";
  const std::string file = mysql::ClientDefaultsFile(login);
  EXPECT_TRUE(absl::StartsWith(file, "[client]\n")) << file;
  EXPECT_TRUE(absl::StrContains(file, "password=\"p\\\"w\\\\x\"\n")) << file;
  EXPECT_TRUE(absl::StrContains(file, "port=3307\nprotocol=tcp\n")) << file;
  login.unix_socket = "/tmp/x.sock";
  EXPECT_TRUE(absl::StrContains(mysql::ClientDefaultsFile(login), "protocol=socket")) << file;
}

// ------------------------------------------------------------------ config

class MysqlConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(WriteFileAtomic(dir_.Sub("good.pw"), "S3cr3t-Value\n", 0600).ok());
    ASSERT_TRUE(WriteFileAtomic(dir_.Sub("open.pw"), "S3cr3t-Value\n", 0644).ok());
  }

  EngineConfig Valid() const {
    EngineConfig c;
    c.type = EngineType::kMysql;
    c.host = "127.0.0.1";
    c.port = 3306;
    c.data_dir = dir_.Sub("data");
    c.user = "root";
    c.os_user = ::geteuid() == 0 ? "mysql" : "";
    c.password_file = dir_.Sub("good.pw");
    c.replication_password_file = dir_.Sub("good.pw");
    return c;
  }

  TempDir dir_{"tmyc"};
};

TEST_F(MysqlConfigTest, ValidConfigMakesAnEngine) {
  absl::StatusOr<std::unique_ptr<Engine>> engine = MakeMysqlEngine(Valid());
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->type(), EngineType::kMysql);
  EXPECT_EQ((*engine)->DataParentDir(), dir_.path());
  EngineConfig dump = Valid();
  dump.seed_method = "dump";
  EXPECT_TRUE(MakeMysqlEngine(dump).ok());
}

TEST_F(MysqlConfigTest, InvalidFieldsAreNamed) {
  struct Case {
    std::string name;
    std::function<void(EngineConfig&)> change;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"type", [](EngineConfig& c) { c.type = EngineType::kRedis; }, "engine.type"},
      {"unit and command",
       [](EngineConfig& c) {
         c.systemd_unit = "mariadb";
         c.start_command = "true";
       },
       "engine.start_command"},
      {"port", [](EngineConfig& c) { c.port = 70000; }, "engine.port"},
      {"relative data_dir", [](EngineConfig& c) { c.data_dir = "data"; }, "engine.data_dir"},
      {"missing parent", [](EngineConfig& c) { c.data_dir = "/nonexistent/x/data"; },
       "engine.data_dir"},
      {"long data_dir", [](EngineConfig& c) { c.data_dir = "/tmp/" + std::string(120, 'd'); },
       "engine.data_dir"},
      {"user", [](EngineConfig& c) { c.user = ""; }, "engine.user"},
      {"replication_user", [](EngineConfig& c) { c.replication_user = "repl'--"; },
       "engine.replication_user"},
      {"timeout", [](EngineConfig& c) { c.timeout_seconds = 0; }, "engine.timeout_seconds"},
      {"log_file", [](EngineConfig& c) { c.log_file = "x.log"; }, "engine.log_file"},
      {"seed_method", [](EngineConfig& c) { c.seed_method = "rsync"; }, "engine.seed_method"},
      {"os_user", [](EngineConfig& c) { c.os_user = "no-such-user-x"; }, "engine.os_user"},
      {"open password file", [this](EngineConfig& c) { c.password_file = dir_.Sub("open.pw"); },
       "engine.password_file"},
      {"missing password file",
       [this](EngineConfig& c) { c.replication_password_file = dir_.Sub("none.pw"); },
       "engine.replication_password_file"},
      {"reserved server arg", [](EngineConfig& c) { c.server_args = {"--port=1"}; },
       "engine.server_args"},
      {"reserved datadir", [](EngineConfig& c) { c.server_args = {"--datadir=/x"}; },
       "engine.server_args"},
      {"bin_dir without tools", [this](EngineConfig& c) { c.bin_dir = dir_.path(); },
       "engine.bin_dir"},
  };
  for (const Case& c : cases) {
    EngineConfig config = Valid();
    c.change(config);
    absl::StatusOr<std::unique_ptr<Engine>> engine = MakeMysqlEngine(config);
    ASSERT_FALSE(engine.ok()) << c.name;
    EXPECT_TRUE(absl::IsInvalidArgument(engine.status())) << c.name << ": " << engine.status();
    EXPECT_TRUE(absl::StartsWith(engine.status().message(), c.field + ":"))
        << c.name << ": " << engine.status();
    EXPECT_FALSE(absl::StrContains(engine.status().message(), "S3cr3t-Value")) << c.name;
  }
}

TEST_F(MysqlConfigTest, RootNeedsAnOsUserForTheDefaultStart) {
  if (::geteuid() != 0) {
    // Not root: the rule does not apply; the default start runs as the agent.
    EngineConfig c = Valid();
    c.os_user = "";
    EXPECT_TRUE(MakeMysqlEngine(c).ok());
    return;
  }
  EngineConfig c = Valid();
  c.os_user = "";
  absl::StatusOr<std::unique_ptr<Engine>> engine = MakeMysqlEngine(c);
  ASSERT_FALSE(engine.ok());
  EXPECT_TRUE(absl::StartsWith(engine.status().message(), "engine.os_user:")) << engine.status();
  c.start_command = "systemctl start mariadb";
  EXPECT_TRUE(MakeMysqlEngine(c).ok()) << "a custom start needs no os_user";
  c.start_command = "";
  c.server_args.clear();
  c.systemd_unit = "mariadb";
  EXPECT_TRUE(MakeMysqlEngine(c).ok()) << "neither does a unit";
}

TEST_F(MysqlConfigTest, BootstrapWithoutASourceIsRefused) {
  absl::StatusOr<std::unique_ptr<Engine>> engine = MakeMysqlEngine(Valid());
  ASSERT_TRUE(engine.ok()) << engine.status();
  Peer upstream{"db1", "main", "127.0.0.1", 1, 2};
  absl::StatusOr<std::string> result = (*engine)->Bootstrap(Peer{"db2", "main", "127.0.0.1", 3}, upstream, nullptr);
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(result.status())) << result.status();
  EXPECT_TRUE(absl::StrContains(result.status().message(), "backup source")) << result.status();
}

// ------------------------------------------------------------------ StreamProcess

TEST(MysqlStreamProcessTest, PipesMegabytesThroughCatInBothDirections) {
  StreamOptions options;
  options.pipe_stdin = true;
  options.pipe_stdout = true;
  absl::StatusOr<std::unique_ptr<StreamProcess>> cat = StreamProcess::Start({"cat"}, options);
  ASSERT_TRUE(cat.ok()) << cat.status();
  // Written and read on two threads: cat holds at most its pipe buffers.
  std::string payload;
  for (int i = 0; i < 200000; ++i) absl::StrAppend(&payload, i, "\n");
  std::thread writer([&] {
    for (size_t off = 0; off < payload.size(); off += 10000) {
      ASSERT_TRUE((*cat)->Write(std::string_view(payload).substr(off, 10000)).ok());
    }
    (*cat)->CloseStdin();
  });
  std::string got;
  std::string chunk;
  for (;;) {
    absl::StatusOr<bool> more = (*cat)->Read(&chunk, 1 << 16);
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
    EXPECT_LE(chunk.size(), size_t{1 << 16});
    got += chunk;
  }
  writer.join();
  EXPECT_EQ(got, payload);
  absl::StatusOr<int> code = (*cat)->Wait(std::chrono::seconds(10));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

TEST(MysqlStreamProcessTest, WritingToAToolThatExitedIsAnErrorNotASignal) {
  StreamOptions options;
  options.pipe_stdin = true;
  absl::StatusOr<std::unique_ptr<StreamProcess>> tool =
      StreamProcess::Start({"/bin/sh", "-c", "exit 3"}, options);
  ASSERT_TRUE(tool.ok()) << tool.status();
  absl::StatusOr<int> code = (*tool)->Wait(std::chrono::seconds(10));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 3);
  absl::Status st = (*tool)->Write(std::string(1 << 20, 'x'));
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;  // and this process is still alive
}

TEST(MysqlStreamProcessTest, KillEndsABlockedReadAndStderrGoesToTheLog) {
  TempDir dir("tmys");
  StreamOptions options;
  options.pipe_stdout = true;
  options.log_file = dir.Sub("tool.log");
  absl::StatusOr<std::unique_ptr<StreamProcess>> tool =
      StreamProcess::Start({"/bin/sh", "-c", "echo oops >&2; exec sleep 600"}, options);
  ASSERT_TRUE(tool.ok()) << tool.status();
  EXPECT_TRUE(testing::PollUntil([&] { return ReadFile(dir.Sub("tool.log")).value_or("") == "oops\n"; },
                                 std::chrono::seconds(10)));
  std::thread killer([&] { (*tool)->Kill(); });
  std::string chunk;
  absl::StatusOr<bool> more = (*tool)->Read(&chunk, 100);
  killer.join();
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_FALSE(*more);
  absl::StatusOr<int> code = (*tool)->Wait(std::chrono::seconds(10));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 128 + 9);
}

TEST(MysqlStreamProcessTest, MissingToolIsNotFound) {
  absl::StatusOr<std::unique_ptr<StreamProcess>> tool =
      StreamProcess::Start({"/nonexistent/tool"}, StreamOptions{});
  EXPECT_TRUE(absl::IsNotFound(tool.status())) << tool.status();
}

}  // namespace
}  // namespace tandem

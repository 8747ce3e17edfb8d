// The config checks every engine shares, and the custom start/stop of a
// server (systemd unit or commands).
#include "engines/engine_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "common/files.h"
#include "engines/server_control.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"

namespace tandem {
namespace {

using testing::TempDir;

class EngineConfigTest : public ::testing::Test {
 protected:
  EngineConfig Valid() const {
    EngineConfig c;
    c.port = 5432;
    c.data_dir = dir_.Sub("data");
    c.user = "postgres";
    return c;
  }
  TempDir dir_;
};

TEST_F(EngineConfigTest, HostMayBeLeftToTheLocalDefault) {
  EngineConfig c = Valid();
  ASSERT_TRUE(c.host.empty());
  EXPECT_TRUE(ValidateEngineConfig(&c, EngineType::kPostgresql).ok());
}

TEST_F(EngineConfigTest, SystemdUnitExcludesCommandsAndServerArgs) {
  EngineConfig c = Valid();
  c.systemd_unit = "postgresql@15-main";
  EXPECT_TRUE(ValidateEngineConfig(&c, EngineType::kPostgresql).ok());

  struct Case {
    const char* name;
    void (*change)(EngineConfig&);
    const char* error;
  };
  const Case cases[] = {
      {"start_command", [](EngineConfig& e) { e.start_command = "true"; },
       "engine.start_command: not used with engine.systemd_unit (postgresql@15-main starts and "
       "stops the server with the options of its own configuration): remove one of them"},
      {"stop_command", [](EngineConfig& e) { e.stop_command = "true"; },
       "engine.stop_command: not used with engine.systemd_unit"},
      {"server_args",
       [](EngineConfig& e) {
         e.server_args = {"-c", "x=1"};
       },
       "engine.server_args: not used with engine.systemd_unit"},
      {"option", [](EngineConfig& e) { e.systemd_unit = "--now"; },
       "engine.systemd_unit: \"--now\" is not a systemd unit name (e.g. postgresql@15-main)"},
      {"space", [](EngineConfig& e) { e.systemd_unit = "postgresql main"; },
       "engine.systemd_unit: \"postgresql main\" is not a systemd unit name"},
  };
  for (const Case& k : cases) {
    EngineConfig bad = c;
    k.change(bad);
    absl::StatusOr<std::optional<UserIds>> st = ValidateEngineConfig(&bad, EngineType::kPostgresql);
    ASSERT_FALSE(st.ok()) << k.name;
    EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument) << k.name;
    EXPECT_EQ(std::string(st.status().message()).rfind(k.error, 0), 0u)
        << k.name << ": " << st.status();
  }
}

TEST_F(EngineConfigTest, LogsInAsTheOsUserOnlyOverASocketWithItsName) {
  ASSERT_EQ(::geteuid(), 0u) << "run as root: the rule is about a root agent";
  EngineConfig c = Valid();
  c.os_user = "postgres";
  EXPECT_TRUE(LogsInAsOsUser(c, "/var/run/postgresql"));
  EXPECT_FALSE(LogsInAsOsUser(c, "127.0.0.1"));  // TCP: the server sees no OS user
  c.user = "root";                               // MariaDB's root: the agent's own
  EXPECT_FALSE(LogsInAsOsUser(c, "/run/mysqld/mysqld.sock"));
  c.user = "postgres";
  c.os_user = "";
  EXPECT_FALSE(LogsInAsOsUser(c, "/var/run/postgresql"));
}

TEST_F(EngineConfigTest, FailedCommandsSayWhy) {
  EngineConfig c = Valid();
  c.start_command = "echo 'cannot bind port 5432' >&2; exit 4";
  c.stop_command = "exit 3";
  const std::string log = dir_.Sub("server.log");
  ASSERT_TRUE(WriteFileAtomic(log, "an older line\n", 0640).ok());
  ASSERT_TRUE(CustomServerControl(c, ServerAction::kStart));
  absl::Status st = RunServerControl(c, ServerAction::kStart, log, std::chrono::seconds(10));
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  // Only what this command wrote, not the log's older lines.
  EXPECT_EQ(
      st.message(),
      "engine.start_command exited with 4: cannot bind port 5432 (its output in " + log + ")");
  st = RunServerControl(c, ServerAction::kStop, log, std::chrono::seconds(10));
  EXPECT_EQ(st.message(), "engine.stop_command exited with 3 (no output)");
  c.stop_command = "true";
  EXPECT_TRUE(RunServerControl(c, ServerAction::kStop, log, std::chrono::seconds(10)).ok());
  c.stop_command = "";
  EXPECT_FALSE(CustomServerControl(c, ServerAction::kStop));
}

// systemctl and journalctl replaced by scripts in PATH: what the agent runs
// and how a failure reads (the real ones run in tests/system).
TEST_F(EngineConfigTest, SystemdUnitRunsSystemctlAndQuotesTheJournal) {
  const std::string bin = dir_.Sub("bin");
  ASSERT_TRUE(MakeDirs(bin).ok());
  const std::string calls = dir_.Sub("calls");
  ASSERT_TRUE(WriteFileAtomic(bin + "/systemctl",
                              "#!/bin/sh\necho \"systemctl $*\" >> " + calls +
                                  "\n[ \"$1\" = stop ] && exit 0\n"
                                  "echo 'Job for demo.service failed.' >&2; exit 1\n",
                              0755)
                  .ok());
  ASSERT_TRUE(WriteFileAtomic(bin + "/journalctl",
                              "#!/bin/sh\necho \"journalctl $*\" >> " + calls +
                                  "\necho 'FATAL:  could not bind IPv4 address'\n",
                              0755)
                  .ok());
  const std::string old_path = std::getenv("PATH");
  ASSERT_EQ(::setenv("PATH", (bin + ":" + old_path).c_str(), 1), 0);
  EngineConfig c = Valid();
  c.systemd_unit = "demo";
  EXPECT_EQ(ServerControlName(c, ServerAction::kStart), "systemctl start demo");
  absl::Status stop = RunServerControl(c, ServerAction::kStop, "", std::chrono::seconds(10));
  absl::Status start = RunServerControl(c, ServerAction::kStart, "", std::chrono::seconds(10));
  ASSERT_EQ(::setenv("PATH", old_path.c_str(), 1), 0);
  EXPECT_TRUE(stop.ok()) << stop;
  EXPECT_EQ(start.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(start.message(),
            "systemctl start demo exited with 1: Job for demo.service failed.; journal of demo: "
            "FATAL:  could not bind IPv4 address");
  absl::StatusOr<std::string> ran = ReadFile(calls);
  ASSERT_TRUE(ran.ok());
  EXPECT_NE(
      ran->find("systemctl stop demo\nsystemctl start demo\njournalctl --unit demo --since @"),
      std::string::npos)
      << *ran;
}

}  // namespace
}  // namespace tandem

#include "tests/harness/harness.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>

#include "common/files.h"
#include "common/subprocess.h"
#include "gtest/gtest.h"
#include "tests/harness/pg_server.h"

namespace tandem::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(TempDirTest, CreatesShortTraversableDirAndRemovesIt) {
  std::string path;
  {
    TempDir dir("tt");
    path = dir.path();
    struct stat sb;
    ASSERT_EQ(::stat(path.c_str(), &sb), 0);
    EXPECT_TRUE(S_ISDIR(sb.st_mode));
    EXPECT_EQ(sb.st_mode & 0777, 0755u);
    EXPECT_EQ(path.rfind("/tmp/tt.", 0), 0u) << path;
    EXPECT_LT(path.size(), 20u);
    ASSERT_TRUE(WriteFileAtomic(dir.Sub("f"), "x").ok());
    ASSERT_TRUE(MakeDirs(dir.Sub("a/b")).ok());
  }
  EXPECT_FALSE(PathExists(path));
}

TEST(TempDirTest, MoveTransfersOwnership) {
  std::string path;
  {
    TempDir outer("tt");
    path = outer.path();
    TempDir inner = std::move(outer);
    EXPECT_EQ(inner.path(), path);
    EXPECT_TRUE(outer.path().empty());
    EXPECT_TRUE(PathExists(path));
  }
  EXPECT_FALSE(PathExists(path));
}

TEST(FreePortTest, DistinctPortsInRange) {
  std::set<uint16_t> ports;
  for (int i = 0; i < 50; ++i) {
    uint16_t port = FreePort();
    EXPECT_GE(port, 20000);
    EXPECT_LE(port, 29999);
    EXPECT_TRUE(ports.insert(port).second) << "port returned twice: " << port;
  }
}

TEST(PollUntilTest, TrueAsSoonAsConditionHolds) {
  int calls = 0;
  EXPECT_TRUE(PollUntil([&] { return ++calls == 3; }, seconds(5), milliseconds(1)));
  EXPECT_EQ(calls, 3);
}

TEST(PollUntilTest, FalseAfterTimeout) {
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(PollUntil([] { return false; }, milliseconds(100), milliseconds(10)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(100));
}

TEST(ChildProcessTest, ExitCodeAndLog) {
  TempDir dir("tt");
  ChildOptions options;
  options.log_file = dir.Sub("out.log");
  options.env = {{"TANDEM_HARNESS_X", "hello"}};
  auto child = ChildProcess::Start({"/bin/sh", "-c", "echo $TANDEM_HARNESS_X; exit 7"}, options);
  ASSERT_TRUE(child.ok()) << child.status();
  absl::StatusOr<int> code = (*child)->Wait(seconds(10));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 7);
  EXPECT_FALSE((*child)->Running());
  EXPECT_EQ(FileTail(options.log_file), "hello\n");
}

TEST(ChildProcessTest, SignalAndWait) {
  auto child = ChildProcess::Start({"sleep", "60"});
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_TRUE((*child)->Running());
  EXPECT_TRUE(absl::IsDeadlineExceeded((*child)->Wait(milliseconds(50)).status()));
  ASSERT_TRUE((*child)->Signal(SIGKILL).ok());
  absl::StatusOr<int> code = (*child)->Wait(seconds(10));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 128 + SIGKILL);
  EXPECT_TRUE(absl::IsFailedPrecondition((*child)->Signal(SIGTERM)));
}

TEST(ChildProcessTest, DestructorKillsAndReaps) {
  pid_t pid = 0;
  {
    auto child = ChildProcess::Start({"sleep", "60"});
    ASSERT_TRUE(child.ok()) << child.status();
    pid = (*child)->pid();
    EXPECT_TRUE(ProcessAlive(pid));
  }
  // Reaped: the pid no longer exists at all (not even as a zombie).
  EXPECT_FALSE(PathExists("/proc/" + std::to_string(pid)));
}

TEST(ChildProcessTest, RunsAsAnotherUserWhenRoot) {
  if (::geteuid() != 0) {
    FAIL() << "this test needs root (CI runs as root)";
  }
  TempDir dir("tt");
  ChildOptions options;
  options.run_as = "postgres";
  options.log_file = dir.Sub("id.log");
  auto child = ChildProcess::Start({"id", "-un"}, options);
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE((*child)->Wait(seconds(10)).ok());
  EXPECT_EQ(FileTail(options.log_file), "postgres\n");
}

TEST(ChildProcessTest, MissingProgramIsNotFound) {
  auto child = ChildProcess::Start({"/nonexistent/tandem-no-such-binary"});
  EXPECT_TRUE(absl::IsNotFound(child.status())) << child.status();
  auto in_path = ChildProcess::Start({"tandem-no-such-binary-in-path"});
  EXPECT_TRUE(absl::IsNotFound(in_path.status())) << in_path.status();
}

TEST(PgServerTest, StartQueryStopRestart) {
  PgServerOptions options;
  options.name = "h";
  auto pg = PgServer::Create(options);
  ASSERT_TRUE(pg.ok()) << pg.status();
  PgServer& server = **pg;
  EXPECT_TRUE(server.Answers());
  ASSERT_TRUE(server.Exec("CREATE TABLE t (i int); INSERT INTO t VALUES (1), (2)").ok());
  absl::StatusOr<Rows> rows = server.Query("SELECT i, NULL FROM t ORDER BY i");
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(*rows, (Rows{{"1", ""}, {"2", ""}}));
  absl::Status bad = server.Exec("SELECT * FROM no_such_table");
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("42P01"), std::string::npos) << bad;

  // The data dir belongs to the server's OS user.
  struct stat sb;
  ASSERT_EQ(::stat(server.data_dir().c_str(), &sb), 0);
  absl::StatusOr<UserIds> ids = LookupUser(server.os_user());
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(sb.st_uid, ids->uid);

  ASSERT_TRUE(server.Stop().ok());
  EXPECT_FALSE(server.Answers());
  EXPECT_FALSE(PathExists(server.data_dir() + "/postmaster.pid"));
  ASSERT_TRUE(server.Start().ok());
  EXPECT_EQ(*server.Value("SELECT count(*) FROM t"), "2");
}

TEST(PgServerTest, StopPostgresByPidFileStopsAServerStartedByPgCtl) {
  PgServerOptions options;
  options.name = "c";
  options.start = false;
  auto pg = PgServer::Create(options);
  ASSERT_TRUE(pg.ok()) << pg.status();
  PgServer& server = **pg;
  EXPECT_FALSE(server.Answers());
  ASSERT_NE(server.port(), 0) << "the port is known before the server starts";
  // Start it the way an agent does: pg_ctl, which daemonizes the server.
  std::string opts = "-p " + std::to_string(server.port());
  for (const std::string& a : server.server_args()) opts += " '" + a + "'";
  RunOptions run;
  run.run_as = server.os_user();
  run.output_file = server.dir() + "/pgctl.log";
  absl::StatusOr<RunResult> started =
      tandem::Run({server.bin_dir() + "/pg_ctl", "-D", server.data_dir(), "-w", "-t", "30", "-o",
                   opts, "start"},
                  run);
  ASSERT_TRUE(started.ok()) << started.status();
  ASSERT_EQ(started->exit_code, 0) << FileTail(run.output_file);
  std::string pid_line = FileTail(server.data_dir() + "/postmaster.pid");
  pid_t pid = std::stoi(pid_line.substr(0, pid_line.find('\n')));
  EXPECT_TRUE(ProcessAlive(pid));
  EXPECT_TRUE(server.Answers());
  EXPECT_EQ(*server.Value("SELECT 1"), "1");

  ASSERT_TRUE(StopPostgresByPidFile(server.data_dir()).ok());
  EXPECT_FALSE(ProcessAlive(pid));
  // The server was adopted by this process and has been reaped.
  EXPECT_FALSE(PathExists("/proc/" + std::to_string(pid)));
  // Nothing running: OK again.
  EXPECT_TRUE(StopPostgresByPidFile(server.data_dir()).ok());
}

TEST(PgServerTest, PostgresBinDirHasTheTools) {
  absl::StatusOr<std::string> bin = PostgresBinDir();
  ASSERT_TRUE(bin.ok()) << bin.status();
  for (const char* tool : {"postgres", "initdb", "pg_ctl", "pg_basebackup", "pg_controldata"}) {
    EXPECT_TRUE(PathExists(*bin + "/" + tool)) << tool;
  }
}

}  // namespace
}  // namespace tandem::testing

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/files.h"
#include "common/memory.h"
#include "common/subprocess.h"
#include "common/types.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"

namespace tandem {
namespace {

// A fresh directory, removed when the test program ends.
std::string TempDir() {
  static std::vector<::tandem::testing::TempDir> dirs;
  return dirs.emplace_back("tandem-common").path();
}

TEST(TypesTest, RolesAcceptAliases) {
  EXPECT_EQ(ParseRole("primary"), Role::kMaster);
  EXPECT_EQ(ParseRole("Replica"), Role::kSlave);
  EXPECT_EQ(ParseRole("standalone"), Role::kStandalone);
  EXPECT_EQ(ParseRole("leader"), std::nullopt);
  for (Role r : {Role::kStandalone, Role::kMaster, Role::kSlave}) {
    EXPECT_EQ(ParseRole(RoleName(r)), r);
  }
}

TEST(TypesTest, EnginesRoundTrip) {
  for (EngineType e : {EngineType::kPostgresql, EngineType::kMysql, EngineType::kRedis,
                       EngineType::kMongodb}) {
    EXPECT_EQ(ParseEngine(EngineName(e)), e);
  }
  EXPECT_EQ(ParseEngine("mariadb"), EngineType::kMysql);
  EXPECT_EQ(EnvPrefix(EngineType::kPostgresql), "POSTGRESQL");
}

TEST(FilesTest, AtomicWriteReplacesContentAndMode) {
  std::string dir = TempDir();
  std::string path = dir + "/env";
  ASSERT_TRUE(WriteFileAtomic(path, "A=1\n").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "A=2\n", 0600).ok());
  EXPECT_EQ(*ReadFile(path), "A=2\n");
  struct stat sb;
  ASSERT_EQ(::stat(path.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
  EXPECT_EQ(ReadFile(dir + "/missing").status().code(), absl::StatusCode::kNotFound);
}

TEST(FilesTest, SecretFileMustBePrivate) {
  std::string dir = TempDir();
  std::string path = dir + "/pw";
  ASSERT_TRUE(WriteFileAtomic(path, "s3cret\n", 0644).ok());
  absl::StatusOr<std::string> loose = ReadSecretFile(path);
  EXPECT_EQ(loose.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(loose.status().message().find("s3cret"), std::string::npos);
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  EXPECT_EQ(*ReadSecretFile(path), "s3cret");
}

TEST(FilesTest, ThreadIdentityChangesOnlyTheCallingThread) {
  ASSERT_EQ(::geteuid(), 0u) << "this test switches identities: run it as root";
  absl::StatusOr<UserIds> nobody = LookupUser("nobody");
  ASSERT_TRUE(nobody.ok()) << nobody.status();
  uid_t inside = 0;
  gid_t inside_gid = 0;
  // A thread that runs meanwhile keeps root's identity.
  std::promise<void> switched;
  std::promise<uid_t> seen;
  std::thread other([&] {
    switched.get_future().wait();
    seen.set_value(::geteuid());
  });
  uid_t other_thread = 1;
  absl::Status st = WithThreadIdentity(*nobody, [&] {
    inside = ::geteuid();
    inside_gid = ::getegid();
    switched.set_value();
    other_thread = seen.get_future().get();
  });
  other.join();
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(inside, nobody->uid);
  EXPECT_EQ(inside_gid, nobody->gid);
  EXPECT_EQ(other_thread, 0u);
  EXPECT_EQ(::geteuid(), 0u);
  EXPECT_EQ(::getegid(), 0u);
  // Files are opened with the switched identity: a root-only file is not.
  const std::string dir = TempDir();
  ASSERT_TRUE(WriteFileAtomic(dir + "/root-only", "x", 0600).ok());
  bool readable = true;
  auto try_read = [&] {
    const int fd = ::open((dir + "/root-only").c_str(), O_RDONLY);
    readable = fd >= 0;
    if (fd >= 0) ::close(fd);
  };
  ASSERT_TRUE(WithThreadIdentity(*nobody, try_read).ok());
  EXPECT_FALSE(readable);
}

TEST(SubprocessTest, CapturesOutputAndExitCode) {
  absl::StatusOr<RunResult> r = RunShell("echo hello; echo oops >&2; exit 3");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_NE(r->output.find("hello"), std::string::npos);
  EXPECT_NE(r->output.find("oops"), std::string::npos);
  absl::Status st = RunChecked({"false"});
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  // A tool that says nothing still gets a reason.
  EXPECT_EQ(st.message(), "false exited with 1 (no output)");
  st = RunChecked({"/bin/sh", "-c", "echo why >&2; exit 4"});
  EXPECT_EQ(st.message(), "/bin/sh exited with 4: why");
}

TEST(SubprocessTest, PassesEnvironmentAndTimesOut) {
  RunOptions opts;
  opts.env = {{"TANDEM_TEST_VALUE", "xyz"}};
  absl::StatusOr<RunResult> r = RunShell("printf %s \"$TANDEM_TEST_VALUE\"", opts);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->output, "xyz");
  opts.timeout = std::chrono::milliseconds(200);
  EXPECT_EQ(RunShell("exec sleep 5", opts).status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(tandem::Run({"/nonexistent/tool"}).status().code(), absl::StatusCode::kNotFound);
}

// A server the agent starts must not talk to systemd as if it were the
// agent's service: PostgreSQL sends READY=1 and STOPPING=1 to a
// NOTIFY_SOCKET it inherits, and blocks while nobody reads it.
TEST(SubprocessTest, ServiceManagerVariablesAreNotPassedOn) {
  const std::vector<std::string> names = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                                          "LISTEN_FDS",    "LISTEN_PID",    "LISTEN_FDNAMES"};
  for (const std::string& name : names) ASSERT_EQ(::setenv(name.c_str(), "1", 1), 0);
  ASSERT_EQ(::setenv("TANDEM_TEST_KEPT", "kept", 1), 0);
  absl::StatusOr<RunResult> r = tandem::Run({"env"});
  for (const std::string& name : names) ::unsetenv(name.c_str());
  ::unsetenv("TANDEM_TEST_KEPT");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(r->output.find("\nTANDEM_TEST_KEPT=kept\n"), std::string::npos) << r->output;
  for (const std::string& name : names) {
    EXPECT_EQ(r->output.find(name + "="), std::string::npos) << r->output;
  }
}

TEST(SubprocessTest, OutputToFile) {
  std::string dir = TempDir();
  RunOptions opts;
  opts.output_file = dir + "/log";
  ASSERT_TRUE(RunShell("echo into-file", opts).ok());
  EXPECT_EQ(*ReadFile(dir + "/log"), "into-file\n");
}


// Releasing the read-only segments lowers the resident set and changes
// nothing else: threads that run code and read constants all the while, and
// everything after, work and compute the same results.
TEST(MemoryTest, ReleasingReadOnlySegmentsKeepsEveryThreadWorking) {
  auto work = [](unsigned seed) {
    std::mt19937 random(seed);
    std::vector<std::string> words;
    for (int i = 0; i < 2000; ++i) words.push_back(std::to_string(random()) + "-tandem");
    std::sort(words.begin(), words.end());
    std::string joined;
    for (const std::string& w : words) joined += w.substr(0, 3);
    return std::hash<std::string>()(joined);
  };
  const size_t expected = work(7);
  std::atomic<bool> stop{false};
  std::atomic<int> mismatches{0};
  std::atomic<int> runs{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      while (!stop) {
        if (work(7) != expected) ++mismatches;
        ++runs;
      }
    });
  }
  const uint64_t before = ResidentBytes();
  ASSERT_GT(before, 0u);
  uint64_t released = 0;
  for (int i = 0; i < 50; ++i) released += ReleaseReadOnlySegments();
  const uint64_t after = ResidentBytes();
  ASSERT_TRUE(testing::PollUntil([&] { return runs.load() >= 30; }, std::chrono::seconds(60)));
  stop = true;
  for (std::thread& t : threads) t.join();
  EXPECT_GT(released, 0u);
  EXPECT_LT(after, before) << "resident " << before << " -> " << after;
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(work(7), expected);
  // A spawned tool and file I/O still work.
  absl::StatusOr<RunResult> echo = ::tandem::Run({"sh", "-c", "echo released"});
  ASSERT_TRUE(echo.ok()) << echo.status();
  EXPECT_EQ(echo->output, "released\n");
}

}  // namespace
}  // namespace tandem

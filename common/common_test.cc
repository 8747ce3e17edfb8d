#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
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

TEST(SubprocessTest, CapturesOutputAndExitCode) {
  absl::StatusOr<RunResult> r = RunShell("echo hello; echo oops >&2; exit 3");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_NE(r->output.find("hello"), std::string::npos);
  EXPECT_NE(r->output.find("oops"), std::string::npos);
  absl::Status st = RunChecked({"false"});
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
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

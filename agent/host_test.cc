#include "agent/host.h"

#include <sys/stat.h>

#include "common/files.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"

namespace tandem {
namespace {

// A fresh directory, removed when the test program ends.
std::string TempDir() {
  static std::vector<::tandem::testing::TempDir> dirs;
  return dirs.emplace_back("tandem-host").path();
}

TEST(EnvFileTest, RendersSortedAndRoundTrips) {
  EnvMap env = {{"POSTGRESQL_SLAVE_ADDRESSES", "10.0.0.2,10.0.0.3:5433"},
                {"POSTGRESQL_ADDRESS", "10.0.0.1"},
                {"POSTGRESQL_ADDRESS_EXT", ""},
                {"ODD", "it's a value with spaces"}};
  std::string text = RenderEnvFile(env);
  EXPECT_LT(text.find("POSTGRESQL_ADDRESS="), text.find("POSTGRESQL_SLAVE_ADDRESSES="));
  EXPECT_NE(text.find("POSTGRESQL_ADDRESS=10.0.0.1\n"), std::string::npos);
  EXPECT_NE(text.find("POSTGRESQL_ADDRESS_EXT=\n"), std::string::npos);
  EXPECT_NE(text.find("ODD='it'\\''s a value with spaces'\n"), std::string::npos);
  EXPECT_EQ(ParseEnvFile(text), env);
}

TEST(LocalHostTest, EnvFileIsWrittenAndTheHookRunsOncePerChange) {
  const std::string dir = TempDir();
  const std::string counter = dir + "/hook-count";
  LocalHost host(dir, dir + "/env", "echo run >> " + counter + "; . \"$TANDEM_ENV_FILE\"; "
                                    "test \"$TANDEM_ROLE\" = master");
  EnvMap env = {{"TANDEM_ROLE", "master"}};
  ASSERT_TRUE(host.WriteEnv(env).ok());
  ASSERT_TRUE(host.WriteEnv(env).ok());
  EXPECT_EQ(*ReadFile(counter), "run\n");
  absl::StatusOr<HostFacts> facts = host.Observe();
  ASSERT_TRUE(facts.ok());
  EXPECT_TRUE(facts->env_file_exists);
  EXPECT_EQ(facts->env, env);
  EXPECT_FALSE(facts->hook_pending);
  env["TANDEM_ROLE"] = "slave";  // the hook's test fails for this value
  absl::Status st = host.WriteEnv(env);
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_NE(st.message().find("env hook exited with 1"), std::string::npos);
  EXPECT_TRUE(host.Observe()->hook_pending);
  EXPECT_EQ(host.Observe()->env, env) << "file written before the hook";
  // Retried on the next call even though the file is current.
  EXPECT_FALSE(host.WriteEnv(env).ok());
  EXPECT_EQ(*ReadFile(counter), "run\nrun\nrun\n");
}

TEST(LocalHostTest, HostileEnvIsRefusedAndTheFileKept) {
  const std::string dir = TempDir();
  LocalHost host(dir, dir + "/env", "");
  const EnvMap good = {{"POSTGRESQL_ADDRESS", "10.0.0.1"}, {"TANDEM_ROLE", "master"}};
  ASSERT_TRUE(host.WriteEnv(good).ok());
  const std::string before = *ReadFile(dir + "/env");
  for (const EnvMap& bad :
       {EnvMap{{"lower", "x"}}, EnvMap{{"1ABC", "x"}}, EnvMap{{"A B", "x"}},
        EnvMap{{"A=B", "x"}}, EnvMap{{"", "x"}}, EnvMap{{"PATH\nLD_PRELOAD", "x"}},
        EnvMap{{"POSTGRESQL_ADDRESS", "10.0.0.1\nLD_PRELOAD=/tmp/evil.so"}},
        EnvMap{{"TANDEM_ROLE", std::string("a\0b", 3)}}, EnvMap{{"X", "a\rb"}}}) {
    absl::Status st = host.WriteEnv(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
    EXPECT_EQ(*ReadFile(dir + "/env"), before);
  }
  EXPECT_NE(CheckEnv({{"PATH\nX", "1"}}).message().find("PATH\\x0aX"), std::string::npos)
      << CheckEnv({{"PATH\nX", "1"}});
}

TEST(LocalHostTest, RecordsSurviveANewInstance) {
  const std::string dir = TempDir();
  {
    LocalHost host(dir, dir + "/env", "");
    ASSERT_TRUE(host.RecordRole(Role::kMaster).ok());
    ASSERT_TRUE(host.RecordBootstrap({"db1", "r1", "7301"}).ok());
  }
  LocalHost host(dir, dir + "/env", "");
  absl::StatusOr<HostFacts> facts = host.Observe();
  ASSERT_TRUE(facts.ok());
  EXPECT_EQ(facts->recorded_role, Role::kMaster);
  EXPECT_EQ(facts->bootstrap, (BootstrapRecord{"db1", "r1", "7301"}));
  EXPECT_FALSE(facts->env_file_exists);
  EXPECT_GT(*host.FreeDiskBytes(dir), 0u);
}

}  // namespace
}  // namespace tandem

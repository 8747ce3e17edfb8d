// The agent's command line, the dispatcher's choice of binary and
// environment, and the built binaries themselves: `tandem-agent` becomes
// tandem-agent-ENGINE in place, and each engine's agent loads only its own
// engine's client library.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/command_line.h"
#include "agent/dispatcher.h"
#include "common/files.h"
#include "common/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"
#include "tests/harness/pki.h"

namespace tandem {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// ------------------------------------------------------------ command line

struct ArgsCase {
  std::vector<const char*> argv;  // without argv[0]
  std::string command;            // expected; "" = expect an error
  std::string config;             // expected config, or a fragment of the error
};

TEST(ParseAgentArgsTest, Table) {
  const std::vector<ArgsCase> cases = {
      {{"--config", "a.yaml"}, "run", "a.yaml"},
      {{"run", "--config=a.yaml"}, "run", "a.yaml"},
      {{"plan", "-c", "b.yaml"}, "plan", "b.yaml"},
      {{"--config", "c.yaml", "check-config"}, "check-config", "c.yaml"},
      {{"role-table"}, "role-table", ""},
      {{"--help"}, "help", ""},
      {{"-h"}, "help", ""},
      {{"frobnicate", "--config", "a.yaml"}, "frobnicate", "a.yaml"},
      {{}, "", "--config FILE is required"},
      {{"check-config"}, "", "--config FILE is required"},
      {{"--config"}, "", "--config needs a file"},
      {{"--verbose", "--config", "a.yaml"}, "", "unknown argument: --verbose"},
      {{"plan", "run", "--config", "a.yaml"}, "", "unknown argument: run"},
  };
  for (const ArgsCase& c : cases) {
    std::vector<const char*> argv = {"tandem-agent"};
    argv.insert(argv.end(), c.argv.begin(), c.argv.end());
    absl::StatusOr<AgentArgs> args = ParseAgentArgs(static_cast<int>(argv.size()), argv.data());
    const std::string label = absl::StrJoin(c.argv, " ");
    if (c.command.empty()) {
      ASSERT_FALSE(args.ok()) << label;
      EXPECT_EQ(args.status().code(), absl::StatusCode::kInvalidArgument) << label;
      EXPECT_THAT(std::string(args.status().message()), HasSubstr(c.config)) << label;
    } else {
      ASSERT_TRUE(args.ok()) << label << ": " << args.status();
      EXPECT_EQ(args->command, c.command) << label;
      EXPECT_EQ(args->config, c.config) << label;
    }
  }
}

// -------------------------------------------------------------- dispatcher

TEST(EngineAgentNameTest, OneBinaryPerEngine) {
  EXPECT_EQ(EngineAgentName(EngineType::kPostgresql), "tandem-agent-postgresql");
  EXPECT_EQ(EngineAgentName(EngineType::kMysql), "tandem-agent-mysql");
  EXPECT_EQ(EngineAgentName(EngineType::kRedis), "tandem-agent-redis");
  EXPECT_EQ(EngineAgentName(EngineType::kMongodb), "tandem-agent-mongodb");
  EXPECT_EQ(EngineAgentName(EngineType::kUnspecified), "");
}

void MakeExecutable(const std::string& path, mode_t mode = 0755) {
  ASSERT_TRUE(WriteFileAtomic(path, "#!/bin/sh\nexit 0\n", mode).ok()) << path;
  ASSERT_EQ(chmod(path.c_str(), mode), 0) << path;
}

TEST(FindEngineAgentTest, BuildTreeThenInstalledLayout) {
  testing::TempDir dir("tdsp");
  ASSERT_TRUE(MakeDirs(dir.Sub("usr/bin")).ok());
  ASSERT_TRUE(MakeDirs(dir.Sub("usr/lib/tandem")).ok());
  const std::string self = dir.Sub("usr/bin/tandem-agent");
  MakeExecutable(self);

  // Nothing yet: NotFound naming both places.
  absl::StatusOr<std::string> none = FindEngineAgent(self, EngineType::kRedis);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(none.status().message()),
              HasSubstr(dir.Sub("usr/bin/tandem-agent-redis")));
  EXPECT_THAT(std::string(none.status().message()),
              HasSubstr(dir.Sub("usr/bin/../lib/tandem/tandem-agent-redis")));
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("engine.type: redis"));

  // The installed layout.
  MakeExecutable(dir.Sub("usr/lib/tandem/tandem-agent-redis"));
  absl::StatusOr<std::string> installed = FindEngineAgent(self, EngineType::kRedis);
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(*installed, dir.Sub("usr/bin/../lib/tandem/tandem-agent-redis"));

  // A file that is not executable is not an agent.
  MakeExecutable(dir.Sub("usr/bin/tandem-agent-redis"), 0644);
  installed = FindEngineAgent(self, EngineType::kRedis);
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(*installed, dir.Sub("usr/bin/../lib/tandem/tandem-agent-redis"));

  // Beside the dispatcher (a build tree) comes first.
  ASSERT_EQ(chmod(dir.Sub("usr/bin/tandem-agent-redis").c_str(), 0755), 0);
  absl::StatusOr<std::string> beside = FindEngineAgent(self, EngineType::kRedis);
  ASSERT_TRUE(beside.ok()) << beside.status();
  EXPECT_EQ(*beside, dir.Sub("usr/bin/tandem-agent-redis"));

  // Another engine is still missing; no engine at all is refused.
  EXPECT_EQ(FindEngineAgent(self, EngineType::kMysql).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(FindEngineAgent(self, EngineType::kUnspecified).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EngineAgentEnvironmentTest, AddsWhatIsMissingAndKeepsTheRest) {
  const std::vector<std::string> plain = {"PATH=/usr/bin", "HOME=/root"};
  EXPECT_EQ(EngineAgentEnvironment(plain),
            (std::vector<std::string>{"PATH=/usr/bin", "HOME=/root", "GNUTLS_NO_IMPLICIT_INIT=1"}));
  // The operator's own setting wins.
  const std::vector<std::string> set = {"GNUTLS_NO_IMPLICIT_INIT=0", "PATH=/usr/bin"};
  EXPECT_EQ(EngineAgentEnvironment(set), set);
  // A longer name with the same prefix is another variable.
  const std::vector<std::string> other = {"GNUTLS_NO_IMPLICIT_INIT_X=0"};
  EXPECT_EQ(EngineAgentEnvironment(other),
            (std::vector<std::string>{"GNUTLS_NO_IMPLICIT_INIT_X=0", "GNUTLS_NO_IMPLICIT_INIT=1"}));
}

// ------------------------------------------------------ the built binaries

std::string BuildDir() {
  const std::string bin = TANDEM_AGENT_BIN;
  return bin.substr(0, bin.rfind('/'));
}

std::vector<std::string> EngineBinaries() {
  return absl::StrSplit(TANDEM_AGENT_ENGINES, ',', absl::SkipEmpty());
}

// What the dynamic loader maps for `binary` (ldd's output).
std::string LoadedLibraries(const std::string& binary) {
  absl::StatusOr<RunResult> ldd = tandem::Run({"ldd", binary});
  EXPECT_TRUE(ldd.ok()) << ldd.status();
  if (!ldd.ok()) return "";
  EXPECT_EQ(ldd->exit_code, 0) << ldd->output;
  return ldd->output;
}

TEST(EngineBinariesTest, EachLoadsOnlyItsOwnClientLibrary) {
  ASSERT_EQ(EngineBinaries(),
            (std::vector<std::string>{"tandem-agent-postgresql", "tandem-agent-mysql",
                                      "tandem-agent-redis"}));
  struct Client {
    std::string binary;
    std::string library;
  };
  const std::vector<Client> clients = {{"tandem-agent-postgresql", "libpq.so"},
                                       {"tandem-agent-mysql", "libmariadb.so"},
                                       {"tandem-agent-redis", "libhiredis.so"}};
  for (const Client& own : clients) {
    const std::string libs = LoadedLibraries(BuildDir() + "/" + own.binary);
    EXPECT_THAT(libs, HasSubstr(own.library)) << own.binary;
    for (const Client& other : clients) {
      if (other.binary != own.binary) {
        EXPECT_THAT(libs, Not(HasSubstr(other.library))) << own.binary;
      }
    }
    if (TANDEM_AGENT_STATIC_RUNTIME) {
      for (const char* shared : {"libgrpc", "libgpr", "libprotobuf", "libabsl_", "libupb",
                                 "libre2", "libcares", "libyaml-cpp", "libstdc++"}) {
        EXPECT_THAT(libs, Not(HasSubstr(shared))) << own.binary;
      }
    }
  }
  // The dispatcher itself links no engine client library and no gRPC.
  const std::string dispatcher = LoadedLibraries(TANDEM_AGENT_BIN);
  for (const char* absent : {"libpq.so", "libmariadb.so", "libhiredis.so", "libgrpc"}) {
    EXPECT_THAT(dispatcher, Not(HasSubstr(absent)));
  }
}

// An agent.yaml for `engine` with nothing to reach: the controller and the
// engine's port are closed, no health or transfer listener.
std::string WriteConfig(const testing::TempDir& dir, const std::string& engine) {
  const std::string path = dir.Sub(engine + ".yaml");
  testing::TestPki pki(dir.Sub("certs-" + engine));
  pki.Node("n1");
  const std::string yaml = absl::StrCat(
      "node: n1\nstack: main\ncontroller: 127.0.0.1:", testing::FreePort(),
      "\naddresses: {internal: 127.0.0.1}\nengine:\n  type: ", engine,
      "\n  port: ", testing::FreePort(), "\n  data_dir: ", dir.Sub(engine + "-data"),
      engine == "redis" ? "" : "\n  user: tandem", "\n  os_user: ", testing::CurrentUserName(),
      "\nenv_file: ",
      dir.Sub(engine + ".env"), "\nstate_dir: ", dir.Sub(engine + "-state"),
      "\nhealth_listen: \"\"\ncerts_dir: ", pki.dir(), "\n");
  EXPECT_TRUE(WriteFileAtomic(path, yaml, 0644).ok());
  return path;
}

std::string ReadLink(const std::string& path) {
  char buffer[4096];
  const ssize_t n = readlink(path.c_str(), buffer, sizeof(buffer) - 1);
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
}

std::string RealPath(const std::string& path) {
  char* resolved = realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return "";
  std::string result = resolved;
  free(resolved);
  return result;
}

TEST(DispatcherTest, RunBecomesTheEngineAgentInPlace) {
  testing::TempDir dir("tdsp");
  for (const char* engine_name : {"postgresql", "mysql", "redis"}) {
    const std::string engine = engine_name;
    SCOPED_TRACE(engine);
    const std::string config = WriteConfig(dir, engine);
    const std::string log = dir.Sub(engine + ".log");
    testing::ChildOptions options;
    options.log_file = log;
    absl::StatusOr<std::unique_ptr<testing::ChildProcess>> agent =
        testing::ChildProcess::Start({TANDEM_AGENT_BIN, "--config", config}, options);
    ASSERT_TRUE(agent.ok()) << agent.status();
    const pid_t pid = (*agent)->pid();
    const std::string expected = RealPath(BuildDir() + "/tandem-agent-" + engine);
    ASSERT_FALSE(expected.empty());
    // Same PID, now the engine's binary (setpriv, then the dispatcher, exec
    // in place before it).
    const bool became = testing::PollUntil(
        [&] {
          return ReadLink(absl::StrCat("/proc/", pid, "/exe")) == expected || !(*agent)->Running();
        },
        std::chrono::seconds(20)) && (*agent)->Running();
    ASSERT_TRUE(became) << "exe: " << ReadLink(absl::StrCat("/proc/", pid, "/exe")) << "\n"
                        << testing::FileTail(log);
    absl::StatusOr<std::string> environ = ReadFile(absl::StrCat("/proc/", pid, "/environ"));
    ASSERT_TRUE(environ.ok()) << environ.status();
    EXPECT_THAT(*environ, HasSubstr(std::string("GNUTLS_NO_IMPLICIT_INIT=1\0", 26)));
    absl::StatusOr<std::string> cmdline = ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
    ASSERT_TRUE(cmdline.ok());
    EXPECT_EQ(*cmdline, absl::StrCat(BuildDir(), "/tandem-agent-", engine, std::string(1, '\0'),
                                     "--config", std::string(1, '\0'), config,
                                     std::string(1, '\0')));
    // It is the agent: it runs its loop and stops cleanly on SIGTERM.
    ASSERT_TRUE(testing::PollUntil(
        [&] {
          absl::StatusOr<std::string> text = ReadFile(log);
          return text.ok() && text->find("tandem-agent starting: node=n1") != std::string::npos;
        },
        std::chrono::seconds(20)))
        << testing::FileTail(log);
    ASSERT_TRUE((*agent)->Signal(SIGTERM).ok());
    absl::StatusOr<int> code = (*agent)->Wait(std::chrono::seconds(60));
    ASSERT_TRUE(code.ok()) << code.status() << "\n" << testing::FileTail(log);
    EXPECT_EQ(*code, 0) << testing::FileTail(log);
  }
}

TEST(DispatcherTest, AnswersHelpRoleTableAndCheckConfigItself) {
  testing::TempDir dir("tdsp");
  absl::StatusOr<RunResult> help = tandem::Run({TANDEM_AGENT_BIN, "--help"});
  ASSERT_TRUE(help.ok());
  EXPECT_EQ(help->exit_code, 0);
  EXPECT_EQ(help->output, kAgentUsage);

  // One role table, whichever binary prints it.
  absl::StatusOr<RunResult> table = tandem::Run({TANDEM_AGENT_BIN, "role-table"});
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->exit_code, 0);
  EXPECT_THAT(table->output, HasSubstr("master"));
  for (const std::string& binary : EngineBinaries()) {
    absl::StatusOr<RunResult> own = tandem::Run({BuildDir() + "/" + binary, "role-table"});
    ASSERT_TRUE(own.ok());
    EXPECT_EQ(own->output, table->output) << binary;
  }

  const std::string config = WriteConfig(dir, "redis");
  absl::StatusOr<RunResult> check =
      tandem::Run({TANDEM_AGENT_BIN, "check-config", "--config", config});
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(check->exit_code, 0) << check->output;
  EXPECT_THAT(check->output, HasSubstr(": ok (node n1, redis on port "));

  absl::StatusOr<RunResult> unknown =
      tandem::Run({TANDEM_AGENT_BIN, "frobnicate", "--config", config});
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(unknown->exit_code, 2);
  EXPECT_THAT(unknown->output, HasSubstr("unknown command 'frobnicate'"));

  absl::StatusOr<RunResult> bad =
      tandem::Run({TANDEM_AGENT_BIN, "--config", dir.Sub("missing.yaml")});
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->exit_code, 2) << bad->output;
}

TEST(DispatcherTest, AnInstallationWithoutTheEnginesAgentIsAConfigError) {
  testing::TempDir dir("tdsp");
  // A dispatcher alone, with no engine agent beside it nor in ../lib/tandem.
  ASSERT_TRUE(MakeDirs(dir.Sub("bin")).ok());
  const std::string lone = dir.Sub("bin/tandem-agent");
  absl::StatusOr<std::string> binary = ReadFile(TANDEM_AGENT_BIN);
  ASSERT_TRUE(binary.ok());
  ASSERT_TRUE(WriteFileAtomic(lone, *binary, 0755).ok());
  ASSERT_EQ(chmod(lone.c_str(), 0755), 0);
  const std::string config = WriteConfig(dir, "postgresql");
  for (const char* command : {"check-config", "plan", "run"}) {
    absl::StatusOr<RunResult> result = tandem::Run({lone, command, "--config", config});
    ASSERT_TRUE(result.ok()) << command;
    EXPECT_EQ(result->exit_code, 2) << command << ": " << result->output;
    EXPECT_THAT(result->output, HasSubstr("this installation has no agent for it")) << command;
    EXPECT_THAT(result->output, HasSubstr(dir.Sub("bin/../lib/tandem/tandem-agent-postgresql")))
        << command;
  }
}

}  // namespace
}  // namespace tandem

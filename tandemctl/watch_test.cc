// status --watch (rate, ETA, frames), the new options, the help texts, and
// the generated bash completion run under a real bash.
#include "tandemctl/watch.h"

#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/subprocess.h"
#include "gtest/gtest.h"
#include "tandemctl/args.h"
#include "tandemctl/completion.h"

namespace tandem::cli {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint64_t kMiB = 1024 * 1024;

TEST(ProgressRateTest, RateAndEta) {
  const auto t0 = std::chrono::steady_clock::time_point(seconds(1000));
  ProgressRate rate;
  EXPECT_EQ(rate.BytesPerSecond(), std::nullopt);
  rate.Add(t0, 0, 1024 * kMiB);
  EXPECT_EQ(rate.BytesPerSecond(), std::nullopt);  // one sample
  rate.Add(t0 + milliseconds(100), 10 * kMiB, 1024 * kMiB);
  EXPECT_EQ(rate.BytesPerSecond(), std::nullopt);  // too close together
  rate.Add(t0 + seconds(2), 256 * kMiB, 1024 * kMiB);
  ASSERT_TRUE(rate.BytesPerSecond().has_value());
  EXPECT_DOUBLE_EQ(*rate.BytesPerSecond(), 128.0 * kMiB);
  EXPECT_EQ(rate.Eta(), seconds(6));
  EXPECT_EQ(ProgressLine(256 * kMiB, 1024 * kMiB, rate),
            "256.0 MiB of 1.0 GiB (25%), 128.0 MiB/s, ETA 6.0s");

  // Old samples leave the window (10 s): the rate follows the recent pace.
  rate.Add(t0 + seconds(20), 276 * kMiB, 1024 * kMiB);
  rate.Add(t0 + seconds(30), 296 * kMiB, 1024 * kMiB);
  EXPECT_DOUBLE_EQ(*rate.BytesPerSecond(), 2.0 * kMiB);

  // A new bootstrap (another total, or done going back) starts over.
  rate.Add(t0 + seconds(31), 1 * kMiB, 2048 * kMiB);
  EXPECT_EQ(rate.BytesPerSecond(), std::nullopt);
  EXPECT_EQ(ProgressLine(1 * kMiB, 2048 * kMiB, rate), "1.0 MiB of 2.0 GiB (0%), measuring...");

  // Stalled: a rate of 0 has no ETA.
  ProgressRate stalled;
  stalled.Add(t0, 5 * kMiB, 10 * kMiB);
  stalled.Add(t0 + seconds(1), 5 * kMiB, 10 * kMiB);
  EXPECT_EQ(stalled.Eta(), std::nullopt);
  EXPECT_EQ(ProgressLine(5 * kMiB, 10 * kMiB, stalled),
            "5.0 MiB of 10.0 MiB (50%), 0 B/s, ETA unknown");
  EXPECT_EQ(ProgressLine(0, 0, stalled), "");
}

v1::NodeStatus BootstrappingNode() {
  v1::NodeStatus node;
  node.mutable_info()->set_id("db2");
  node.mutable_info()->set_stack("eu");
  node.mutable_desired()->set_role(v1::ROLE_SLAVE);
  node.mutable_desired()->set_generation(5);
  node.set_seconds_since_report(0.5);
  node.mutable_observed()->set_current_step("bootstrap");
  node.mutable_observed()->mutable_bootstrap()->set_done_bytes(256 * kMiB);
  node.mutable_observed()->mutable_bootstrap()->set_total_bytes(1024 * kMiB);
  return node;
}

TEST(WatchFrameTest, TitleStatusAndProgress) {
  ProgressRate rate;
  const auto t0 = std::chrono::steady_clock::time_point(seconds(1000));
  rate.Add(t0, 0, 1024 * kMiB);
  rate.Add(t0 + seconds(2), 256 * kMiB, 1024 * kMiB);
  const std::string frame = WatchFrame(BootstrappingNode(), rate, seconds(1));
  EXPECT_EQ(frame.substr(0, frame.find('\n')),
            "tandemctl status db2 --watch: every 1s, Ctrl-C to stop");
  EXPECT_NE(frame.find("node"), std::string::npos);
  EXPECT_NE(frame.find("bootstrap"), std::string::npos);
  EXPECT_NE(frame.find("\nbootstrap progress: 256.0 MiB of 1.0 GiB (25%), 128.0 MiB/s, ETA 6.0s\n"),
            std::string::npos)
      << frame;
  EXPECT_EQ(frame.back(), '\n');
  EXPECT_EQ(frame.find("refresh failed"), std::string::npos);

  const std::string failed =
      WatchFrame(BootstrappingNode(), rate, milliseconds(500), "connection refused\nsecond line");
  EXPECT_NE(failed.find("every 0.5s"), std::string::npos);
  EXPECT_NE(failed.find("(refresh failed: connection refused second line)\n"), std::string::npos)
      << failed;

  v1::NodeStatus idle = BootstrappingNode();
  idle.mutable_observed()->clear_bootstrap();
  EXPECT_EQ(WatchFrame(idle, ProgressRate(), seconds(1)).find("bootstrap progress"),
            std::string::npos);
}

TEST(WatchFrameTest, RedrawPrefix) {
  EXPECT_EQ(RedrawPrefix(0), "");
  EXPECT_EQ(RedrawPrefix(24), "\033[24F\033[J");
}

TEST(WatchArgsTest, Options) {
  struct Case {
    std::vector<std::string> args;
    std::string error;  // "" = accepted
    bool watch = false;
    milliseconds interval = seconds(1);
  };
  const std::vector<Case> cases = {
      {{"status", "db2"}, "", false},
      {{"status", "db2", "--watch"}, "", true},
      {{"status", "-w", "db2"}, "", true},
      {{"status", "db2", "--watch", "--interval", "250ms"}, "", true, milliseconds(250)},
      {{"status", "db2", "-w", "--interval=2s"}, "", true, seconds(2)},
      {{"status", "db2", "--interval", "2s"}, "needs --watch"},
      {{"status", "db2", "-w", "--interval", "50ms"}, "at least 100ms"},
      {{"status", "db2", "-w", "--interval", "soon"}, "invalid duration"},
      {{"status", "db2", "-w", "-o", "json"}, "--watch"},
      {{"nodes", "--watch"}, "does not apply"},
      {{"status", "--watch"}, "needs a NODE"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Command> command = ParseArgs(c.args);
    const std::string line = absl::StrJoin(c.args, " ");
    if (c.error.empty()) {
      ASSERT_TRUE(command.ok()) << line << ": " << command.status();
      EXPECT_EQ(command->verb, Verb::kStatus) << line;
      EXPECT_EQ(command->node, "db2") << line;
      EXPECT_EQ(command->watch, c.watch) << line;
      EXPECT_EQ(command->interval, c.interval) << line;
    } else {
      ASSERT_FALSE(command.ok()) << line;
      EXPECT_NE(command.status().message().find(c.error), std::string::npos)
          << line << ": " << command.status();
    }
  }
  absl::StatusOr<Command> completion = ParseArgs({"completion", "bash"});
  ASSERT_TRUE(completion.ok()) << completion.status();
  EXPECT_EQ(completion->verb, Verb::kCompletion);
  EXPECT_EQ(completion->shell, "bash");
  EXPECT_FALSE(ParseArgs({"completion", "zsh"}).ok());
  EXPECT_FALSE(ParseArgs({"completion"}).ok());
}

TEST(HelpTest, EveryVerbHasHelpWithAnExample) {
  for (const VerbUsage& verb : VerbUsages()) {
    const std::string topic = verb.name.substr(0, verb.name.find(' '));
    std::optional<std::string> text = HelpText(topic);
    ASSERT_TRUE(text.has_value()) << topic;
    EXPECT_NE(text->find("Usage: tandemctl"), std::string::npos) << topic;
    EXPECT_NE(text->find("Example"), std::string::npos) << topic;
    EXPECT_NE(HelpText("")->find(topic), std::string::npos) << topic << " missing in the overview";
    // `tandemctl VERB --help` reaches the same text.
    std::vector<std::string> args = absl::StrSplit(verb.name, ' ');
    args.push_back("--help");
    absl::StatusOr<Command> help = ParseArgs(args);
    ASSERT_TRUE(help.ok()) << verb.name << ": " << help.status();
    EXPECT_EQ(help->verb, Verb::kHelp);
    EXPECT_EQ(help->help_topic, topic == "help" ? "help" : topic) << verb.name;
  }
  EXPECT_NE(HelpText("")->find("Examples:"), std::string::npos);
  EXPECT_NE(HelpText("status")->find("--watch"), std::string::npos);
}

// Runs the completion function in bash for the words typed so far; the
// last word is the one being completed. "tandemctl" is a stub that prints
// a `nodes` table (and says which controller it was asked).
class CompletionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/tandem-completion.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    script_ = dir_ + "/tandemctl.bash";
    ASSERT_TRUE(WriteFileAtomic(script_, BashCompletionScript()).ok());
    stub_ = dir_ + "/tandemctl";
    ASSERT_TRUE(
        WriteFileAtomic(stub_,
                        "#!/bin/sh\n"
                        "case \"$*\" in\n"
                        "  *'--controller 10.0.0.9:7400'*) printf 'NODE STACK\\nfar1 eu\\n' ;;\n"
                        "  *nodes*) printf 'NODE  STACK\\ndb1   eu\\ndb2   eu\\n' ;;\n"
                        "esac\n",
                        0755)
            .ok());
  }
  void TearDown() override { (void)RunShell(absl::StrCat("rm -rf '", dir_, "'")); }

  std::string Complete(const std::vector<std::string>& words) {
    std::vector<std::string> quoted = {absl::StrCat("'", stub_, "'")};
    for (const std::string& w : words) quoted.push_back(absl::StrCat("'", w, "'"));
    const std::string program = absl::StrCat(
        "source '", script_, "' && COMP_WORDS=(", absl::StrJoin(quoted, " "),
        ") && COMP_CWORD=", words.size(), " && _tandemctl && echo \"${COMPREPLY[*]}\"");
    absl::StatusOr<RunResult> r = tandem::Run({"bash", "-c", program});
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit_code, 0) << r->output;
    std::string out = r->output;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

  std::string dir_, script_, stub_;
};

TEST_F(CompletionTest, CompletesVerbsOptionsAndNodes) {
  struct Case {
    std::vector<std::string> words;
    std::string want;
  };
  const std::vector<Case> cases = {
      {{"rep"}, "replication"},
      {{"st"}, "status"},
      {{"replication", ""}, "enable disable"},
      {{"slave", "r"}, "remove"},
      {{"replication", "enable", "--master", ""}, "db1 db2"},
      {{"replication", "enable", "--master", "db1", "--slave", "db"}, "db1 db2"},
      {{"status", ""}, "db1 db2"},
      {{"slave", "add", "db2", ""}, "db1 db2"},
      {{"-o", "json", "status", "d"}, "db1 db2"},
      {{"--controller", "10.0.0.9:7400", "status", ""}, "far1"},
      {{"status", "db1", "--w"}, "--watch"},
      {{"events", "--f"}, "--follow"},
      {{"wait", "--t"}, "--timeout"},
      {{"cert", ""}, "create-ca create-node create-controller create-client list"},
      {{"-o", ""}, "table json"},
      {{"--output", "t"}, "table"},
      {{"completion", ""}, "bash"},
      {{"help", "re"}, "replication resync"},
      {{"nodes", "--c"}, "--controller --certs-dir"},
      {{"wait", "--timeout", ""}, ""},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Complete(c.words), c.want) << absl::StrJoin(c.words, " ");
  }
  // Every verb is offered on an empty line.
  const std::string all = Complete({""});
  for (const VerbUsage& verb : VerbUsages()) {
    EXPECT_NE(all.find(verb.name.substr(0, verb.name.find(' '))), std::string::npos) << verb.name;
  }
}

}  // namespace
}  // namespace tandem::cli

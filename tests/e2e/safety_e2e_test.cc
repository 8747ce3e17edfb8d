// "Never two masters", end to end on real PostgreSQL servers through the
// real binaries: forced promotes with the old master coming back, hung
// agents during a switchover, the cluster id of the controller's data dir,
// and two agents started with one node id.
#include <signal.h>

#include <atomic>
#include <future>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/prometheus_text.h"
#include "gtest/gtest.h"
#include "tests/e2e/pg_e2e_fixture.h"

namespace tandem::testing {
namespace {

class SafetyE2eTest : public PostgresqlE2eTest {
 protected:
  // Runs tandemctl in the background (for verbs that block).
  std::future<CtlResult> CtlAsync(std::vector<std::string> args) {
    return std::async(std::launch::async, [this, args] { return cluster_.Ctl(args); });
  }

  // db1 master of db2, converged, with a table `t`.
  void PairOf(PgServer& db1, PgServer& db2) {
    (void)db2;
    ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() >= 2; }, seconds(30)));
    cluster_.Wait({"db1", "db2"});
    ASSERT_TRUE(db1.Exec("CREATE TABLE t (v text); INSERT INTO t VALUES ('before')").ok());
    CtlResult enable = cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"});
    ASSERT_EQ(enable.exit_code, 0) << enable.out;
    cluster_.Wait({"db1", "db2"});
  }

  // observed.hold_reason in the agent's /status ("?" when it does not answer).
  std::string AgentHoldReason(const std::string& id) {
    HttpReply reply = HttpCall(cluster_.node(id).health_port, "/status");
    nlohmann::json doc = nlohmann::json::parse(reply.body, nullptr, false);
    if (reply.status != 200 || !doc.is_object()) return "?";
    return doc.value("observed", nlohmann::json::object()).value("hold_reason", "?");
  }
  // tandem_agent_desired_held in the agent's /metrics (-1 when absent).
  int AgentHeldGauge(const std::string& id) {
    HttpReply reply = HttpCall(cluster_.node(id).health_port, "/metrics");
    absl::StatusOr<std::vector<prom::ParsedFamily>> parsed = prom::ParseText(reply.body);
    if (!parsed.ok()) return -1;
    absl::StatusOr<double> held = prom::FindValue(*parsed, "tandem_agent_desired_held", {});
    return held.ok() ? static_cast<int>(*held) : -1;
  }

  std::string SwitchoverOf(const std::string& id) {
    return cluster_.Nodes()[id].value("switchover", "");
  }
};

// (a) promote --force with the old master's host gone, as an operator
// would: db1 master of db2 and db3 (one bootstrap per group at a time);
// db1's agent is killed and its server stopped; db3's agent is down too.
// After promote db2 --force, db1's host comes back: its server starts first
// (as a boot would), then its agent. db1 waits in the bootstrap queue
// behind db3, yet its writability is revoked at once: it refuses writes
// within seconds of its agent's start and every write tried every 250 ms
// for 20 s after; it is rebuilt from db2 when its turn comes.
TEST_F(SafetyE2eTest, AMasterForcedOutStaysReadOnlyWhenItReturnsWhateverTheQueue) {
  PgServer& db1 = AddPgNode("db1");
  PgServer& db2 = AddPgNode("db2");
  PgServer& db3 = AddPgNode("db3");
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 3; }, seconds(30)));
  PairOf(db1, db2);
  ASSERT_EQ(cluster_.Ctl({"slave", "add", "db3", "--master", "db1"}).exit_code, 0);
  cluster_.Wait({"db1", "db2", "db3"}, "180s");

  cluster_.KillAgent("db1");
  ASSERT_TRUE(db1.Stop().ok());
  cluster_.KillAgent("db3");
  ASSERT_TRUE(PollUntil(
      [&] {
        auto nodes = cluster_.Nodes();
        return !nodes["db1"].value("agent_connected", true) &&
               !nodes["db3"].value("agent_connected", true);
      },
      seconds(30)));
  CtlResult forced = cluster_.Ctl({"promote", "db2", "--force"});
  ASSERT_EQ(forced.exit_code, 0) << forced.out;
  cluster_.Wait({"db2"});
  ASSERT_TRUE(Writable(db2));
  {
    auto nodes = cluster_.Nodes();
    EXPECT_TRUE(nodes["db1"].value("queued", false)) << cluster_.Ctl({"nodes"}).out;
    EXPECT_EQ(nodes["db1"]["desired"]["role"], "slave");
  }

  // db1's host comes back: the server first, writable as a boot leaves it.
  ASSERT_TRUE(db1.Start().ok());
  ASSERT_TRUE(Writable(db1)) << "the boot starts it writable (the agent is not there yet)";
  cluster_.StartAgent("db1");
  const auto agent_started = std::chrono::steady_clock::now();
  ASSERT_TRUE(PollUntil([&] { return !db1.Exec("INSERT INTO t VALUES ('split')").ok(); },
                        seconds(20), milliseconds(250)))
      << "db1 still accepts writes 20 s after its agent started";
  EXPECT_LT(std::chrono::steady_clock::now() - agent_started, seconds(20));
  int accepted = 0;
  int tried = 0;
  PollUntil(
      [&] {
        ++tried;
        accepted += db1.Exec(absl::StrCat("INSERT INTO t VALUES ('try ", tried, "')")).ok();
        return false;
      },
      seconds(20), milliseconds(250));
  EXPECT_GE(tried, 40);
  EXPECT_EQ(accepted, 0) << "db1 accepted writes while db2 was the master";
  EXPECT_TRUE(Writable(db2));
  EXPECT_TRUE(cluster_.Nodes()["db1"].value("queued", false)) << "still behind db3";

  // db3's agent returns: db3 is rebuilt, then db1 (its own data kept aside).
  const size_t aside = MovedAside(db1);
  cluster_.StartAgent("db3");
  cluster_.Wait({"db1", "db2", "db3"}, "240s");
  EXPECT_TRUE(InRecovery(db1));
  EXPECT_TRUE(InRecovery(db3));
  EXPECT_EQ(MovedAside(db1), aside + 1);
  EXPECT_EQ(cluster_.Nodes()["db1"]["upstream_id"], "db2");
}

// (b) One hung agent: db1's agent is stopped with its connection open while
// db1 is the master of db2; db3 and db4 are an unrelated pair to be. A
// switchover to db2 waits for db1's fence, but other groups are not held
// up, and promote --force takes over once db1's agent stops answering.
TEST_F(SafetyE2eTest, AHungAgentHoldsUpNoOtherGroupAndForceOverridesItsSwitchover) {
  PgServer& db1 = AddPgNode("db1");
  PgServer& db2 = AddPgNode("db2");
  AddPgNode("db3");
  PgServer& db4 = AddPgNode("db4");
  ASSERT_TRUE(PollUntil([&] { return cluster_.Nodes().size() == 4; }, seconds(30)));
  PairOf(db1, db2);
  cluster_.Wait({"db3", "db4"});

  HangAgent("db1");
  std::future<CtlResult> promote = CtlAsync({"promote", "db2"});
  ASSERT_TRUE(PollUntil([&] { return !SwitchoverOf("db2").empty(); }, seconds(30)))
      << cluster_.Ctl({"nodes"}).out;
  EXPECT_NE(cluster_.Ctl({"nodes"}).out.find("switchover: promote db2: fencing db1"),
            std::string::npos);

  // Another group is not held up by it.
  CtlResult other = cluster_.Ctl({"replication", "enable", "--master", "db3", "--slave", "db4"});
  EXPECT_EQ(other.exit_code, 0) << other.out;
  EXPECT_EQ(other.out.find("in progress"), std::string::npos) << other.out;
  cluster_.Wait({"db3", "db4"});
  EXPECT_TRUE(InRecovery(db4));

  // The group in switchover refuses other changes, saying how to get out.
  CtlResult busy = cluster_.Ctl({"resync", "db2"});
  EXPECT_NE(busy.exit_code, 0);
  EXPECT_NE(busy.out.find("promote --force db2"), std::string::npos) << busy.out;

  // --force overrides it: db1 is fenced first while its agent still counts
  // as answering, and taken over without the fence once it does not.
  const auto forced_at = std::chrono::steady_clock::now();
  CtlResult forced = cluster_.Ctl({"promote", "db2", "--force"});
  EXPECT_EQ(forced.exit_code, 0) << forced.out;
  EXPECT_NE(forced.out.find("the switchover is done"), std::string::npos) << forced.out;
  EXPECT_LT(std::chrono::steady_clock::now() - forced_at, seconds(30));
  CtlResult first = promote.get();
  EXPECT_EQ(first.exit_code, 0) << first.out;
  cluster_.Wait({"db2"});
  EXPECT_TRUE(Writable(db2));
  EXPECT_EQ(cluster_.Env("db2")["TANDEM_ROLE"], "master");
  bool overridden = false;
  for (const std::string& message : cluster_.EventMessages("db2")) {
    overridden |= absl::StrContains(message, "db1 stopped answering before it was fenced");
  }
  EXPECT_TRUE(overridden) << cluster_.Ctl({"events"}).out;

  // db1's agent comes back: db1 is read-only at once and rebuilt from db2.
  ResumeAgent("db1");
  EXPECT_TRUE(PollUntil([&] { return !Writable(db1); }, seconds(30)));
  cluster_.Wait({"db1", "db2"}, "180s");
  EXPECT_TRUE(InRecovery(db1));
  EXPECT_EQ(cluster_.Nodes()["db1"]["upstream_id"], "db2");
}

// (b) A switchover whose fence does not come within switchover_timeout is
// aborted cleanly: db1 unfenced and still the master, promote and wait exit
// non-zero with the reason, an event records it; a later promote works.
TEST_F(SafetyE2eTest, ASwitchoverThatCannotFenceIsAbortedAtItsDeadline) {
  cluster_.KillController();
  cluster_.StartController("switchover_timeout: 6\n");
  PgServer& db1 = AddPgNode("db1");
  PgServer& db2 = AddPgNode("db2");
  PairOf(db1, db2);

  HangAgent("db1");
  const auto started = std::chrono::steady_clock::now();
  CtlResult promote = cluster_.Ctl({"promote", "db2"});
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(promote.exit_code, 1) << promote.out;
  EXPECT_NE(promote.out.find("promote db2 aborted: db1 did not report its fence within 6s"),
            std::string::npos)
      << promote.out;
  EXPECT_NE(promote.out.find("db1 is unfenced and stays the master"), std::string::npos);
  EXPECT_GE(took, seconds(5));
  EXPECT_LT(took, seconds(30));
  CtlResult wait = cluster_.Ctl({"wait", "db1", "db2", "--timeout", "60s"});
  EXPECT_EQ(wait.exit_code, 1) << wait.out;
  EXPECT_NE(wait.out.find("promote db2 aborted"), std::string::npos) << wait.out;
  bool recorded = false;
  for (const std::string& message : cluster_.EventMessages("db1")) {
    recorded |= absl::StrContains(message, "promote db2 aborted");
  }
  EXPECT_TRUE(recorded) << cluster_.Ctl({"events"}).out;
  EXPECT_TRUE(InRecovery(db2)) << "db2 was never made the master";

  // db1's agent comes back: db1 is the writable master, db2 its slave.
  ResumeAgent("db1");
  EXPECT_TRUE(PollUntil([&] { return Writable(db1); }, seconds(30)));
  auto nodes = cluster_.Nodes();
  EXPECT_EQ(nodes["db1"]["desired"]["role"], "master");
  EXPECT_EQ(nodes["db2"]["upstream_id"], "db1");
  // The operator tries again; now the fence comes.
  CtlResult again = cluster_.Ctl({"promote", "db2"});
  EXPECT_EQ(again.exit_code, 0) << again.out;
  cluster_.Wait({"db1", "db2"}, "180s");
  EXPECT_TRUE(Writable(db2));
  EXPECT_TRUE(InRecovery(db1));
}

// (c) promote --force while the old master's agent answers: the controller
// fences it first (never two writable nodes, sampled every 50 ms), so the
// switchover completes as a fenced one and db1 rejoins in place.
TEST_F(SafetyE2eTest, ForceWhileTheOldMastersAgentAnswersFencesFirst) {
  PgServer& db1 = AddPgNode("db1");
  PgServer& db2 = AddPgNode("db2");
  PairOf(db1, db2);
  std::atomic<bool> stop{false};
  std::atomic<int> max_writable{0};
  std::atomic<int> samples{0};
  std::thread sampler([&] {
    PollUntil(
        [&] {
          // The new master first: once writable it stays so.
          const int writable = Writable(db2) + Writable(db1);
          max_writable = std::max(max_writable.load(), writable);
          ++samples;
          return stop.load();
        },
        std::chrono::minutes(5), milliseconds(50));
  });
  const size_t aside = MovedAside(db1);
  CtlResult forced = cluster_.Ctl({"promote", "db2", "--force"});
  EXPECT_EQ(forced.exit_code, 0) << forced.out;
  cluster_.Wait({"db1", "db2"}, "180s");
  stop = true;
  sampler.join();
  EXPECT_LE(max_writable.load(), 1) << "two writable nodes at once";
  EXPECT_GT(samples.load(), 3);
  EXPECT_TRUE(Writable(db2));
  EXPECT_TRUE(InRecovery(db1));
  EXPECT_EQ(MovedAside(db1), aside) << "fenced first, db1 rejoined without a full copy";
  bool fenced_first = false;
  for (const std::string& message : cluster_.EventMessages("db1")) {
    fenced_first |= absl::StrContains(message, "db1's agent answers, so it is fenced first");
  }
  EXPECT_TRUE(fenced_first) << cluster_.Ctl({"events"}).out;
}

// (d) The controller's data dir restored from an older backup (generations
// go back), then lost (another cluster id): the agents keep their roles and
// say so (tandemctl nodes, status, wait; the agent's /status and
// tandem_agent_desired_held), and `tandemctl adopt` brings them back under
// the controller.
TEST_F(SafetyE2eTest, AgentsHoldTheirRolesAgainstAnOlderOrForeignControllerUntilAdopted) {
  cluster_.ServeHealth();
  PgServer& db1 = AddPgNode("db1");
  PgServer& db2 = AddPgNode("db2");
  PairOf(db1, db2);
  const std::string state_file = cluster_.dir().Sub("controller/state.json");
  cluster_.KillController();
  absl::StatusOr<std::string> backup = ReadFile(state_file);
  ASSERT_TRUE(backup.ok()) << backup.status();
  cluster_.StartController();
  ASSERT_EQ(cluster_.Ctl({"resync", "db2"}).exit_code, 0);
  cluster_.Wait({"db1", "db2"}, "180s");

  // Restored from the backup: the generations of both go back (db1's
  // changed too while db2's copy was under way).
  cluster_.KillController();
  ASSERT_TRUE(WriteFileAtomic(state_file, *backup, 0644).ok());
  cluster_.StartController();
  auto hold_of = [&](const std::string& id) -> std::string {
    nlohmann::json node = cluster_.Nodes()[id];
    if (!node.is_object()) return "";
    return node.value("observed", nlohmann::json::object()).value("hold_reason", "");
  };
  ASSERT_TRUE(PollUntil([&] { return !hold_of("db1").empty() && !hold_of("db2").empty(); },
                        seconds(30)))
      << cluster_.Ctl({"nodes"}).out;
  EXPECT_NE(hold_of("db2").find("older than the held generation"), std::string::npos);
  EXPECT_NE(hold_of("db1").find("older than the held generation"), std::string::npos);
  EXPECT_NE(cluster_.Ctl({"nodes"}).out.find("holds its role"), std::string::npos);
  EXPECT_NE(cluster_.Ctl({"status", "db2"}).out.find("holds its role"), std::string::npos);
  CtlResult wait = cluster_.Ctl({"wait", "db2", "--timeout", "30s"});
  EXPECT_EQ(wait.exit_code, 1);
  EXPECT_NE(wait.out.find("db2 holds its role"), std::string::npos) << wait.out;
  EXPECT_TRUE(InRecovery(db2)) << "db2 keeps its role";
  EXPECT_TRUE(Writable(db1)) << "db1 keeps its role";
  // The agent says so itself, for monitoring.
  EXPECT_NE(AgentHoldReason("db2").find("older than the held generation"), std::string::npos);
  EXPECT_EQ(AgentHeldGauge("db2"), 1);
  CtlResult adopt = cluster_.Ctl({"adopt", "db2"});
  EXPECT_EQ(adopt.exit_code, 0) << adopt.out;
  EXPECT_NE(adopt.out.find("db2: adopted: slave of db1"), std::string::npos) << adopt.out;
  // Adopting one node adopts only that one.
  ASSERT_TRUE(PollUntil([&] { return hold_of("db2").empty(); }, seconds(30)))
      << cluster_.Ctl({"nodes"}).out;
  EXPECT_FALSE(hold_of("db1").empty());
  adopt = cluster_.Ctl({"adopt", "db1"});
  EXPECT_EQ(adopt.exit_code, 0) << adopt.out;
  cluster_.Wait({"db1", "db2"}, "180s");
  EXPECT_TRUE(hold_of("db1").empty());
  EXPECT_TRUE(hold_of("db2").empty());
  EXPECT_TRUE(PollUntil([&] { return AgentHeldGauge("db2") == 0; }, seconds(10)));
  EXPECT_EQ(AgentHoldReason("db2"), "");

  // The data dir is lost: a new cluster id. Both agents hold their roles.
  cluster_.KillController();
  ASSERT_EQ(::rename(cluster_.dir().Sub("controller").c_str(),
                     cluster_.dir().Sub("controller.lost").c_str()),
            0);
  cluster_.StartController();
  ASSERT_TRUE(PollUntil([&] { return !hold_of("db1").empty() && !hold_of("db2").empty(); },
                        seconds(30)))
      << cluster_.Ctl({"nodes"}).out;
  EXPECT_NE(hold_of("db1").find("comes from cluster"), std::string::npos) << hold_of("db1");
  EXPECT_NE(AgentHoldReason("db1").find("comes from cluster"), std::string::npos);
  EXPECT_EQ(AgentHeldGauge("db1"), 1);
  EXPECT_TRUE(Writable(db1)) << "db1 stays the writable master";
  EXPECT_TRUE(InRecovery(db2)) << "db2 stays its slave";
  CtlResult refused = cluster_.Ctl({"adopt", "db9"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.out.find("unknown node db9"), std::string::npos) << refused.out;
  // The operator re-creates the group on the new controller, then adopts.
  ASSERT_EQ(cluster_.Ctl({"replication", "enable", "--master", "db1", "--slave", "db2"}).exit_code,
            0);
  for (const char* id : {"db1", "db2"}) {
    CtlResult adopted = cluster_.Ctl({"adopt", id});
    EXPECT_EQ(adopted.exit_code, 0) << adopted.out;
  }
  cluster_.Wait({"db1", "db2"}, "180s");
  EXPECT_TRUE(hold_of("db1").empty());
  EXPECT_TRUE(Writable(db1));
  EXPECT_TRUE(InRecovery(db2));
  ASSERT_TRUE(db1.Exec("INSERT INTO t VALUES ('after')").ok());
  EXPECT_TRUE(HasRows(db2, "t", 2, seconds(10)));
}

// (e) A second agent started with a node id already connected is refused
// (the controller shows it beside the address of the agent it serves) and
// changes nothing; once the first is gone for good, it may take over.
TEST_F(SafetyE2eTest, ASecondAgentWithTheSameNodeIdIsRefused) {
  PgServer& db1 = AddPgNode("db1");
  PgServer& db2 = AddPgNode("db2");
  PairOf(db1, db2);
  const std::string first_address = cluster_.Nodes()["db1"].value("agent_address", "");
  ASSERT_FALSE(first_address.empty());

  // The same agent.yaml, but its own state dir and env file.
  absl::StatusOr<std::string> yaml = ReadFile(cluster_.node("db1").config_path);
  ASSERT_TRUE(yaml.ok());
  std::string copy = *yaml;
  for (const std::string& key : {"state_dir: ", "env_file: "}) {
    const size_t at = copy.find(key);
    ASSERT_NE(at, std::string::npos);
    copy.insert(copy.find('\n', at), "-twin");
  }
  const std::string twin_config = cluster_.dir().Sub("db1-twin.yaml");
  ASSERT_TRUE(WriteFileAtomic(twin_config, copy, 0600).ok());
  ChildOptions options;
  options.log_file = cluster_.dir().Sub("db1-twin-agent.log");
  absl::StatusOr<std::unique_ptr<ChildProcess>> twin =
      ChildProcess::Start({TANDEM_AGENT_BIN, "--config", twin_config}, options);
  ASSERT_TRUE(twin.ok()) << twin.status();

  ASSERT_TRUE(PollUntil(
      [&] { return !cluster_.Nodes()["db1"].value("duplicate_agent", "").empty(); }, seconds(30)))
      << cluster_.Ctl({"nodes"}).out;
  auto nodes = cluster_.Nodes();
  EXPECT_NE(nodes["db1"].value("duplicate_agent", "").find("a second agent tried to connect as db1"),
            std::string::npos);
  EXPECT_EQ(nodes["db1"].value("agent_address", ""), first_address) << "the first one serves";
  const std::string table = cluster_.Ctl({"nodes"}).out;
  EXPECT_NE(table.find("a second agent tried"), std::string::npos) << table;
  EXPECT_NE(cluster_.Ctl({"status", "db1"}).out.find(first_address), std::string::npos);
  // The first agent keeps serving db1: a change converges.
  ASSERT_TRUE(db1.Exec("INSERT INTO t VALUES ('during')").ok());
  ASSERT_EQ(cluster_.Ctl({"resync", "db2"}).exit_code, 0);
  cluster_.Wait({"db1", "db2"}, "180s");
  EXPECT_TRUE(HasRows(db2, "t", 2, seconds(10)));
  EXPECT_FALSE(PathExists(cluster_.node("db1").env_file + "-twin"))
      << "the refused agent was never told anything";

  // The first agent is gone for good: the second one may serve db1.
  cluster_.KillAgent("db1");
  EXPECT_TRUE(PollUntil(
      [&] {
        nlohmann::json db1_view = cluster_.Nodes()["db1"];
        return db1_view.is_object() && db1_view.value("converged", false) &&
               db1_view.value("agent_address", "") != first_address;
      },
      seconds(60)))
      << cluster_.Ctl({"nodes"}).out;
  EXPECT_TRUE(PathExists(cluster_.node("db1").env_file + "-twin"));
  EXPECT_TRUE(Writable(db1));
  ASSERT_TRUE((*twin)->Signal(SIGTERM).ok());
  EXPECT_TRUE((*twin)->Wait(seconds(10)).ok());
}

}  // namespace
}  // namespace tandem::testing

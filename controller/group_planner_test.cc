// Table tests of the controller's planner (group_planner.h): each
// operation as a pure function of (state, request or report, time, agents).
#include "controller/group_planner.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem {
namespace {

using ::testing::HasSubstr;

NodeInfo Node(const std::string& id, EngineType engine = EngineType::kPostgresql) {
  NodeInfo info;
  info.id = id;
  info.stack = "eu";
  info.engine = engine;
  info.addresses.internal = "10.0.0." + id.substr(id.size() - 1);
  info.port = 5432;
  return info;
}

// A controller's state and what it knows of the agents, driven through the
// planner alone.
class World {
 public:
  World() { options_.policy.bootstraps_per_group = 1; }

  PlanContext Context() const { return PlanContext{now_, options_, agents_, since_}; }

  // Applies an accepted decision; returns the status of the operation.
  absl::Status Apply(const absl::StatusOr<Decision>& decision) {
    if (!decision.ok()) return decision.status();
    last_changes_ = decision->changes;
    state_ = decision->state;
    return absl::OkStatus();
  }
  void Must(const absl::StatusOr<Decision>& decision) {
    absl::Status st = Apply(decision);
    ASSERT_TRUE(st.ok()) << st;
  }

  void Register(const std::string& id) { Must(PlanRegister(state_, Node(id), Context())); }
  void Enable(const std::string& m, const std::string& s) {
    Must(PlanEnable(state_, m, s, std::nullopt, Context()));
  }
  // The node's agent is connected and reports its current generation as
  // converged (writable or not, at `position`).
  void Converged(const std::string& id, bool writable = true, const std::string& position = "") {
    AgentLiveness& agent = agents_[id];
    agent.watchers = std::max(agent.watchers, 1);
    ObservedState observed;
    observed.engine_reachable = true;
    observed.writable = writable;
    observed.position = position;
    observed.converged_generation = state_.nodes.at(id).desired.generation;
    observed.seen_generation = observed.converged_generation;
    Must(PlanReport(state_, id, observed, {}, Context()));
    agent.observed = observed;
    agent.last_report = now_;
  }
  void Disconnect(const std::string& id) { agents_[id].watchers = 0; }
  void Tick() { Must(PlanTick(state_, Context())); }

  // db1 master of db2 and db3, all converged and connected.
  void Group() {
    for (const char* id : {"db1", "db2", "db3"}) Register(id);
    Enable("db1", "db2");
    Enable("db1", "db3");
    for (int round = 0; round < 3; ++round) {
      for (const char* id : {"db1", "db2", "db3"}) Converged(id);
    }
  }

  const NodeRecord& Rec(const std::string& id) const { return state_.nodes.at(id); }
  // "master", "slave of db1", "standalone" by intent.
  std::string Intent(const std::string& id) const {
    const NodeRecord& r = Rec(id);
    if (r.role == Role::kSlave) return absl::StrCat("slave of ", r.upstream_id);
    return std::string(RoleName(r.role)) + (r.fenced ? " (fenced)" : "");
  }
  std::string LastEvent() const {
    return state_.events.empty() ? "" : state_.events.back().message;
  }

  ControllerState state_;
  PlannerOptions options_;
  Liveness agents_;
  absl::Time since_ = absl::FromUnixSeconds(1700000000);
  absl::Time now_ = absl::FromUnixSeconds(1700000100);
  Changes last_changes_;
};

// ---------------------------------------------------------------- refusals

struct RefusalCase {
  std::string name;
  std::function<absl::StatusOr<Decision>(const World&)> op;
  absl::StatusCode code;
  std::string message;
};

TEST(GroupPlannerTest, RefusalsHaveTheirCodeAndMessageAndChangeNothing) {
  World w;
  w.Group();
  w.Register("db4");
  w.Register("r1");
  w.state_.nodes.at("r1").info.engine = EngineType::kRedis;
  const std::vector<RefusalCase> cases = {
      {"enable self", [](const World& w) { return PlanEnable(w.state_, "db4", "db4", {}, w.Context()); },
       absl::StatusCode::kInvalidArgument, "its own upstream"},
      {"enable no master", [](const World& w) { return PlanEnable(w.state_, "", "db4", {}, w.Context()); },
       absl::StatusCode::kInvalidArgument, "no master node given"},
      {"enable unknown", [](const World& w) { return PlanEnable(w.state_, "db9", "db4", {}, w.Context()); },
       absl::StatusCode::kNotFound, "unknown node db9"},
      {"enable engines differ",
       [](const World& w) { return PlanEnable(w.state_, "db4", "r1", {}, w.Context()); },
       absl::StatusCode::kFailedPrecondition, "engines differ"},
      {"enable slave of slave",
       [](const World& w) { return PlanEnable(w.state_, "db2", "db4", {}, w.Context()); },
       absl::StatusCode::kFailedPrecondition, "a slave cannot serve slaves"},
      {"enable other master's slave",
       [](const World& w) { return PlanEnable(w.state_, "db4", "db2", {}, w.Context()); },
       absl::StatusCode::kFailedPrecondition, "already a slave of db1"},
      {"disable a slave", [](const World& w) { return PlanDisable(w.state_, "db2", w.Context()); },
       absl::StatusCode::kFailedPrecondition, "replication disable --master db1"},
      {"remove a master", [](const World& w) { return PlanRemoveSlave(w.state_, "db1", w.Context()); },
       absl::StatusCode::kFailedPrecondition, "db1 is not a slave"},
      {"resync standalone", [](const World& w) { return PlanResync(w.state_, "db4", w.Context()); },
       absl::StatusCode::kFailedPrecondition, "only a slave can be resynchronised"},
      {"promote a master", [](const World& w) { return PlanPromote(w.state_, "db1", false, w.Context()); },
       absl::StatusCode::kFailedPrecondition, "only a slave can be promoted"},
      {"promote unknown", [](const World& w) { return PlanPromote(w.state_, "db9", true, w.Context()); },
       absl::StatusCode::kNotFound, "unknown node db9"},
      {"report unknown",
       [](const World& w) { return PlanReport(w.state_, "db9", ObservedState{}, {}, w.Context()); },
       absl::StatusCode::kNotFound, "unknown node db9"},
  };
  for (const RefusalCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Decision> decision = c.op(w);
    EXPECT_EQ(decision.status().code(), c.code) << decision.status();
    EXPECT_THAT(std::string(decision.status().message()), HasSubstr(c.message));
  }
}

// ------------------------------------------------------------- operations

struct OperationCase {
  std::string name;
  std::function<absl::Status(World&)> op;
  std::map<std::string, std::string> intents;  // node -> Intent() after
  std::string event;                           // part of the last event
};

TEST(GroupPlannerTest, OperationsChangeIntentsAndRecordWhy) {
  const std::vector<OperationCase> cases = {
      {"enable",
       [](World& w) { return w.Apply(PlanEnable(w.state_, "db1", "db4", {}, w.Context())); },
       {{"db1", "master"}, {"db4", "slave of db1"}},
       "replication enable --master db1 --slave db4"},
      {"disable",
       [](World& w) { return w.Apply(PlanDisable(w.state_, "db1", w.Context())); },
       {{"db1", "standalone"}, {"db2", "standalone"}, {"db3", "standalone"}},
       "replication disable --master db1"},
      {"remove",
       [](World& w) { return w.Apply(PlanRemoveSlave(w.state_, "db3", w.Context())); },
       {{"db1", "master"}, {"db3", "standalone"}},
       "slave remove db3"},
      {"resync",
       [](World& w) { return w.Apply(PlanResync(w.state_, "db2", w.Context())); },
       {{"db2", "slave of db1"}},
       "resync db2"},
      {"promote fences first",
       [](World& w) { return w.Apply(PlanPromote(w.state_, "db2", false, w.Context())); },
       {{"db1", "master (fenced)"}, {"db2", "slave of db1"}},
       "promote db2: fencing db1"},
      {"promote --force, master silent",
       [](World& w) {
         w.Disconnect("db1");
         w.now_ += absl::Seconds(15);
         return w.Apply(PlanPromote(w.state_, "db2", true, w.Context()));
       },
       {{"db1", "slave of db2"}, {"db2", "master"}, {"db3", "slave of db2"}},
       "db1 not fenced (its agent is not connected)"},
      {"promote --force, master heard lately: fence first",
       [](World& w) {
         w.Disconnect("db1");
         w.now_ += absl::Seconds(14);
         return w.Apply(PlanPromote(w.state_, "db2", true, w.Context()));
       },
       {{"db1", "master (fenced)"}, {"db2", "slave of db1"}},
       "db1's agent was heard lately, so it is fenced first"},
      {"promote --force, master answers: fence first",
       [](World& w) { return w.Apply(PlanPromote(w.state_, "db2", true, w.Context())); },
       {{"db1", "master (fenced)"}, {"db2", "slave of db1"}},
       "db1's agent answers, so it is fenced first"},
  };
  for (const OperationCase& c : cases) {
    SCOPED_TRACE(c.name);
    World w;
    w.Group();
    w.Register("db4");
    ASSERT_TRUE(c.op(w).ok());
    for (const auto& [id, intent] : c.intents) EXPECT_EQ(w.Intent(id), intent) << id;
    EXPECT_THAT(w.LastEvent(), HasSubstr(c.event));
    EXPECT_FALSE(w.last_changes_.empty());
  }
}

TEST(GroupPlannerTest, TheSameRequestTwiceChangesNothing) {
  World w;
  w.Group();
  absl::StatusOr<Decision> again = PlanEnable(w.state_, "db1", "db2", {}, w.Context());
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->changed);
  EXPECT_TRUE(again->changes.empty());
  absl::StatusOr<Decision> reregister = PlanRegister(w.state_, Node("db1"), w.Context());
  ASSERT_TRUE(reregister.ok());
  EXPECT_FALSE(reregister->changed);
}

// ---------------------------------------------------------- bootstrap queue

TEST(GroupPlannerTest, SlavesAreReleasedOneAtATimeAsTheyAreSeeded) {
  World w;
  for (const char* id : {"db1", "db2", "db3"}) w.Register(id);
  w.Enable("db1", "db2");
  w.Enable("db1", "db3");
  w.Converged("db1");
  EXPECT_EQ(QueuedSlaves(w.state_, w.options_.policy), std::set<std::string>{"db3"});
  w.Converged("db2");  // converged on its copy: seeded
  EXPECT_TRUE(w.Rec("db2").seeded);
  EXPECT_THAT(w.LastEvent(), HasSubstr("db2 holds a copy of db1"));
  EXPECT_TRUE(QueuedSlaves(w.state_, w.options_.policy).empty());
}

// ------------------------------------------------------------- auto resync

TEST(GroupPlannerTest, OutOfSyncSlavesAreResyncedOnlyUnderThePolicy) {
  for (bool policy : {false, true}) {
    SCOPED_TRACE(policy);
    World w;
    w.options_.auto_resync = policy;
    w.Group();
    const std::string token = w.Rec("db2").resync_token;
    ObservedState observed;
    observed.converged_generation = w.Rec("db2").desired.generation;
    observed.out_of_sync = "timeline fork";
    w.Must(PlanReport(w.state_, "db2", observed, {}, w.Context()));
    EXPECT_EQ(w.Rec("db2").resync_token != token, policy);
    if (policy) {
      EXPECT_TRUE(w.Rec("db2").rejoin_first);
      EXPECT_THAT(w.LastEvent(), HasSubstr("auto-resync db2: timeline fork"));
    }
  }
}

// ---------------------------------------------------------------- adoption

TEST(GroupPlannerTest, AnAgentHoldingItsRoleIsRecordedAndAdopted) {
  World w;
  w.Group();
  // Nothing to adopt while the agent follows the controller.
  absl::Status refused = w.Apply(PlanAdopt(w.state_, "db2", w.Context()));
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("nothing to adopt"));
  // db2's agent holds generation 9 from a newer state of this cluster.
  ObservedState holding;
  holding.converged_generation = 9;
  holding.seen_generation = 9;
  holding.hold_reason = "the controller sent generation 3, older than the held generation 9";
  w.Must(PlanReport(w.state_, "db2", holding, {}, w.Context()));
  EXPECT_THAT(w.LastEvent(), HasSubstr("db2's agent holds its role: the controller sent"));
  const size_t events = w.state_.events.size();
  w.agents_["db2"].observed = holding;
  w.Must(PlanReport(w.state_, "db2", holding, {}, w.Context()));
  EXPECT_EQ(w.state_.events.size(), events) << "recorded once";

  w.Must(PlanAdopt(w.state_, "db2", w.Context()));
  EXPECT_EQ(w.Rec("db2").desired.generation, 10u) << "above the held generation";
  EXPECT_TRUE(w.Rec("db2").adopting);
  EXPECT_EQ(w.Intent("db2"), "slave of db1") << "this controller's target";
  EXPECT_THAT(w.LastEvent(), HasSubstr("adopt db2: its agent held its role"));
  EXPECT_THAT(w.last_changes_, ::testing::Contains(HasSubstr("db2: adopted: slave of db1")));
  // The agent took it: the adoption ends.
  w.Converged("db2");
  EXPECT_FALSE(w.Rec("db2").adopting);
}

// ------------------------------------------------------------- switchover

// Bug (a): after promote --force the old master waits in the bootstrap
// queue behind the other slave; its published target still revokes its
// writability at once (a queued slave: fenced).
TEST(SwitchoverPlannerTest, AForcedOutMasterIsRevokedWhateverTheQueue) {
  World w;
  w.Group();
  const uint64_t gen = w.Rec("db1").desired.generation;
  w.Disconnect("db1");
  w.Disconnect("db3");
  w.now_ += absl::Seconds(20);
  w.Must(PlanPromote(w.state_, "db2", true, w.Context()));
  EXPECT_EQ(QueuedSlaves(w.state_, w.options_.policy), std::set<std::string>{"db1"});
  const DesiredState& db1 = w.Rec("db1").desired;
  EXPECT_EQ(db1.generation, gen + 1);
  EXPECT_EQ(db1.role, Role::kSlave);
  EXPECT_TRUE(db1.queued);
  EXPECT_EQ(db1.upstream.id, "db2");
  EXPECT_TRUE(db1.resync_token.empty());
  EXPECT_EQ(DescribeTarget(db1), "slave of db2 (queued)");
  // db2 does not serve it yet; db3 (first in the queue) gets its copy.
  ASSERT_EQ(w.Rec("db2").desired.slaves.size(), 1u);
  EXPECT_EQ(w.Rec("db2").desired.slaves[0].id, "db3");
  EXPECT_FALSE(w.Rec("db3").desired.queued);
  // Its turn comes once db3 holds its copy: a full copy, no longer queued.
  w.Converged("db2");
  w.Converged("db3");
  EXPECT_FALSE(w.Rec("db1").desired.queued);
  EXPECT_FALSE(w.Rec("db1").desired.resync_token.empty());
}

TEST(SwitchoverPlannerTest, TheFenceReportStartsPhaseTwo) {
  World w;
  w.Group();
  w.Must(PlanPromote(w.state_, "db2", false, w.Context()));
  EXPECT_EQ(w.state_.switchovers.at("db1").promoted, "db2");
  // A report before the fence took effect changes nothing.
  w.Converged("db1", /*writable=*/true, "0/10");
  EXPECT_EQ(w.Intent("db2"), "slave of db1");
  w.Converged("db1", /*writable=*/false, "0/10");
  EXPECT_EQ(w.Intent("db2"), "master");
  EXPECT_EQ(w.Rec("db2").catch_up_position, "0/10");
  EXPECT_EQ(w.Intent("db1"), "slave of db2");
  EXPECT_TRUE(w.Rec("db1").rejoin_first);
  EXPECT_TRUE(w.state_.switchovers.empty());
  // Phase 2 lasts until db2 replayed that far and is writable: db1 cannot
  // be taken away meanwhile (db2 would have nothing to catch up from).
  EXPECT_THAT(DescribeSwitchover(w.state_, w.Rec("db3"), w.now_),
              HasSubstr("db2 replays its old master's writes up to 0/10"));
  EXPECT_FALSE(w.Apply(PlanRemoveSlave(w.state_, "db1", w.Context())).ok());
  EXPECT_FALSE(w.Apply(PlanPromote(w.state_, "db2", false, w.Context())).ok());
  w.Converged("db2", /*writable=*/true);
  EXPECT_TRUE(w.Rec("db2").catch_up_position.empty());
  EXPECT_THAT(w.LastEvent(), HasSubstr("the switchover is done"));
  EXPECT_TRUE(w.Apply(PlanRemoveSlave(w.state_, "db1", w.Context())).ok());
}

// db1 dies for good after its fence, before db2 replayed what it holds:
// promote --force db2 lets db2 take over without the rest.
TEST(SwitchoverPlannerTest, ForceEndsACatchUpThatCannotFinish) {
  World w;
  w.Group();
  w.Must(PlanPromote(w.state_, "db2", false, w.Context()));
  w.Converged("db1", /*writable=*/false, "0/10");
  ASSERT_EQ(w.Rec("db2").catch_up_position, "0/10");
  w.Must(PlanPromote(w.state_, "db2", true, w.Context()));
  EXPECT_TRUE(w.Rec("db2").catch_up_position.empty());
  EXPECT_TRUE(w.Rec("db2").desired.catch_up_position.empty());
  EXPECT_THAT(w.LastEvent(), HasSubstr("takes over without replaying up to 0/10"));
}

TEST(SwitchoverPlannerTest, PhaseOneIsAbortedAtItsDeadline) {
  World w;
  w.options_.switchover_timeout = absl::Seconds(30);
  w.Group();
  const uint64_t gen = w.Rec("db1").desired.generation;
  w.Must(PlanPromote(w.state_, "db2", false, w.Context()));
  EXPECT_TRUE(w.Rec("db1").desired.fenced);
  w.now_ += absl::Seconds(29);
  w.Tick();
  EXPECT_EQ(w.state_.switchovers.size(), 1u) << "not before the deadline";
  w.now_ += absl::Seconds(1);
  w.Tick();
  EXPECT_TRUE(w.state_.switchovers.empty());
  EXPECT_EQ(w.Intent("db1"), "master");
  EXPECT_FALSE(w.Rec("db1").desired.fenced) << "unfenced";
  EXPECT_EQ(w.Rec("db1").desired.generation, gen + 2);
  EXPECT_EQ(w.Intent("db2"), "slave of db1");
  EXPECT_THAT(w.Rec("db1").switchover_aborted,
              HasSubstr("promote db2 aborted: db1 did not report its fence within 30s (its agent "
                        "is connected but has not reported for 30 s)"));
  EXPECT_EQ(SwitchoverAborted(w.state_, w.Rec("db3")), w.Rec("db1").switchover_aborted);
  EXPECT_THAT(w.LastEvent(), HasSubstr("db1 is unfenced and stays the master"));
  // The next operator change of the group clears the note.
  w.Converged("db1");
  w.Must(PlanPromote(w.state_, "db2", false, w.Context()));
  EXPECT_TRUE(w.Rec("db1").switchover_aborted.empty());
}

TEST(SwitchoverPlannerTest, OtherGroupsAreNeverHeldUp) {
  World w;
  w.Group();
  for (const char* id : {"db4", "db5", "db6"}) w.Register(id);
  w.Must(PlanPromote(w.state_, "db2", false, w.Context()));
  // The group in switchover refuses changes, saying how to get out.
  absl::Status busy = w.Apply(PlanRemoveSlave(w.state_, "db3", w.Context()));
  EXPECT_EQ(busy.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(busy.message()),
              HasSubstr("a switchover (promote db2) is in progress in db1's group"));
  EXPECT_THAT(std::string(busy.message()), HasSubstr("promote --force db2"));
  EXPECT_FALSE(w.Apply(PlanEnable(w.state_, "db1", "db4", {}, w.Context())).ok());
  EXPECT_FALSE(w.Apply(PlanPromote(w.state_, "db3", false, w.Context())).ok());
  // Another group is not.
  EXPECT_TRUE(w.Apply(PlanEnable(w.state_, "db5", "db6", {}, w.Context())).ok());
  EXPECT_EQ(w.Intent("db6"), "slave of db5");
}

TEST(SwitchoverPlannerTest, ForceOverridesASwitchoverInProgress) {
  World w;
  w.Group();
  w.Must(PlanPromote(w.state_, "db2", false, w.Context()));
  // db1's agent hangs: its stream stays open, its reports stop.
  w.now_ += absl::Seconds(5);
  // --force while it still counts as answering: fence first, marked forced.
  w.Must(PlanPromote(w.state_, "db2", true, w.Context()));
  EXPECT_TRUE(w.state_.switchovers.at("db1").force);
  EXPECT_THAT(w.LastEvent(), HasSubstr("db1's agent answers, so it is fenced first"));
  w.now_ += absl::Seconds(9);
  w.Tick();
  EXPECT_EQ(w.Intent("db2"), "slave of db1") << "still answering: 14 s since its last report";
  w.now_ += absl::Seconds(1);
  w.Tick();
  EXPECT_EQ(w.Intent("db2"), "master");
  EXPECT_EQ(w.Intent("db1"), "slave of db2");
  EXPECT_FALSE(w.Rec("db1").rejoin_first) << "not fenced: a full copy keeps its writes aside";
  EXPECT_THAT(w.LastEvent(), HasSubstr("db1 stopped answering before it was fenced"));
}

TEST(SwitchoverPlannerTest, ForceWithASilentMasterTakesOverAtOnceEvenInSwitchover) {
  World w;
  w.Group();
  w.Must(PlanPromote(w.state_, "db2", false, w.Context()));
  w.now_ += absl::Seconds(20);  // db1's agent silent since
  w.Must(PlanPromote(w.state_, "db3", true, w.Context()));
  EXPECT_EQ(w.Intent("db3"), "master");
  EXPECT_EQ(w.Intent("db2"), "slave of db3");
  EXPECT_EQ(w.Intent("db1"), "slave of db3");
  EXPECT_THAT(w.LastEvent(), HasSubstr("overrides the switchover to db2 in progress"));
}

TEST(SwitchoverPlannerTest, PlainPromoteNeedsAnAnsweringAgent) {
  World w;
  w.Group();
  w.now_ += absl::Seconds(16);
  absl::Status refused = w.Apply(PlanPromote(w.state_, "db2", false, w.Context()));
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr("db1's agent does not answer (its agent is connected but has not "
                        "reported for 16 s)"));
  EXPECT_THAT(std::string(refused.message()), HasSubstr("promote --force db2"));
}

TEST(SwitchoverPlannerTest, ASilentAgentIsGivenTimeAfterAControllerStart) {
  World w;
  w.Group();
  w.Must(PlanPromote(w.state_, "db2", true, w.Context()));  // answers: fence first
  // The controller restarts: nothing known of the agents.
  w.agents_.clear();
  w.since_ = w.now_;
  w.now_ += absl::Seconds(1);
  w.Tick();
  EXPECT_EQ(w.Intent("db2"), "slave of db1") << "not silent yet: the controller just started";
  w.now_ += absl::Seconds(14);
  w.Tick();
  EXPECT_EQ(w.Intent("db2"), "master");
}

}  // namespace
}  // namespace tandem

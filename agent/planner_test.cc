#include "agent/planner.h"

#include <set>

#include "gtest/gtest.h"

namespace tandem {
namespace {

using K = StepKind;

const Peer kMaster{"db1", "eu", "10.0.0.1", 5432};
const Peer kSlave2{"db2", "eu", "10.0.0.2", 5432};
const Peer kSlave3{"db3", "eu", "10.0.0.3", 5432};

DesiredState Desired(Role role) {
  DesiredState d;
  d.generation = 7;
  d.role = role;
  d.env = {{"TANDEM_ROLE", std::string(RoleName(role))}};
  if (role == Role::kSlave) d.upstream = kMaster;
  if (role == Role::kMaster) d.slaves = {kSlave2, kSlave3};
  return d;
}

// An observation in which `desired` already holds.
Observation ConvergedFor(const DesiredState& d) {
  Observation o;
  o.engine.running = true;
  o.engine.has_data = true;
  o.engine.data_id = "sys-1";
  o.host.recorded_role = d.role;
  o.host.env = d.env;
  o.host.env_file_exists = true;
  if (d.role == Role::kSlave) {
    o.engine.is_slave = true;
    o.engine.streaming = true;
    o.engine.upstream = "10.0.0.1:5432";
    o.host.bootstrap = {"db1", d.resync_token, "sys-1"};
  } else {
    o.engine.writable = true;
    for (const Peer& p : d.slaves) o.engine.served_slaves.push_back(p.id);
  }
  return o;
}

// A writable standalone that has never been part of a group.
Observation FreshStandalone() {
  Observation o;
  o.engine.running = true;
  o.engine.has_data = true;
  o.engine.writable = true;
  o.engine.data_id = "sys-2";
  o.host.recorded_role = Role::kStandalone;
  return o;
}

TEST(PlannerTest, ConvergedMeansEmptyPlanForEveryRole) {
  for (Role role : {Role::kStandalone, Role::kMaster, Role::kSlave}) {
    DesiredState d = Desired(role);
    Plan plan = PlanSteps(ConvergedFor(d), d);
    EXPECT_TRUE(plan.Converged()) << RoleName(role) << ": " << plan.status;
    EXPECT_EQ(plan.from, role);
  }
}

TEST(PlannerTest, RoleTableHasNoGap) {
  std::set<std::pair<Role, Role>> seen;
  for (const RoleTableRow& row : RoleTable()) {
    EXPECT_TRUE(seen.insert({row.from, row.to}).second) << "duplicate row";
    EXPECT_FALSE(row.reason.empty());
    EXPECT_FALSE(row.steps.empty());
  }
  for (Role from : {Role::kStandalone, Role::kMaster, Role::kSlave}) {
    for (Role to : {Role::kStandalone, Role::kMaster, Role::kSlave}) {
      EXPECT_EQ(seen.count({from, to}), 1u) << RoleName(from) << " -> " << RoleName(to);
    }
  }
}

TEST(PlannerTest, RoleTableIsPrintable) {
  std::string text = FormatRoleTable();
  for (const RoleTableRow& row : RoleTable()) {
    EXPECT_NE(text.find(std::string(row.reason)), std::string::npos);
  }
  EXPECT_NE(text.find("bootstrap"), std::string::npos);
}

struct Case {
  const char* name;
  Observation observed;
  DesiredState desired;
  std::vector<StepKind> steps;
  Role from;
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  {
    Case c{"standalone->slave replaces data", FreshStandalone(), Desired(Role::kSlave),
           {K::kFence, K::kBootstrap, K::kFollowUpstream, K::kStartEngine, K::kWaitStreaming,
            K::kRecordRole, K::kWriteEnv},
           Role::kStandalone};
    cases.push_back(c);
  }
  {
    Case c{"standalone->master keeps data", FreshStandalone(), Desired(Role::kMaster),
           {K::kServeSlaves, K::kRecordRole, K::kWriteEnv}, Role::kStandalone};
    cases.push_back(c);
  }
  {
    DesiredState d = Desired(Role::kStandalone);
    Observation o = ConvergedFor(Desired(Role::kMaster));
    Case c{"master->standalone drops slaves", o, d,
           {K::kServeSlaves, K::kRecordRole, K::kWriteEnv}, Role::kMaster};
    cases.push_back(c);
  }
  {
    Observation o = ConvergedFor(Desired(Role::kSlave));
    Case c{"slave->standalone promotes", o, Desired(Role::kStandalone),
           {K::kMakeWritable, K::kServeSlaves, K::kRecordRole, K::kWriteEnv}, Role::kSlave};
    cases.push_back(c);
  }
  {
    Observation o = ConvergedFor(Desired(Role::kSlave));
    Case c{"slave->master promotes", o, Desired(Role::kMaster),
           {K::kMakeWritable, K::kServeSlaves, K::kRecordRole, K::kWriteEnv}, Role::kSlave};
    cases.push_back(c);
  }
  {
    DesiredState d = Desired(Role::kMaster);
    Observation o = ConvergedFor(d);
    d.slaves = {kSlave2};  // db3 removed
    d.env["X"] = "changed";
    Case c{"master loses a slave", o, d, {K::kServeSlaves, K::kRecordRole, K::kWriteEnv},
           Role::kMaster};
    cases.push_back(c);
  }
  {
    DesiredState d = Desired(Role::kSlave);
    Observation o = ConvergedFor(d);
    d.env["X"] = "changed";
    Case c{"only the env is stale", o, d, {K::kWriteEnv}, Role::kSlave};
    cases.push_back(c);
  }
  {
    DesiredState d = Desired(Role::kSlave);
    Observation o = ConvergedFor(d);
    o.host.hook_pending = true;
    Case c{"a failed hook runs again", o, d, {K::kWriteEnv}, Role::kSlave};
    cases.push_back(c);
  }
  {
    DesiredState d = Desired(Role::kSlave);
    Observation o = ConvergedFor(d);
    d.resync_token = "r2";
    Case c{"resync rebuilds the slave", o, d,
           {K::kBootstrap, K::kFollowUpstream, K::kStartEngine, K::kWaitStreaming,
            K::kRecordRole, K::kWriteEnv},
           Role::kSlave};
    cases.push_back(c);
  }
  {
    DesiredState d = Desired(Role::kSlave);
    Observation o = ConvergedFor(d);
    o.engine.data_id = "sys-other";  // data replaced behind the agent's back
    Case c{"foreign data is rebuilt", o, d,
           {K::kBootstrap, K::kFollowUpstream, K::kStartEngine, K::kWaitStreaming,
            K::kRecordRole, K::kWriteEnv},
           Role::kSlave};
    cases.push_back(c);
  }
  {
    DesiredState d = Desired(Role::kSlave);
    Observation o = ConvergedFor(d);
    o.engine.running = false;
    o.engine.streaming = false;
    Case c{"stopped slave is started", o, d,
           {K::kStartEngine, K::kWaitStreaming, K::kRecordRole, K::kWriteEnv}, Role::kSlave};
    cases.push_back(c);
  }
  {
    DesiredState d = Desired(Role::kSlave);
    Observation o = ConvergedFor(d);
    o.engine.upstream = "10.0.0.9:5432";
    Case c{"slave re-pointed", o, d,
           {K::kFollowUpstream, K::kStartEngine, K::kWaitStreaming, K::kRecordRole,
            K::kWriteEnv},
           Role::kSlave};
    cases.push_back(c);
  }
  {
    DesiredState d = Desired(Role::kSlave);
    d.upstream.tls_port = 6380;
    Observation o = ConvergedFor(d);
    o.engine.upstream = absl::StrCat(d.upstream.host, ":6380");
    Case c{"slave streaming from its upstream's TLS port is converged", o, d, {}, Role::kSlave};
    cases.push_back(c);
  }
  {
    DesiredState d = Desired(Role::kStandalone);
    Observation o = FreshStandalone();
    o.engine.writable = false;  // fenced earlier, then the target changed back
    o.host.env = d.env;
    o.host.env_file_exists = true;
    Case c{"fenced standalone is unfenced", o, d,
           {K::kMakeWritable, K::kServeSlaves, K::kRecordRole, K::kWriteEnv}, Role::kStandalone};
    cases.push_back(c);
  }
  {
    DesiredState d = Desired(Role::kSlave);
    Observation o = ConvergedFor(d);
    o.engine.is_slave = false;  // promoted behind the agent's back
    o.engine.writable = true;
    o.engine.streaming = false;
    o.host.recorded_role = Role::kSlave;
    Case c{"a slave promoted by hand is fenced and rebuilt", o, d,
           {K::kFence, K::kBootstrap, K::kFollowUpstream, K::kStartEngine, K::kWaitStreaming,
            K::kRecordRole, K::kWriteEnv},
           Role::kStandalone};
    cases.push_back(c);
  }
  return cases;
}

TEST(PlannerTest, ExactPlans) {
  for (const Case& c : Cases()) {
    Plan plan = PlanSteps(c.observed, c.desired);
    ASSERT_TRUE(plan.status.ok()) << c.name << ": " << plan.status;
    EXPECT_EQ(plan.steps, c.steps) << c.name;
    EXPECT_EQ(plan.from, c.from) << c.name;
    EXPECT_FALSE(plan.reason.empty()) << c.name;
  }
}

TEST(PlannerTest, ADemotedMasterIsFencedBeforeItsDataIsReplaced) {
  Observation o = ConvergedFor(Desired(Role::kMaster));
  Plan plan = PlanSteps(o, Desired(Role::kSlave));
  ASSERT_TRUE(plan.status.ok()) << plan.status;
  EXPECT_EQ(plan.from, Role::kMaster);
  EXPECT_EQ(plan.steps, (std::vector<StepKind>{K::kFence, K::kStartEngine, K::kBootstrap,
                                               K::kFollowUpstream, K::kStartEngine,
                                               K::kWaitStreaming, K::kRecordRole,
                                               K::kWriteEnv}));
}

// Its server keeps running (fenced) until it rejoins: the promoted slave
// may still have to catch up from it. One whose host restarted is started.
TEST(PlannerTest, ADemotedMasterIsStartedFencedForItsSuccessorToCatchUp) {
  Observation o = ConvergedFor(Desired(Role::kMaster));
  o.engine.running = false;
  o.engine.writable = false;
  DesiredState d = Desired(Role::kSlave);
  d.rejoin_first = true;
  Plan plan = PlanSteps(o, d);
  ASSERT_TRUE(plan.status.ok()) << plan.status;
  ASSERT_GE(plan.steps.size(), 2u);
  EXPECT_EQ(plan.steps[0], K::kStartEngine);
  EXPECT_EQ(plan.steps[1], K::kBootstrap);
}

TEST(PlannerTest, AFencedMasterRefusesWritesAndKeepsServing) {
  DesiredState d = Desired(Role::kMaster);
  Observation o = ConvergedFor(d);
  d.fenced = true;
  Plan plan = PlanSteps(o, d);
  ASSERT_TRUE(plan.status.ok());
  EXPECT_EQ(plan.steps, (std::vector<StepKind>{K::kFence, K::kServeSlaves, K::kRecordRole,
                                               K::kWriteEnv}));
  EXPECT_NE(plan.reason.find("switchover"), std::string::npos);
  // Once fenced it is converged: never made writable again by this target.
  o.engine.writable = false;
  EXPECT_TRUE(PlanSteps(o, d).Converged());
}

TEST(PlannerTest, APromotedSlaveCatchesUpBeforeItBecomesWritable) {
  Observation o = ConvergedFor(Desired(Role::kSlave));
  DesiredState d = Desired(Role::kMaster);
  d.catch_up_position = "0/3000060";
  Plan plan = PlanSteps(o, d);
  ASSERT_TRUE(plan.status.ok());
  EXPECT_EQ(plan.steps, (std::vector<StepKind>{K::kCatchUp, K::kMakeWritable, K::kServeSlaves,
                                               K::kRecordRole, K::kWriteEnv}));
}

TEST(PlannerTest, AQueuedSlaveIsOnlyFencedWhateverItWas) {
  DesiredState waiting = Desired(Role::kSlave);
  waiting.queued = true;
  waiting.resync_token.clear();
  for (Role was : {Role::kMaster, Role::kStandalone}) {
    Observation o = ConvergedFor(Desired(was));
    Plan plan = PlanSteps(o, waiting);
    ASSERT_TRUE(plan.status.ok()) << plan.status;
    EXPECT_EQ(plan.steps, (std::vector<StepKind>{K::kFence, K::kStartEngine})) << RoleName(was);
    EXPECT_NE(plan.reason.find("waits its turn to become a slave of db1"), std::string::npos);
    // Fenced: converged, nothing else yet (its env file changes with its
    // role, once the new master is writable).
    o.engine.writable = false;
    EXPECT_TRUE(PlanSteps(o, waiting).Converged()) << RoleName(was);
  }
  // A slave that still streams keeps doing so.
  Observation slave = ConvergedFor(Desired(Role::kSlave));
  EXPECT_TRUE(PlanSteps(slave, waiting).Converged());
  // A stopped server with data is started (fenced) meanwhile; one without
  // data is left alone until its copy is made.
  Observation stopped = ConvergedFor(Desired(Role::kStandalone));
  stopped.engine.running = false;
  stopped.engine.writable = false;
  EXPECT_EQ(PlanSteps(stopped, waiting).steps, (std::vector<StepKind>{K::kStartEngine}));
  stopped.engine.has_data = false;
  EXPECT_TRUE(PlanSteps(stopped, waiting).Converged());
}

TEST(PlannerTest, NoDesiredStateHolds) {
  Plan plan = PlanSteps(FreshStandalone(), DesiredState{});
  EXPECT_TRUE(plan.Converged());
}

TEST(PlannerTest, MakeWritableComesAfterEveryReplicationStep) {
  for (const RoleTableRow& row : RoleTable()) {
    auto writable = std::find(row.steps.begin(), row.steps.end(), K::kMakeWritable);
    for (auto it = writable; it != row.steps.end(); ++it) {
      EXPECT_NE(*it, K::kBootstrap);
      EXPECT_NE(*it, K::kFollowUpstream);
    }
    // Applications are pointed at the node only after the role change.
    if (!row.steps.empty()) EXPECT_EQ(row.steps.back(), K::kWriteEnv);
  }
}

}  // namespace
}  // namespace tandem

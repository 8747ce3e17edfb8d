#include "agent/executor.h"

#include <algorithm>
#include <filesystem>

#include "agent/desired_store.h"
#include "agent/fakes.h"
#include "agent/planner.h"
#include "agent/reconciler.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"

namespace tandem {
namespace {

const Peer kSelf{"db2", "eu", "10.0.0.2", 5432};
const Peer kUpstream{"db1", "eu", "10.0.0.1", 5432};

DesiredState Desired(Role role) {
  DesiredState d;
  d.generation = 3;
  d.role = role;
  d.env = {{"TANDEM_ROLE", std::string(RoleName(role))}};
  if (role == Role::kSlave) {
    d.upstream = kUpstream;
    d.upstream_data_bytes = 1000;
  }
  if (role == Role::kMaster) d.slaves = {Peer{"db3", "eu", "10.0.0.3", 5432}};
  return d;
}

// One pass as the reconciler does it: observe, plan, execute.
absl::Status RunPass(Engine& engine, Host& host, Clock& clock, const DesiredState& d) {
  Executor executor(kSelf, &engine, &host, &clock);
  Observation o{*engine.Observe(), *host.Observe()};
  Plan plan = PlanSteps(o, d);
  return executor.Execute(plan, o, d, nullptr);
}

bool Converged(Engine& engine, Host& host, const DesiredState& d) {
  return PlanSteps(Observation{*engine.Observe(), *host.Observe()}, d).Converged();
}

// Starting points: (engine model, recorded role).
struct Start {
  const char* name;
  Role role;
};

void Prepare(FakeEngine& engine, FakeHost& host, FakeClock& clock, Role role) {
  host.facts.recorded_role = Role::kStandalone;
  if (role == Role::kStandalone) return;
  DesiredState d = Desired(role);
  d.generation = 1;
  ASSERT_TRUE(RunPass(engine, host, clock, d).ok());
  ASSERT_TRUE(Converged(engine, host, d));
}

TEST(ExecutorTest, EveryAllowedTransitionConvergesInOnePass) {
  for (const RoleTableRow& row : RoleTable()) {
    FakeEngine engine;
    FakeHost host;
    FakeClock clock;
    Prepare(engine, host, clock, row.from);
    DesiredState d = Desired(row.to);
    absl::Status st = RunPass(engine, host, clock, d);
    EXPECT_TRUE(st.ok()) << RoleName(row.from) << "->" << RoleName(row.to) << ": " << st;
    EXPECT_TRUE(Converged(engine, host, d)) << RoleName(row.from) << "->" << RoleName(row.to);
  }
}

TEST(ExecutorTest, FaultAtAnyStepConvergesOnTheNextPass) {
  for (const RoleTableRow& row : RoleTable()) {
    for (int k = 0; k < 8; ++k) {
      FakeEngine model;
      FakeHost host;
      FakeClock clock;
      Prepare(model, host, clock, row.from);
      FaultInjectingEngine faulty(&model, k, absl::UnavailableError("injected"));
      DesiredState d = Desired(row.to);
      absl::Status first = RunPass(faulty, host, clock, d);
      if (faulty.fired()) {
        EXPECT_FALSE(first.ok()) << "fault " << k;
      }
      absl::Status second = RunPass(faulty, host, clock, d);
      EXPECT_TRUE(second.ok()) << RoleName(row.from) << "->" << RoleName(row.to) << " fault "
                               << k << ": " << second;
      EXPECT_TRUE(Converged(model, host, d))
          << RoleName(row.from) << "->" << RoleName(row.to) << " fault " << k;
      EXPECT_LE(model.moved_aside, 2);
    }
  }
}

TEST(ExecutorTest, BootstrapMovesOldDataAsideAndRecordsIt) {
  FakeEngine engine;
  FakeHost host;
  FakeClock clock;
  DesiredState d = Desired(Role::kSlave);
  d.resync_token = "t1";
  ASSERT_TRUE(RunPass(engine, host, clock, d).ok());
  EXPECT_EQ(engine.moved_aside, 1);
  EXPECT_EQ(host.facts.bootstrap, (BootstrapRecord{"db1", "t1", "data-of-db1"}));
  EXPECT_EQ(host.facts.env, d.env);
  // The fence came before the data was touched.
  ASSERT_GE(engine.calls.size(), 2u);
  EXPECT_EQ(engine.calls[0], "fence");
  EXPECT_EQ(engine.calls[1], "bootstrap");
}

TEST(ExecutorTest, RejoinFirstKeepsTheDataWhenTheEngineCanRejoin) {
  FakeEngine engine;
  engine.can_rejoin = true;
  FakeHost host;
  FakeClock clock;
  DesiredState d = Desired(Role::kSlave);
  d.resync_token = "t1";
  d.rejoin_first = true;
  ASSERT_TRUE(RunPass(engine, host, clock, d).ok());
  EXPECT_EQ(engine.rejoins, 1);
  EXPECT_EQ(engine.bootstraps, 0);
  EXPECT_EQ(engine.moved_aside, 0);
  EXPECT_EQ(host.facts.bootstrap, (BootstrapRecord{"db1", "t1", "own-data"}));
  EXPECT_TRUE(Converged(engine, host, d));
}

TEST(ExecutorTest, ARejoinNeedsNoRoomForACopy) {
  FakeEngine engine;
  engine.can_rejoin = true;
  FakeHost host;
  host.free_bytes = 10;
  FakeClock clock;
  DesiredState d = Desired(Role::kSlave);
  d.resync_token = "t1";
  d.rejoin_first = true;
  d.upstream_data_bytes = 0;  // not reported yet
  absl::Status st = RunPass(engine, host, clock, d);
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(engine.rejoins, 1);
  EXPECT_EQ(engine.bootstraps, 0);
}

TEST(ExecutorTest, RejoinFirstFallsBackToAFullCopy) {
  FakeEngine engine;  // can_rejoin = false
  FakeHost host;
  FakeClock clock;
  DesiredState d = Desired(Role::kSlave);
  d.resync_token = "t1";
  d.rejoin_first = true;
  ASSERT_TRUE(RunPass(engine, host, clock, d).ok());
  EXPECT_EQ(engine.rejoins, 0);
  EXPECT_EQ(engine.bootstraps, 1);
  EXPECT_EQ(host.facts.bootstrap, (BootstrapRecord{"db1", "t1", "data-of-db1"}));
  // Rejoin was tried, after the fence and before the copy.
  auto rejoin = std::find(engine.calls.begin(), engine.calls.end(), "rejoin");
  auto copy = std::find(engine.calls.begin(), engine.calls.end(), "bootstrap");
  ASSERT_NE(rejoin, engine.calls.end());
  EXPECT_LT(rejoin, copy);
  EXPECT_TRUE(Converged(engine, host, d));
}

TEST(ExecutorTest, AnOperatorsResyncNeverTakesTheCheapPath) {
  FakeEngine engine;
  engine.can_rejoin = true;
  FakeHost host;
  FakeClock clock;
  DesiredState d = Desired(Role::kSlave);
  d.resync_token = "t1";
  ASSERT_TRUE(RunPass(engine, host, clock, d).ok());
  EXPECT_EQ(std::count(engine.calls.begin(), engine.calls.end(), "rejoin"), 0);
  EXPECT_EQ(engine.bootstraps, 1);
}

TEST(ExecutorTest, AnOutOfSyncSlaveIsReportedAtOnceAndHeld) {
  FakeEngine engine;
  FakeHost host;
  FakeClock clock;
  DesiredState d = Desired(Role::kSlave);
  ASSERT_TRUE(RunPass(engine, host, clock, d).ok());
  engine.link_up = false;
  engine.out_of_sync = "timeline fork";
  const auto before = clock.Now();
  absl::Status st = RunPass(engine, host, clock, d);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("timeline fork"), std::string::npos) << st;
  // It did not wait for the streaming deadline first.
  EXPECT_LT(clock.Now() - before, std::chrono::seconds(1));
}

TEST(ExecutorTest, RefusesBootstrapWithoutTwiceTheMastersSizeFree) {
  FakeEngine engine;
  FakeHost host;
  FakeClock clock;
  host.free_bytes = 1999;
  DesiredState d = Desired(Role::kSlave);  // master has 1000 bytes
  absl::Status st = RunPass(engine, host, clock, d);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("not enough free disk"), std::string::npos) << st;
  EXPECT_NE(st.message().find("db1"), std::string::npos);
  EXPECT_EQ(engine.bootstraps, 0);
  EXPECT_EQ(engine.data_id, "own-data");
  host.free_bytes = 2000;
  EXPECT_TRUE(RunPass(engine, host, clock, d).ok());
}

TEST(ExecutorTest, WaitsForTheMastersSizeBeforeBootstrap) {
  FakeEngine engine;
  FakeHost host;
  FakeClock clock;
  DesiredState d = Desired(Role::kSlave);
  d.upstream_data_bytes = 0;
  EXPECT_EQ(RunPass(engine, host, clock, d).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(engine.bootstraps, 0);
}

TEST(ExecutorTest, NeverRestoresOverAMaster) {
  FakeEngine engine;
  FakeHost host;
  FakeClock clock;
  host.facts.recorded_role = Role::kMaster;
  Executor executor(kSelf, &engine, &host, &clock);
  Observation o{*engine.Observe(), *host.Observe()};
  Plan forced;
  forced.steps = {StepKind::kBootstrap};
  absl::Status st = executor.Execute(forced, o, Desired(Role::kSlave), nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(engine.bootstraps, 0);
}

TEST(ExecutorTest, CatchUpWaitsForThePositionThenPromotes) {
  FakeEngine engine;
  FakeHost host;
  FakeClock clock;
  DesiredState slave = Desired(Role::kSlave);
  ASSERT_TRUE(RunPass(engine, host, clock, slave).ok());
  DesiredState master = Desired(Role::kMaster);
  master.generation = 4;
  master.catch_up_position = "500";
  engine.replayed = 499;
  absl::Status st = RunPass(engine, host, clock, master);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("catch-up"), std::string::npos) << st;
  EXPECT_TRUE(engine.is_slave) << "not promoted before catching up";
  engine.replayed = 500;
  ASSERT_TRUE(RunPass(engine, host, clock, master).ok());
  EXPECT_FALSE(engine.is_slave);
  EXPECT_TRUE(Converged(engine, host, master));
}

TEST(ExecutorTest, WaitStreamingTimesOutAsUnavailable) {
  FakeEngine engine;
  FakeHost host;
  FakeClock clock;
  engine.link_up = false;
  DesiredState d = Desired(Role::kSlave);
  absl::Status st = RunPass(engine, host, clock, d);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("wait-streaming"), std::string::npos);
  engine.link_up = true;
  EXPECT_TRUE(RunPass(engine, host, clock, d).ok());
}

TEST(ExecutorTest, HookRunsOncePerChange) {
  FakeEngine engine;
  FakeHost host;
  FakeClock clock;
  DesiredState d = Desired(Role::kStandalone);
  ASSERT_TRUE(RunPass(engine, host, clock, d).ok());
  ASSERT_TRUE(RunPass(engine, host, clock, d).ok());
  EXPECT_EQ(host.hook_runs, 1);
  d.env["POSTGRESQL_ADDRESS"] = "10.0.0.1";
  ASSERT_TRUE(RunPass(engine, host, clock, d).ok());
  EXPECT_EQ(host.hook_runs, 2);
}

class RecordingSink : public ObservedSink {
 public:
  void Publish(const ObservedState& observed, std::vector<StepEvent> events) override {
    last = observed;
    all.push_back(observed);
    for (auto& e : events) this->events.push_back(e);
  }
  ObservedState last;
  std::vector<ObservedState> all;
  std::vector<StepEvent> events;
};

TEST(ReconcilerTest, ReportsConvergedGenerationAndStepEvents) {
  FakeEngine engine;
  FakeHost host;
  FakeClock clock;
  DesiredStateStore store("");
  RecordingSink sink;
  Reconciler reconciler(kSelf, &engine, &host, &clock, &store, &sink);
  ASSERT_TRUE(*store.Offer(Desired(Role::kSlave)));
  ASSERT_TRUE(reconciler.Pass().ok());
  EXPECT_EQ(sink.last.converged_generation, 3u);
  EXPECT_EQ(sink.last.role, Role::kSlave);
  EXPECT_TRUE(sink.last.streaming);
  EXPECT_TRUE(sink.last.last_error.empty());
  ASSERT_FALSE(sink.events.empty());
  EXPECT_EQ(sink.events.front().step, "fence");
  EXPECT_EQ(sink.events.back().step, "write-env");
  for (const StepEvent& e : sink.events) EXPECT_TRUE(e.ok) << e.step;
}

TEST(ReconcilerTest, HoldsOnABlockingErrorUntilTheDesiredStateChanges) {
  FakeEngine engine;
  FakeHost host;
  FakeClock clock;
  host.free_bytes = 10;
  DesiredStateStore store("");
  RecordingSink sink;
  Reconciler reconciler(kSelf, &engine, &host, &clock, &store, &sink);
  ASSERT_TRUE(*store.Offer(Desired(Role::kSlave)));
  EXPECT_EQ(reconciler.Pass().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(sink.last.error_blocks);
  EXPECT_NE(sink.last.last_error.find("not enough free disk"), std::string::npos);
  const size_t calls = engine.calls.size();
  EXPECT_EQ(reconciler.Pass().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(engine.calls.size(), calls) << "held: nothing executed again";
  // A new target releases the hold.
  host.free_bytes = 1 << 20;
  DesiredState d = Desired(Role::kSlave);
  d.generation = 4;
  d.resync_token = "again";
  ASSERT_TRUE(*store.Offer(d));
  EXPECT_TRUE(reconciler.Pass().ok());
  EXPECT_EQ(sink.last.converged_generation, 4u);
  EXPECT_FALSE(sink.last.error_blocks);
}

TEST(ReconcilerTest, AnErrorOfAnOlderTargetIsNotShownWithTheNewOne) {
  FakeEngine engine;
  FakeHost host;
  FakeClock clock;
  host.free_bytes = 10;
  DesiredStateStore store("");
  RecordingSink sink;
  Reconciler reconciler(kSelf, &engine, &host, &clock, &store, &sink);
  ASSERT_TRUE(*store.Offer(Desired(Role::kSlave)));
  EXPECT_EQ(reconciler.Pass().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(sink.last.error_blocks);
  DesiredState d = Desired(Role::kSlave);
  d.generation = 4;
  d.resync_token = "again";
  ASSERT_TRUE(*store.Offer(d));
  sink.all.clear();
  EXPECT_EQ(reconciler.Pass().code(), absl::StatusCode::kFailedPrecondition);
  // Every report until generation 4's own outcome carries no error.
  ASSERT_GE(sink.all.size(), 2u);
  for (size_t i = 0; i + 1 < sink.all.size(); ++i) {
    EXPECT_EQ(sink.all[i].seen_generation, 4u);
    EXPECT_TRUE(sink.all[i].last_error.empty()) << i << ": " << sink.all[i].last_error;
    EXPECT_FALSE(sink.all[i].error_blocks) << i;
  }
  EXPECT_TRUE(sink.all.back().error_blocks);
}

// An agent that was told it is a master, restarted: its desired state read
// back from its state dir, its server `running` (writable) or down.
struct RestartedMaster {
  explicit RestartedMaster(bool running)
      : store(Persisted(dir)), reconciler(kSelf, &engine, &host, &clock, &store, &sink) {
    engine.running = running;
    host.facts.recorded_role = Role::kMaster;
    EXPECT_TRUE(store.Load().ok());
  }
  static std::string Persisted(const ::tandem::testing::TempDir& dir) {
    const std::string path = dir.Sub("desired.pb");
    DesiredStateStore before_restart(path);
    EXPECT_TRUE(*before_restart.Offer(Desired(Role::kMaster)));
    return path;
  }
  int Calls(const std::string& name) const {
    return static_cast<int>(std::count(engine.calls.begin(), engine.calls.end(), name));
  }

  ::tandem::testing::TempDir dir{"tandem-desired"};
  FakeEngine engine;
  FakeHost host;
  FakeClock clock;
  DesiredStateStore store;
  RecordingSink sink;
  Reconciler reconciler;
};

TEST(ReconcilerTest, AMasterIsNotMadeWritableBeforeTheControllerConfirmsIt) {
  // The agent restarts with the server down and no controller yet.
  RestartedMaster agent(/*running=*/false);
  EXPECT_FALSE(agent.store.Confirmed());
  absl::Status held = agent.reconciler.Pass();
  EXPECT_TRUE(absl::IsUnavailable(held)) << held;
  EXPECT_NE(held.message().find("confirms its role"), std::string::npos) << held;
  EXPECT_TRUE(agent.engine.running);
  EXPECT_TRUE(agent.engine.fenced) << "started fenced";
  EXPECT_FALSE(agent.engine.Observe()->writable);
  // Fenced before it was started: never writable in between.
  const std::vector<std::string>& calls = agent.engine.calls;
  auto fence = std::find(calls.begin(), calls.end(), "fence");
  auto start = std::find(calls.begin(), calls.end(), "start");
  ASSERT_NE(fence, calls.end());
  EXPECT_LT(fence, start);
  EXPECT_EQ(agent.Calls("make-writable"), 0);
  // The controller sends the same generation again (on connecting): it
  // confirms the target, but the master waits for an answer to a report.
  EXPECT_TRUE(*agent.store.Offer(Desired(Role::kMaster)));
  EXPECT_TRUE(agent.store.Confirmed());
  EXPECT_TRUE(absl::IsUnavailable(agent.reconciler.Pass()));
  EXPECT_FALSE(agent.engine.Observe()->writable);
  // The controller's word (the same generation) wakes the loop and the
  // master becomes writable.
  EXPECT_TRUE(agent.store.NoteAnswer(3, agent.clock.now));
  EXPECT_TRUE(agent.reconciler.Pass().ok());
  EXPECT_TRUE(agent.engine.Observe()->writable);
  EXPECT_FALSE(*agent.store.Offer(Desired(Role::kMaster))) << "nothing new the second time";
}

TEST(ReconcilerTest, AWritableMasterIsLeftAloneWithoutTheController) {
  // Only the agent restarted: the server runs on, writable.
  RestartedMaster agent(/*running=*/true);
  EXPECT_TRUE(agent.reconciler.Pass().ok());
  EXPECT_TRUE(agent.engine.Observe()->writable);
  EXPECT_EQ(agent.Calls("fence"), 0);
}

// A slave whose master is gone waits for its link; a newer desired state
// (say, its promotion) ends the wait at once rather than at the timeout.
TEST(ReconcilerTest, ANewerTargetEndsAWaitAtOnce) {
  FakeEngine engine;
  engine.link_up = false;
  FakeHost host;
  FakeClock clock;
  DesiredStateStore store("");
  RecordingSink sink;
  ReconcilerOptions options;
  options.executor.streaming_timeout = std::chrono::seconds(60);
  ASSERT_TRUE(*store.Offer(Desired(Role::kSlave)));
  // The promotion arrives while the pass waits.
  class Promoting : public Clock {
   public:
    Promoting(FakeClock* clock, DesiredStateStore* store) : clock_(clock), store_(store) {}
    std::chrono::steady_clock::time_point Now() override { return clock_->Now(); }
    void SleepFor(std::chrono::milliseconds d) override {
      clock_->SleepFor(d);
      if (++sleeps_ == 5) {
        DesiredState promoted = Desired(Role::kMaster);
        promoted.generation = 4;
        (void)store_->Offer(promoted);
      }
    }
   private:
    FakeClock* clock_;
    DesiredStateStore* store_;
    int sleeps_ = 0;
  };
  Promoting promoting(&clock, &store);
  Reconciler waiting(kSelf, &engine, &host, &promoting, &store, &sink, options);
  absl::Status st = waiting.Pass();
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;
  EXPECT_NE(st.message().find("a newer desired state came"), std::string::npos) << st;
  EXPECT_LT(clock.now.time_since_epoch(), std::chrono::seconds(5)) << "not the 60 s timeout";
  store.NoteAnswer(4, clock.now);  // the report sent on the news is answered
  EXPECT_TRUE(waiting.Pass().ok());
  EXPECT_TRUE(engine.Observe()->writable) << "promoted on the next pass";
}

// A master whose agent has not heard from the controller for longer than
// the lease (it hung, or was cut off) is not made writable on its old word:
// it may have been replaced meanwhile.
TEST(ReconcilerTest, AMasterIsMadeWritableOnlyOnRecentWordFromTheController) {
  FakeEngine engine;
  engine.running = false;
  FakeHost host;
  host.facts.recorded_role = Role::kMaster;
  FakeClock clock;
  DesiredStateStore store("");
  RecordingSink sink;
  ReconcilerOptions options;
  options.lease = std::chrono::seconds(10);
  Reconciler reconciler(kSelf, &engine, &host, &clock, &store, &sink, options);
  ASSERT_TRUE(*store.Offer(Desired(Role::kMaster)));
  // The desired state alone is not word enough to start it writable.
  EXPECT_TRUE(absl::IsUnavailable(reconciler.Pass()));
  EXPECT_FALSE(engine.Observe()->writable);
  // A report answered: generation 3 is the controller's current one.
  EXPECT_TRUE(store.NoteAnswer(3, clock.now)) << "news: the loop must look again";
  EXPECT_FALSE(store.NoteAnswer(3, clock.now)) << "the same word again is no news";
  ASSERT_TRUE(reconciler.Pass().ok());
  ASSERT_TRUE(engine.Observe()->writable);
  // The server stops; the agent hears nothing for 11 s.
  engine.running = false;
  clock.now += std::chrono::seconds(11);
  absl::Status held = reconciler.Pass();
  EXPECT_TRUE(absl::IsUnavailable(held)) << held;
  EXPECT_NE(held.message().find("without recent word from the controller"), std::string::npos);
  EXPECT_TRUE(engine.running) << "started, fenced";
  EXPECT_FALSE(engine.Observe()->writable);
  // The same target from the stream (it may have waited there while the
  // agent hung) is no word.
  EXPECT_FALSE(*store.Offer(Desired(Role::kMaster)));
  EXPECT_TRUE(absl::IsUnavailable(reconciler.Pass()));
  EXPECT_FALSE(engine.Observe()->writable);
  // Nor is an answer to a report sent before the silence.
  EXPECT_FALSE(store.NoteAnswer(3, clock.now - std::chrono::seconds(11)));
  EXPECT_TRUE(absl::IsUnavailable(reconciler.Pass()));
  // A report answered by a controller that has moved on is no word for it.
  store.NoteAnswer(4, clock.now);
  EXPECT_TRUE(absl::IsUnavailable(reconciler.Pass()));
  EXPECT_FALSE(engine.Observe()->writable);
  // Word comes (a report sent now, generation 3 current): the master again.
  clock.now += std::chrono::seconds(1);
  store.NoteAnswer(3, clock.now);
  EXPECT_TRUE(reconciler.Pass().ok());
  EXPECT_TRUE(engine.Observe()->writable);
}

// A promotion: the report sent when the target came is answered while the
// pass waits for it, and the master is made writable in that same pass.
TEST(ReconcilerTest, APromotedMasterWaitsARoundTripForTheControllersWord) {
  FakeEngine engine;
  engine.running = false;
  FakeHost host;
  FakeClock clock;
  DesiredStateStore store("");
  RecordingSink sink;
  // The answer comes on the pass's third look.
  class Answering : public Clock {
   public:
    Answering(FakeClock* clock, DesiredStateStore* store) : clock_(clock), store_(store) {}
    std::chrono::steady_clock::time_point Now() override { return clock_->Now(); }
    void SleepFor(std::chrono::milliseconds d) override {
      clock_->SleepFor(d);
      if (++sleeps_ == 3) store_->NoteAnswer(3, clock_->Now() - std::chrono::milliseconds(2));
    }
    int sleeps() const { return sleeps_; }

   private:
    FakeClock* clock_;
    DesiredStateStore* store_;
    int sleeps_ = 0;
  };
  Answering answering(&clock, &store);
  Reconciler reconciler(kSelf, &engine, &host, &answering, &store, &sink);
  ASSERT_TRUE(*store.Offer(Desired(Role::kMaster)));
  EXPECT_TRUE(reconciler.Pass().ok());
  EXPECT_TRUE(engine.Observe()->writable);
  EXPECT_EQ(answering.sleeps(), 3);
  EXPECT_EQ(std::count(engine.calls.begin(), engine.calls.end(), "fence"), 0)
      << "no fenced pass first";
}

// Bug (a): a master restarted after promote --force must not take the
// re-sent target the controller still holds back (superseded) as the
// confirmation of its role; a writable one is fenced.
TEST(ReconcilerTest, ASupersededMasterTargetConfirmsNothingAndIsFenced) {
  for (bool running : {false, true}) {
    SCOPED_TRACE(running ? "server running writable" : "server down");
    RestartedMaster agent(running);
    DesiredState resent = Desired(Role::kMaster);
    resent.superseded = true;
    EXPECT_TRUE(*agent.store.Offer(resent)) << "news: the loop must look again";
    EXPECT_FALSE(agent.store.Confirmed());
    (void)agent.reconciler.Pass();
    (void)agent.reconciler.Pass();
    EXPECT_TRUE(agent.engine.running);
    EXPECT_FALSE(agent.engine.Observe()->writable);
    EXPECT_EQ(agent.Calls("make-writable"), 0);
  }
}

TEST(DesiredStoreTest, IgnoresOlderGenerationsAndPersists) {
  ::tandem::testing::TempDir dir("tandem-desired");
  const std::string path = dir.Sub("desired.pb");
  {
    DesiredStateStore store(path);
    ASSERT_TRUE(store.Load().ok());
    EXPECT_EQ(store.Current().generation, 0u);
    EXPECT_TRUE(*store.Offer(Desired(Role::kSlave)));
    DesiredState older = Desired(Role::kStandalone);
    older.generation = 2;
    EXPECT_TRUE(*store.Offer(older)) << "news: the agent now holds its role";
    EXPECT_EQ(store.Current().role, Role::kSlave);
    EXPECT_NE(store.HoldReason().find("older than the held generation 3"), std::string::npos);
    EXPECT_FALSE(*store.Offer(older)) << "the same hold again";
    EXPECT_TRUE(*store.Offer(Desired(Role::kSlave))) << "the hold ends";
    EXPECT_TRUE(store.HoldReason().empty());
    EXPECT_FALSE(*store.Offer(Desired(Role::kSlave))) << "same target, same generation";
  }
  DesiredStateStore reloaded(path);
  ASSERT_TRUE(reloaded.Load().ok());
  EXPECT_EQ(reloaded.Current().generation, 3u);
  EXPECT_EQ(reloaded.Current().role, Role::kSlave);
  EXPECT_EQ(reloaded.Current().upstream, kUpstream);
}

struct JudgeCase {
  std::string name;
  std::function<void(DesiredState& held, DesiredState& offered)> setup;
  bool take;
  std::string reason;  // part of the hold reason
};

TEST(DesiredStoreTest, JudgeOfferTable) {
  const std::vector<JudgeCase> cases = {
      {"same cluster, newer", [](DesiredState&, DesiredState& o) { o.generation = 4; }, true, ""},
      {"same state again", [](DesiredState&, DesiredState&) {}, true, ""},
      {"nothing held yet",
       [](DesiredState& h, DesiredState& o) {
         h = DesiredState{};
         o.generation = 1;
       },
       true, ""},
      {"held without a cluster id (an older agent)",
       [](DesiredState& h, DesiredState& o) {
         h.cluster_id.clear();
         o.generation = 4;
       },
       true, ""},
      {"controller without a cluster id",
       [](DesiredState&, DesiredState& o) {
         o.cluster_id.clear();
         o.generation = 4;
       },
       true, ""},
      {"older generation", [](DesiredState&, DesiredState& o) { o.generation = 2; }, false,
       "older than the held generation 3"},
      {"same generation, another target",
       [](DesiredState&, DesiredState& o) { o.role = Role::kStandalone; }, false,
       "with another target"},
      {"another cluster",
       [](DesiredState&, DesiredState& o) {
         o.cluster_id = "c-new";
         o.generation = 9;
       },
       false, "from cluster c-new, the one held (generation 3) from cluster c-old"},
      {"another cluster, adopted",
       [](DesiredState&, DesiredState& o) {
         o.cluster_id = "c-new";
         o.generation = 1;
         o.adopt = true;
       },
       true, ""},
      {"adopted but older within the cluster (a stale message)",
       [](DesiredState&, DesiredState& o) {
         o.generation = 2;
         o.adopt = true;
       },
       false, "older"},
  };
  for (const JudgeCase& c : cases) {
    SCOPED_TRACE(c.name);
    DesiredState held = Desired(Role::kSlave);
    held.cluster_id = "c-old";
    DesiredState offered = held;
    c.setup(held, offered);
    OfferVerdict verdict = JudgeOffer(held, offered);
    EXPECT_EQ(verdict.take, c.take);
    EXPECT_NE(verdict.hold_reason.find(c.reason), std::string::npos) << verdict.hold_reason;
    if (!c.take) {
      EXPECT_NE(verdict.hold_reason.find("tandemctl adopt"), std::string::npos);
    }
  }
}

TEST(ReconcilerTest, AHoldIsReportedAndTheRoleKept) {
  FakeEngine engine;
  FakeHost host;
  FakeClock clock;
  DesiredStateStore store("");
  RecordingSink sink;
  Reconciler reconciler(kSelf, &engine, &host, &clock, &store, &sink);
  DesiredState mine = Desired(Role::kSlave);
  mine.cluster_id = "c-old";
  ASSERT_TRUE(*store.Offer(mine));
  ASSERT_TRUE(reconciler.Pass().ok());
  DesiredState foreign = Desired(Role::kStandalone);
  foreign.cluster_id = "c-new";
  foreign.generation = 1;
  ASSERT_TRUE(*store.Offer(foreign));
  ASSERT_TRUE(reconciler.Pass().ok());
  EXPECT_NE(sink.last.hold_reason.find("from cluster c-new"), std::string::npos);
  EXPECT_EQ(sink.last.role, Role::kSlave) << "kept";
  EXPECT_TRUE(engine.is_slave);
  foreign.adopt = true;
  ASSERT_TRUE(*store.Offer(foreign));
  ASSERT_TRUE(reconciler.Pass().ok());
  EXPECT_TRUE(sink.last.hold_reason.empty());
  EXPECT_EQ(sink.last.role, Role::kStandalone);
  EXPECT_EQ(store.Current().cluster_id, "c-new");
}

}  // namespace
}  // namespace tandem

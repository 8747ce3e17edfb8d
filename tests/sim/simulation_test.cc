// The deterministic simulation as a test: thousands of seeds keep every
// invariant (in shards, so that ctest runs them in parallel), a seed replays
// exactly, and the simulation catches bug (a) when its fix is undone.
#include "tests/sim/simulation.h"

#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/test_hooks.h"
#include "gtest/gtest.h"

namespace tandem::sim {
namespace {

constexpr uint64_t kSeedsPerShard = 500;
constexpr int kShards = 4;  // 2,000 seeds

class SimulationShardTest : public ::testing::TestWithParam<int> {};

TEST_P(SimulationShardTest, EverySeedKeepsTheInvariantsAndConverges) {
  const uint64_t first = 1 + static_cast<uint64_t>(GetParam()) * kSeedsPerShard;
  uint64_t events = 0;
  int forced = 0;
  for (uint64_t seed = first; seed < first + kSeedsPerShard; ++seed) {
    SimOptions options;
    options.seed = seed;
    const SimResult r = Simulate(options);
    events += r.events;
    forced += r.forced_takeovers;
    ASSERT_TRUE(r.ok) << "seed " << seed << " at " << r.failed_at_ms / 1000.0 << " s: " << r.failure
                      << "\n  replay: " << ReplayCommand(seed);
  }
  // The runs did something: events, and forced takeovers among them.
  EXPECT_GT(events, kSeedsPerShard * 500);
  EXPECT_GT(forced, 0);
}

INSTANTIATE_TEST_SUITE_P(Seeds, SimulationShardTest, ::testing::Range(0, kShards));

TEST(SimulationTest, ASeedReplaysExactly) {
  for (uint64_t seed : {3, 42}) {
    std::ostringstream first_trace;
    std::ostringstream second_trace;
    SimOptions options;
    options.seed = seed;
    options.trace = &first_trace;
    const SimResult first = Simulate(options);
    options.trace = &second_trace;
    const SimResult second = Simulate(options);
    EXPECT_EQ(first.digest, second.digest) << seed;
    EXPECT_EQ(first.events, second.events) << seed;
    EXPECT_EQ(first_trace.str(), second_trace.str()) << seed;
    EXPECT_GT(first_trace.str().size(), 1000u);
    // The trace does not change the run.
    options.trace = nullptr;
    EXPECT_EQ(Simulate(options).digest, first.digest) << seed;
  }
}

// Undo the fix of "promote --force leaves two writable masters" (a node
// held back by the bootstrap queue keeps its old, writable target, and a
// re-sent one confirms it): the simulation finds two writable masters.
TEST(SimulationTest, CatchesBugAWhenItsFixIsReverted) {
  test_hooks::revert_queued_revocation = true;
  uint64_t caught = 0;
  std::string failure;
  for (uint64_t seed = 1; seed <= 2000 && caught == 0; ++seed) {
    SimOptions options;
    options.seed = seed;
    const SimResult r = Simulate(options);
    if (!r.ok) {
      caught = seed;
      failure = r.failure;
    }
  }
  test_hooks::revert_queued_revocation = false;
  ASSERT_NE(caught, 0u) << "2,000 seeds ran without noticing the bug";
  EXPECT_NE(failure.find("two writable nodes in a group"), std::string::npos) << failure;
  std::cout << "bug (a) caught by seed " << caught << ": " << failure << "\n  replay: "
            << ReplayCommand(caught) << " --revert-fix queued-revocation\n";
}

}  // namespace
}  // namespace tandem::sim

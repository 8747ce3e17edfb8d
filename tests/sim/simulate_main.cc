// tandem-simulate: runs the deterministic simulation (tests/sim) over many
// seeds, or replays one seed with its trace.
//
//   tandem-simulate --seeds N [--first S]   seeds S..S+N-1 (default S=1)
//   tandem-simulate --seed S                one seed, every event printed
//   --revert-fix queued-revocation          undo the fix of bug (a) (the
//                                           simulation should then fail)
//
// Exit status: 0 when every seed keeps the invariants, 1 otherwise (each
// failing seed is one line with the command that replays it), 2 on a usage
// error.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/test_hooks.h"
#include "tests/sim/simulation.h"

namespace {

int Usage(const std::string& why) {
  std::fprintf(stderr,
               "tandem-simulate: %s\n"
               "usage: tandem-simulate --seeds N [--first S] | --seed S  "
               "[--revert-fix queued-revocation]\n",
               why.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t first = 1;
  uint64_t count = 0;
  bool single = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    uint64_t value = 0;
    if ((arg == "--seeds" || arg == "--seed" || arg == "--first") &&
        (!has_value || !absl::SimpleAtoi(argv[i + 1], &value))) {
      return Usage(absl::StrCat(arg, " needs a number"));
    }
    if (arg == "--seeds") {
      count = value;
      ++i;
    } else if (arg == "--first") {
      first = value;
      ++i;
    } else if (arg == "--seed") {
      first = value;
      count = 1;
      single = true;
      ++i;
    } else if (arg == "--revert-fix") {
      if (!has_value || std::string(argv[i + 1]) != "queued-revocation") {
        return Usage("--revert-fix takes: queued-revocation");
      }
      tandem::test_hooks::revert_queued_revocation = true;
      ++i;
    } else {
      return Usage(absl::StrCat("unknown argument ", arg));
    }
  }
  if (count == 0) return Usage("give --seeds N or --seed S");
  const auto start = std::chrono::steady_clock::now();
  uint64_t failed = 0;
  uint64_t events = 0;
  double simulated = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    tandem::sim::SimOptions options;
    options.seed = seed;
    if (single) options.trace = &std::cout;
    const tandem::sim::SimResult r = tandem::sim::Simulate(options);
    events += r.events;
    simulated += static_cast<double>(r.end_ms) / 1000;
    if (!r.ok) {
      ++failed;
      std::printf("seed %llu FAILED at %.3f s: %s\n  replay: %s\n",
                  static_cast<unsigned long long>(seed), static_cast<double>(r.failed_at_ms) / 1000,
                  r.failure.c_str(), tandem::sim::ReplayCommand(seed).c_str());
    } else if (single) {
      std::printf("seed %llu: ok (%d nodes, %d operator commands, %d faults, %d forced takeovers, "
                  "%llu acknowledged writes, %llu events, %.1f s simulated)\n",
                  static_cast<unsigned long long>(seed), r.nodes, r.operator_commands, r.faults,
                  r.forced_takeovers, static_cast<unsigned long long>(r.acknowledged_writes),
                  static_cast<unsigned long long>(r.events), static_cast<double>(r.end_ms) / 1000);
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%llu seeds (%llu..%llu): %llu failed; %llu events, %.0f s simulated, in %.1f s\n",
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(first + count - 1),
              static_cast<unsigned long long>(failed), static_cast<unsigned long long>(events),
              simulated, seconds);
  return failed == 0 ? 0 : 1;
}

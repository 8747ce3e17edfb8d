#include "tandemctl/wait.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/types.h"
#include "proto/convert.h"
#include "tandemctl/args.h"
#include "tandemctl/format.h"

namespace tandem::cli {
namespace {

constexpr size_t kErrorChars = 200;

// A queued node still shows its old target: its error (e.g. its old
// upstream went away in a switchover) says nothing of the one it waits for.
bool BlockedOnCurrentTarget(const v1::NodeStatus& node) {
  return node.observed().error_blocks() && !node.queued() &&
         node.observed().seen_generation() == node.desired().generation();
}

}  // namespace

std::string PendingDescription(const v1::NodeStatus& node) {
  std::vector<std::string> parts;
  if (node.seconds_since_report() < 0) {
    parts.push_back("no report yet");
  } else if (!node.observed().engine_reachable()) {
    parts.push_back("engine unreachable");
  } else {
    std::string_view role = RoleName(FromProto(node.observed().role()));
    parts.push_back(absl::StrCat("observed ", role.empty() ? "?" : std::string(role)));
  }
  parts.push_back(absl::StrCat("gen ", node.desired().generation(), "/",
                               node.observed().converged_generation()));
  if (!node.agent_connected()) parts.push_back("agent not connected");
  if (node.queued()) parts.push_back("queued for bootstrap");
  if (!node.observed().current_step().empty()) {
    parts.push_back(absl::StrCat("step ", OneLine(node.observed().current_step())));
  }
  if (!node.observed().last_error().empty()) {
    parts.push_back(
        absl::StrCat("last error: ", OneLine(node.observed().last_error(), kErrorChars)));
  }
  return absl::StrCat(node.info().id(), " (", absl::StrJoin(parts, ", "), ")");
}

WaitDecision DecideWait(const v1::ListNodesResponse& nodes, const std::vector<std::string>& names) {
  std::map<std::string, const v1::NodeStatus*> by_id;
  for (const v1::NodeStatus& node : nodes.nodes()) by_id[node.info().id()] = &node;

  std::vector<const v1::NodeStatus*> targets;
  std::vector<std::string> unknown;
  if (names.empty()) {
    for (const v1::NodeStatus& node : nodes.nodes()) targets.push_back(&node);
  } else {
    for (const std::string& name : names) {
      auto it = by_id.find(name);
      if (it == by_id.end()) {
        unknown.push_back(name);
      } else {
        targets.push_back(it->second);
      }
    }
  }

  WaitDecision decision;
  if (!unknown.empty()) {
    decision.outcome = WaitOutcome::kFail;
    decision.message = absl::StrCat(unknown.size() == 1 ? "unknown node " : "unknown nodes ",
                                    absl::StrJoin(unknown, ", "));
    return decision;
  }
  for (const v1::NodeStatus* node : targets) {
    // A hold against the target the controller has now (not one it sent
    // since, e.g. with tandemctl adopt: that is waited for).
    if (!node->observed().hold_reason().empty() &&
        node->desired().generation() <= node->observed().seen_generation()) {
      decision.outcome = WaitOutcome::kFail;
      decision.message = absl::StrCat(node->info().id(), " holds its role: ",
                                      OneLine(node->observed().hold_reason()));
      return decision;
    }
    if (!node->switchover_aborted().empty()) {
      decision.outcome = WaitOutcome::kFail;
      decision.message = OneLine(node->switchover_aborted());
      return decision;
    }
    if (!node->converged() && BlockedOnCurrentTarget(*node)) {
      decision.outcome = WaitOutcome::kFail;
      decision.message = absl::StrCat(
          node->info().id(), " cannot converge to generation ", node->desired().generation(), ": ",
          OneLine(node->observed().last_error().empty()
                      ? "the agent reports a blocking error without a message"
                      : node->observed().last_error()));
      return decision;
    }
  }
  std::vector<std::string> descriptions;
  for (const v1::NodeStatus* node : targets) {
    if (node->converged()) continue;
    decision.pending.push_back(node->info().id());
    descriptions.push_back(PendingDescription(*node));
  }
  if (decision.pending.empty()) {
    decision.outcome = WaitOutcome::kDone;
  } else {
    decision.outcome = WaitOutcome::kKeepWaiting;
    decision.message = absl::StrJoin(descriptions, "; ");
  }
  return decision;
}

WaitDecision DecideSwitchover(const v1::NodeStatus& node) {
  WaitDecision decision;
  if (!node.switchover().empty()) {
    decision.outcome = WaitOutcome::kKeepWaiting;
    decision.message = OneLine(node.switchover());
    decision.pending.push_back(node.info().id());
  } else if (!node.switchover_aborted().empty()) {
    decision.outcome = WaitOutcome::kFail;
    decision.message = OneLine(node.switchover_aborted());
  } else {
    decision.outcome = WaitOutcome::kDone;
  }
  return decision;
}

std::string TimeoutMessage(std::chrono::milliseconds timeout, const WaitDecision& last) {
  return absl::StrCat("timed out after ", FormatDuration(timeout), " waiting for: ", last.message);
}

}  // namespace tandem::cli

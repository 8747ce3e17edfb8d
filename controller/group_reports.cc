// The part of the planner that acts on agents' reports: step events, the
// bootstrap queue (a slave converged on its copy is seeded), the fence of a
// switchover's old master (phase 2) and automatic resyncs.
#include <utility>

#include "absl/strings/str_cat.h"
#include "controller/group_planner.h"
#include "controller/group_planner_impl.h"

namespace tandem {
using namespace planner;  // NOLINT: the planner's own helpers

absl::StatusOr<Decision> PlanReport(const ControllerState& state, const std::string& node_id,
                                    const ObservedState& observed,
                                    const std::vector<StepEvent>& events,
                                    const PlanContext& context) {
  absl::StatusOr<const NodeRecord*> n = Find(state, node_id);
  if (!n.ok()) return n.status();
  const NodeRecord& record = **n;
  // A slave that converged on the copy it was asked for is seeded: the next
  // queued slave of its group may start its bootstrap.
  const bool seeded_now = record.role == Role::kSlave && !record.seeded &&
                          PublishedInGroup(record) &&
                          record.desired.resync_token == record.resync_token &&
                          observed.converged_generation == record.desired.generation;
  // The old master of a switchover reports the fence and its position:
  // the promoted slave may now catch up with it and take over.
  auto switchover = state.switchovers.find(node_id);
  const bool fenced_now = switchover != state.switchovers.end() && record.fenced &&
                          record.desired.fenced && !observed.writable &&
                          !observed.position.empty() &&
                          observed.converged_generation == record.desired.generation;
  // A slave whose agent says it can no longer follow its master: with the
  // auto_resync policy the controller asks for a copy itself (cheap path
  // first), once per interval, never in the middle of a copy or a
  // switchover.
  const double now = UnixSeconds(context.now);
  const bool resync_now =
      !observed.out_of_sync.empty() && record.role == Role::kSlave &&
      GroupAutoResync(state, record, context.options) && record.seeded &&
      state.switchovers.count(record.upstream_id) == 0 && PublishedInGroup(record) &&
      state.nodes.count(record.upstream_id) != 0 &&
      state.nodes.at(record.upstream_id).catch_up_position.empty() &&
      record.desired.resync_token == record.resync_token &&
      (record.auto_resync_time == 0 ||
       now - record.auto_resync_time >=
           absl::ToDoubleSeconds(context.options.auto_resync_interval));
  // The agent starts holding its role against this controller (or holds it
  // for another reason): worth an event. An adopted node that took the
  // state ends its adoption.
  // A promoted master that replayed its old master's last position and is
  // writable: the switchover is done (its group may change again).
  const bool caught_up_now = record.role == Role::kMaster && !record.catch_up_position.empty() &&
                             observed.writable &&
                             observed.converged_generation == record.desired.generation;
  const AgentLiveness& before = context.Agent(node_id);
  const bool hold_news =
      !observed.hold_reason.empty() &&
      (!before.observed.has_value() || before.observed->hold_reason != observed.hold_reason);
  const bool adopted_now = record.adopting && observed.hold_reason.empty() &&
                           observed.seen_generation >= record.desired.generation;
  if (events.empty() && !seeded_now && !fenced_now && !resync_now && !hold_news &&
      !adopted_now && !caught_up_now) {
    return Decision{state, {}, false};
  }
  ControllerState next = state;
  if (hold_news) {
    Note(&next, node_id, absl::StrCat(node_id, "'s agent holds its role: ", observed.hold_reason),
         context);
  }
  if (adopted_now) next.nodes.at(node_id).adopting = false;
  for (const StepEvent& step : events) {
    Event event;
    event.unix_time = now;
    event.node = node_id;
    event.kind = kEventStep;
    if (step.ok) {
      event.message = step.reason.empty() ? step.step : absl::StrCat(step.step, ": ", step.reason);
    } else {
      event.message = absl::StrCat(step.step, " failed: ", step.error);
      if (!step.reason.empty()) absl::StrAppend(&event.message, " (", step.reason, ")");
    }
    event.message = Truncate(std::move(event.message));
    event.ok = step.ok;
    event.generation = step.generation;
    event.seconds = step.seconds;
    AppendEvent(&next, std::move(event), context.options);
  }
  std::string cause;
  if (fenced_now) {
    const std::string promoted = switchover->second.promoted;
    // The old master was fenced before the promoted slave caught up, so
    // every follower may rejoin in place: none holds a write the new
    // master lacks.
    SwitchMaster(&next, promoted, observed.position, /*rejoin_first=*/true);
    cause = absl::StrCat("promote ", promoted, ": ", node_id, " fenced at ", observed.position,
                         "; ", promoted, " takes over");
  } else if (resync_now) {
    RequestCopy(&next, node_id, /*rejoin_first=*/true);
    next.nodes.at(node_id).auto_resync_time = now;
    cause = absl::StrCat("auto-resync ", node_id, ": ", observed.out_of_sync);
  } else if (caught_up_now) {
    next.nodes.at(node_id).catch_up_position.clear();
    cause = absl::StrCat(node_id, " replayed its old master's writes and is writable: the "
                                  "switchover is done");
  } else if (seeded_now) {
    next.nodes.at(node_id).seeded = true;
    cause = absl::StrCat(node_id, " holds a copy of ", record.upstream_id);
  }
  return Finish(state, std::move(next), cause, context);
}

}  // namespace tandem

// The simulated links between the agents and the controller: the Watch
// streams (FIFO per stream, delayed; a lost message breaks the stream, as on
// TCP, and the agent reconnects) and the Report calls (one at a time per
// agent, delayed, lost or late past their deadline, hence reordered).
#include "tests/sim/world.h"

namespace tandem::sim {
void World::Push(const std::string& id) {
  auto it = streams_.find(id);
  if (it == streams_.end() || !registry_) return;
  Stream& stream = it->second;
  if (!registry_->CheckCurrentAgent(id, stream.instance).ok()) {
    // Another process of the node took over: this stream ends.
    registry_->AgentDisconnected(id, stream.instance);
    const std::string instance = stream.instance;
    const int incarnation = stream.incarnation;
    streams_.erase(it);
    After(NetDelay(), [this, id, instance, incarnation] { StreamBroken(id, instance, incarnation); });
    return;
  }
  absl::StatusOr<DesiredState> desired = registry_->Desired(id);
  if (!desired.ok() || desired->generation <= stream.sent) return;
  stream.sent = desired->generation;
  if (stream.orphan) return;  // nobody reads it
  const std::string instance = stream.instance;
  const int incarnation = stream.incarnation;
  if (Lost(false)) {
    // A message lost on a TCP stream breaks it.
    Trace("net: watch message to ", id, " lost");
    registry_->AgentDisconnected(id, instance);
    streams_.erase(it);
    After(NetDelay(), [this, id, instance, incarnation] { StreamBroken(id, instance, incarnation); });
    return;
  }
  const Millis at = std::max(now_ + NetDelay(), stream.last_delivery + 1);
  stream.last_delivery = at;
  DesiredState message = *desired;
  const uint64_t epoch = stream.epoch;
  At(at, [this, id, incarnation, epoch, message] {
    Deliver(nodes_.at(id), incarnation, epoch, message);
  });
}

void World::Connect(Node& node, int incarnation) {
  if (!node.agent || node.agent->incarnation != incarnation || node.connected || node.hung) return;
  Node* n = &node;
  auto retry = [this, n, incarnation] {
    const Millis wait = n->backoff;
    n->backoff = std::min<Millis>(n->backoff * 2, 5000);
    After(wait, [this, n, incarnation] { Connect(*n, incarnation); });
  };
  if (!registry_) {
    retry();
    return;
  }
  const std::string instance = node.agent->instance;
  absl::Status admitted = registry_->AgentConnected(node.id, instance, instance);
  if (admitted.ok()) {
    absl::StatusOr<Changes> registered = registry_->Register(node.info);
    if (!registered.ok()) {
      registry_->AgentDisconnected(node.id, instance);
      admitted = registered.status();
    }
  }
  if (!admitted.ok()) {
    Trace(node.id, ": watch refused: ", admitted.message());
    retry();
    return;
  }
  auto old = streams_.find(node.id);
  if (old != streams_.end() && old->second.instance != instance) {
    registry_->AgentDisconnected(node.id, old->second.instance);
  }
  streams_[node.id] = Stream{instance, incarnation, ++node.stream_epoch, 0, now_, false};
  node.connected = true;
  node.backoff = 250;
  Trace(node.id, ": watch connected");
  ControllerChanged();
}

void World::StreamBroken(const std::string& id, const std::string& /*instance*/, int incarnation) {
  Node& node = nodes_.at(id);
  if (!node.agent || node.agent->incarnation != incarnation) return;
  node.connected = false;
  ++node.stream_epoch;
  Node* n = &node;
  After(node.backoff, [this, n, incarnation] { Connect(*n, incarnation); });
}

void World::Deliver(Node& node, int incarnation, uint64_t epoch, const DesiredState& desired) {
  // A stream the agent gave up is not read any more.
  if (!node.agent || node.agent->incarnation != incarnation || epoch != node.stream_epoch) return;
  if (node.hung) {
    node.buffered.push_back(desired);
    return;
  }
  absl::StatusOr<bool> changed = node.agent->store->Offer(desired);
  node.persisted = node.agent->store->Current();
  oracle_.OnDelivered(node.id, desired.generation);
  Trace(node.id, ": desired generation ", desired.generation, " ", RoleWord(desired.role),
        desired.fenced ? " fenced" : "", desired.queued ? " queued" : "",
        desired.superseded ? " superseded" : "",
        changed.ok() && *changed ? "" : " (nothing new)");
  if (changed.ok() && *changed) {
    SchedulePass(node, now_ + 1);
    // A report at once, as the agent does: its answer is the controller's
    // word on the new target.
    node.report_due = true;
    SendReport(node, incarnation);
  }
}

void World::SendReport(Node& node, int incarnation) {
  if (!node.agent || node.agent->incarnation != incarnation || node.hung || node.in_flight) return;
  if (!node.observed) return;
  const ObservedState observed = *node.observed;
  std::vector<StepEvent> events = std::move(node.events);
  node.events.clear();
  node.report_due = false;
  node.in_flight = true;
  node.last_sent = now_;
  const auto asked_at = node.agent->clock->Now();
  const std::string id = node.id;
  const std::string instance = node.agent->instance;
  Node* n = &node;
  // The call gives up after its deadline; the events go again.
  auto done = std::make_shared<bool>(false);
  auto finish = [this, n, incarnation, events, done, asked_at](bool ok, uint64_t upstream_bytes,
                                                               uint64_t generation) {
    if (*done) return;
    *done = true;
    if (!n->agent || n->agent->incarnation != incarnation) return;
    n->in_flight = false;
    // The response carries the upstream's data size (for a bootstrap), and
    // is word from the controller (a hung agent reads it when it resumes).
    if (ok && n->agent->store->NoteAnswer(generation, asked_at) && !n->hung) {
      SchedulePass(*n, now_ + 1);
    }
    if (upstream_bytes != 0) n->agent->store->SetUpstreamDataBytes(upstream_bytes);
    if (!ok) {
      n->events.insert(n->events.begin(), events.begin(), events.end());
      n->report_due = true;
      After(1000, [this, n, incarnation] { SendReport(*n, incarnation); });
    } else if (n->report_due) {
      SendReport(*n, incarnation);
    }
  };
  After(kReportDeadline, [finish] { finish(false, 0, 0); });
  if (Lost(true)) {
    Trace("net: report of ", id, " lost");
    return;
  }
  After(NetDelay(), [this, id, instance, observed, events, finish] {
    if (!registry_) return;  // the deadline will say so
    const absl::Status st = registry_->Report(id, instance, observed, events);
    if (!st.ok()) Trace("controller: report of ", id, " refused: ", st.message());
    absl::StatusOr<DesiredState> desired = registry_->Desired(id);
    const uint64_t bytes = st.ok() && desired.ok() ? desired->upstream_data_bytes : 0;
    const uint64_t generation = desired.ok() ? desired->generation : 0;
    ControllerChanged();
    After(NetDelay(), [finish, ok = st.ok(), bytes, generation] { finish(ok, bytes, generation); });
  });
}

void World::Heartbeat(Node& node) {
  if (!node.agent) return;
  const int incarnation = node.agent->incarnation;
  if (!node.hung && !node.in_flight && now_ - node.last_sent >= kHeartbeat) {
    node.report_due = true;
    SendReport(node, incarnation);
  }
  Node* n = &node;
  After(kHeartbeat, [this, n, incarnation] {
    if (n->agent && n->agent->incarnation == incarnation) Heartbeat(*n);
  });
}

void World::Unhang(Node& node) {
  if (!node.agent || !node.hung) return;
  node.hung = false;
  Trace(node.id, ": agent resumes");
  const int incarnation = node.agent->incarnation;
  std::vector<DesiredState> buffered = std::move(node.buffered);
  node.buffered.clear();
  for (const DesiredState& d : buffered) Deliver(node, incarnation, node.stream_epoch, d);
  if (!node.connected) Connect(node, incarnation);
  SchedulePass(node, now_ + 1);
  if (node.report_due) SendReport(node, incarnation);
}

}  // namespace tandem::sim

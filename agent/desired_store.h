// The agent's copy of its desired state, persisted in the state dir so that
// a restarted agent without a controller holds its role and changes nothing.
//
// Offer() applies the rules of DESIGN.md "Safety rules": a desired state is
// acted on only if it comes from this cluster's controller (cluster id) and
// is not older than the one held; otherwise the agent holds its role and
// says why (HoldReason(), reported to the controller) until the operator
// adopts the node (DesiredState::adopt) or the controller catches up.
// Thread-safe.
#ifndef TANDEM_AGENT_DESIRED_STORE_H_
#define TANDEM_AGENT_DESIRED_STORE_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/types.h"

namespace tandem {

// What an agent makes of a desired state `offered` by the controller while
// it holds `held` (pure):
//   - nothing held yet, or the operator adopted the node (offered.adopt,
//     not older than held within one cluster): take it;
//   - from another cluster id than held's: hold ("" cluster ids, from a
//     controller or a state that has none, match any);
//   - older than held, or of held's generation with another target: hold;
//   - otherwise: take it (a no-op when it is the held one again).
struct OfferVerdict {
  bool take = false;
  std::string hold_reason;  // set when not taken
};
OfferVerdict JudgeOffer(const DesiredState& held, const DesiredState& offered);

class DesiredStateStore {
 public:
  // `path` is the file (e.g. <state_dir>/desired.pb); "" keeps it in memory.
  explicit DesiredStateStore(std::string path);

  // Reads the persisted state. OK (and generation 0) when there is none;
  // DataLoss for an unreadable file.
  absl::Status Load();

  // Like Load(), from a copy of what was persisted (an agent restarted in
  // the simulation): held, not confirmed, no hold.
  void LoadFrom(const DesiredState& persisted);

  // Takes `desired` (from the controller) when JudgeOffer says so, and
  // holds otherwise. Returns true when the target changed, when the hold
  // started, changed or ended, or when the confirmation changed (the
  // controller's first word since Load(), or a target that became
  // superseded or no longer is): the caller wakes the loop. Persists before
  // returning; an error leaves the held state unchanged.
  absl::StatusOr<bool> Offer(const DesiredState& desired);

  // Whether the controller has confirmed the held state since the agent
  // started (an Offer not older than it, not superseded). A state only read
  // from disk is not: a master that comes back after a while may have been
  // replaced (promote --force) without knowing it; nor is one the controller
  // marks superseded: a newer decision revoked it.
  bool Confirmed() const;

  // Why the agent holds its role against the controller ("" when it does
  // not): the reason of the last offer that was not taken, until one is.
  std::string HoldReason() const;

  // The controller answered a report sent at `asked_at` (the agent's
  // steady clock), naming the node's current desired generation (0:
  // unknown). Returns true when that is the first such word on the held
  // generation (a pass may be waiting for it).
  bool NoteAnswer(uint64_t controller_generation, std::chrono::steady_clock::time_point asked_at);

  // When the controller last said `generation` is its current one for this
  // node: the time the report it answered was sent (nullopt: not since the
  // agent started, or its last answer named another generation). The
  // reconcile loop makes a master writable only while this is recent
  // (ReconcilerOptions::lease). A desired state read from the Watch stream
  // is no such word: it may have waited there while the agent hung, and
  // been revoked since.
  std::optional<std::chrono::steady_clock::time_point> WordOn(uint64_t generation) const;

  // The informational upstream size (not persisted, no generation change).
  void SetUpstreamDataBytes(uint64_t bytes);

  // The held state; with `confirmed`, also whether it was Confirmed() at
  // that same instant.
  DesiredState Current(bool* confirmed = nullptr) const;

 private:
  const std::string path_;
  mutable absl::Mutex mu_;
  DesiredState current_ ABSL_GUARDED_BY(mu_);
  bool confirmed_ ABSL_GUARDED_BY(mu_) = false;
  std::string hold_reason_ ABSL_GUARDED_BY(mu_);
  // The last answer to a report: the generation it named, and when the
  // report was sent.
  uint64_t word_generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<std::chrono::steady_clock::time_point> word_at_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem

#endif  // TANDEM_AGENT_DESIRED_STORE_H_

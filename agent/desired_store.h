// The agent's copy of its desired state, persisted in the state dir so that
// a restarted agent without a controller holds its role and changes nothing.
//
// Offer() applies the generation rule: a desired state older than the one
// held is ignored. Thread-safe.
#ifndef TANDEM_AGENT_DESIRED_STORE_H_
#define TANDEM_AGENT_DESIRED_STORE_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/types.h"

namespace tandem {

class DesiredStateStore {
 public:
  // `path` is the file (e.g. <state_dir>/desired.pb); "" keeps it in memory.
  explicit DesiredStateStore(std::string path);

  // Reads the persisted state. OK (and generation 0) when there is none;
  // DataLoss for an unreadable file.
  absl::Status Load();

  // Takes `desired` (from the controller) if its generation is not older
  // than the one held. Returns true when the target changed, or when the
  // confirmation changed (the controller's first word since Load(), or a
  // target that became superseded or no longer is): the caller wakes the
  // loop. Persists before returning; an error leaves the held state
  // unchanged.
  absl::StatusOr<bool> Offer(const DesiredState& desired);

  // Whether the controller has confirmed the held state since the agent
  // started (an Offer not older than it, not superseded). A state only read
  // from disk is not: a master that comes back after a while may have been
  // replaced (promote --force) without knowing it; nor is one the controller
  // marks superseded: a newer decision revoked it.
  bool Confirmed() const;

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
};

}  // namespace tandem

#endif  // TANDEM_AGENT_DESIRED_STORE_H_

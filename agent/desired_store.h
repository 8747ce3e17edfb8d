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

  // Takes `desired` if its generation is not older than the one held.
  // Returns true when the target changed (the caller wakes the loop).
  // Persists before returning; an error leaves the held state unchanged.
  absl::StatusOr<bool> Offer(const DesiredState& desired);

  // The informational upstream size (not persisted, no generation change).
  void SetUpstreamDataBytes(uint64_t bytes);

  DesiredState Current() const;

 private:
  const std::string path_;
  mutable absl::Mutex mu_;
  DesiredState current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem

#endif  // TANDEM_AGENT_DESIRED_STORE_H_

#include "agent/desired_store.h"

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "proto/convert.h"

namespace tandem {

DesiredStateStore::DesiredStateStore(std::string path) : path_(std::move(path)) {}

absl::Status DesiredStateStore::Load() {
  if (path_.empty()) return absl::OkStatus();
  absl::StatusOr<std::string> bytes = ReadFile(path_);
  if (absl::IsNotFound(bytes.status())) return absl::OkStatus();
  if (!bytes.ok()) return bytes.status();
  v1::DesiredState message;
  if (!message.ParseFromString(*bytes)) {
    return absl::DataLossError(absl::StrCat(path_, ": unreadable desired state; move it aside "
                                                   "to start from the controller's"));
  }
  absl::MutexLock lock(&mu_);
  current_ = FromProto(message);
  return absl::OkStatus();
}

absl::StatusOr<bool> DesiredStateStore::Offer(const DesiredState& desired) {
  absl::MutexLock lock(&mu_);
  if (desired.generation < current_.generation) return false;
  const bool changed =
      desired.generation != current_.generation || !desired.SameTarget(current_);
  current_.upstream_data_bytes = desired.upstream_data_bytes;
  // A superseded target (a newer decision waits in the controller's queue)
  // confirms nothing, however often it is sent again.
  const bool confirms = !desired.superseded;
  if (!changed) {
    const bool news = confirmed_ != confirms || current_.superseded != desired.superseded;
    confirmed_ = confirms;
    current_.superseded = desired.superseded;
    return news;
  }
  if (!path_.empty()) {
    v1::DesiredState message;
    ToProto(desired, &message);
    if (absl::Status st = WriteFileAtomic(path_, message.SerializeAsString(), 0600); !st.ok()) {
      return st;
    }
  }
  current_ = desired;
  confirmed_ = confirms;
  return true;
}

bool DesiredStateStore::Confirmed() const {
  absl::MutexLock lock(&mu_);
  return confirmed_;
}

void DesiredStateStore::SetUpstreamDataBytes(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  current_.upstream_data_bytes = bytes;
}

DesiredState DesiredStateStore::Current(bool* confirmed) const {
  absl::MutexLock lock(&mu_);
  if (confirmed != nullptr) *confirmed = confirmed_;
  return current_;
}

}  // namespace tandem

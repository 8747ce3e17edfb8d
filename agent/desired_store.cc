#include "agent/desired_store.h"

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "proto/convert.h"

namespace tandem {

OfferVerdict JudgeOffer(const DesiredState& held, const DesiredState& offered) {
  constexpr char kAdopt[] = "; holding the current role until `tandemctl adopt` of this node";
  const bool nothing_held = held.generation == 0 && held.cluster_id.empty();
  const bool other_cluster = !held.cluster_id.empty() && !offered.cluster_id.empty() &&
                             held.cluster_id != offered.cluster_id;
  if (nothing_held) return {true, ""};
  if (offered.adopt && (other_cluster || offered.generation >= held.generation)) {
    return {true, ""};
  }
  if (other_cluster) {
    return {false, absl::StrCat("the controller's desired state comes from cluster ",
                                offered.cluster_id, ", the one held (generation ",
                                held.generation, ") from cluster ", held.cluster_id,
                                ": the controller's data dir was lost or replaced?", kAdopt)};
  }
  if (offered.generation < held.generation) {
    return {false, absl::StrCat("the controller sent generation ", offered.generation,
                                ", older than the held generation ", held.generation,
                                ": its state went back (restored from an older backup?)",
                                kAdopt)};
  }
  if (offered.generation == held.generation && !offered.SameTarget(held)) {
    return {false, absl::StrCat("the controller sent generation ", offered.generation,
                                " with another target than the one held at that generation: "
                                "its state diverged (restored from another backup?)",
                                kAdopt)};
  }
  return {true, ""};
}

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
  const OfferVerdict verdict = JudgeOffer(current_, desired);
  if (!verdict.take) {
    const bool news = hold_reason_ != verdict.hold_reason || confirmed_;
    hold_reason_ = verdict.hold_reason;
    confirmed_ = false;
    return news;
  }
  const bool held_before = !hold_reason_.empty();
  hold_reason_.clear();
  // The cluster id is kept with the state: a state from another cluster is
  // then recognised.
  const bool changed = desired.generation != current_.generation ||
                       !desired.SameTarget(current_) || desired.cluster_id != current_.cluster_id;
  current_.upstream_data_bytes = desired.upstream_data_bytes;
  // A superseded target (a newer decision waits in the controller's queue)
  // confirms nothing, however often it is sent again.
  const bool confirms = !desired.superseded;
  if (!changed) {
    const bool news = held_before || confirmed_ != confirms ||
                      current_.superseded != desired.superseded;
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

void DesiredStateStore::LoadFrom(const DesiredState& persisted) {
  absl::MutexLock lock(&mu_);
  current_ = persisted;
  current_.superseded = false;
  confirmed_ = false;
  hold_reason_.clear();
  word_at_.reset();
}

bool DesiredStateStore::NoteAnswer(uint64_t controller_generation,
                                   std::chrono::steady_clock::time_point asked_at) {
  absl::MutexLock lock(&mu_);
  // Answers may come back out of order: the one asked last tells most.
  if (word_at_.has_value() && asked_at < *word_at_) return false;
  const bool news = controller_generation == current_.generation &&
                    (word_generation_ != controller_generation || !word_at_.has_value());
  word_generation_ = controller_generation;
  word_at_ = asked_at;
  return news;
}

std::optional<std::chrono::steady_clock::time_point> DesiredStateStore::WordOn(
    uint64_t generation) const {
  absl::MutexLock lock(&mu_);
  if (generation == 0 || word_generation_ != generation) return std::nullopt;
  return word_at_;
}

std::string DesiredStateStore::HoldReason() const {
  absl::MutexLock lock(&mu_);
  return hold_reason_;
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

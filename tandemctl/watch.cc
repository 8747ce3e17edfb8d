#include "tandemctl/watch.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tandemctl/args.h"
#include "tandemctl/format.h"

namespace tandem::cli {

void ProgressRate::Add(std::chrono::steady_clock::time_point at, uint64_t done_bytes,
                       uint64_t total_bytes) {
  if (!samples_.empty() &&
      (samples_.back().total != total_bytes || samples_.back().done > done_bytes)) {
    samples_.clear();  // another bootstrap
  }
  samples_.push_back(Sample{at, done_bytes, total_bytes});
  while (samples_.size() > 2 && at - samples_.front().at > window_) samples_.pop_front();
}

std::optional<double> ProgressRate::BytesPerSecond() const {
  if (samples_.size() < 2) return std::nullopt;
  const Sample& first = samples_.front();
  const Sample& last = samples_.back();
  const double seconds = std::chrono::duration<double>(last.at - first.at).count();
  if (seconds < 0.2) return std::nullopt;
  return static_cast<double>(last.done - first.done) / seconds;
}

std::optional<std::chrono::seconds> ProgressRate::Eta() const {
  std::optional<double> rate = BytesPerSecond();
  if (!rate || *rate <= 0 || samples_.empty()) return std::nullopt;
  const Sample& last = samples_.back();
  if (last.total == 0 || last.done >= last.total) return std::nullopt;
  return std::chrono::seconds(
      static_cast<int64_t>(static_cast<double>(last.total - last.done) / *rate + 0.5));
}

std::string ProgressLine(uint64_t done_bytes, uint64_t total_bytes, const ProgressRate& rate) {
  if (total_bytes == 0) return "";
  const int percent = static_cast<int>(std::min(done_bytes, total_bytes) * 100 / total_bytes);
  std::string line =
      absl::StrCat(HumanBytes(done_bytes), " of ", HumanBytes(total_bytes), " (", percent, "%)");
  std::optional<double> per_second = rate.BytesPerSecond();
  if (!per_second) return absl::StrCat(line, ", measuring...");
  absl::StrAppend(&line, ", ", HumanBytes(static_cast<uint64_t>(*per_second)), "/s");
  if (std::optional<std::chrono::seconds> eta = rate.Eta()) {
    absl::StrAppend(&line, ", ETA ", CompactSeconds(static_cast<double>(eta->count())));
  } else if (done_bytes < total_bytes) {
    absl::StrAppend(&line, ", ETA unknown");
  }
  return line;
}

std::string WatchFrame(const v1::NodeStatus& node, const ProgressRate& rate,
                       std::chrono::milliseconds interval, const std::string& error) {
  std::string frame = absl::StrCat("tandemctl status ", node.info().id(), " --watch: every ",
                                   FormatDuration(interval), ", Ctrl-C to stop\n");
  if (!error.empty()) absl::StrAppend(&frame, "(refresh failed: ", OneLine(error, 100), ")\n");
  frame += "\n";
  frame += StatusText(node);
  const v1::Progress& bootstrap = node.observed().bootstrap();
  const std::string progress = ProgressLine(bootstrap.done_bytes(), bootstrap.total_bytes(), rate);
  if (!progress.empty()) absl::StrAppend(&frame, "\nbootstrap progress: ", progress, "\n");
  return frame;
}

std::string RedrawPrefix(int lines) {
  if (lines <= 0) return "";
  // Up `lines` lines to the first column, then clear to the end of screen.
  return absl::StrFormat("\033[%dF\033[J", lines);
}

}  // namespace tandem::cli

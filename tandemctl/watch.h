// `tandemctl status NODE --watch`: the status view refreshed in place, with
// the bootstrap's rate and ETA computed from successive reports.
//
// Pure (no I/O, no clock: times come in), so it is unit-tested without a
// process. main.cc polls the controller and draws the frames.
#ifndef TANDEM_TANDEMCTL_WATCH_H_
#define TANDEM_TANDEMCTL_WATCH_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "tandem.pb.h"

namespace tandem::cli {

// The bootstrap rate over the last `window` of samples. A sample whose
// total differs from the previous one, or whose done count went back,
// starts over (a new bootstrap).
class ProgressRate {
 public:
  explicit ProgressRate(std::chrono::milliseconds window = std::chrono::seconds(10))
      : window_(window) {}

  void Add(std::chrono::steady_clock::time_point at, uint64_t done_bytes, uint64_t total_bytes);

  // Bytes per second; nullopt until two samples at least 200 ms apart.
  std::optional<double> BytesPerSecond() const;
  // Time left at the current rate; nullopt when the rate or total is
  // unknown or nothing moves.
  std::optional<std::chrono::seconds> Eta() const;

 private:
  struct Sample {
    std::chrono::steady_clock::time_point at;
    uint64_t done;
    uint64_t total;
  };
  std::chrono::milliseconds window_;
  std::deque<Sample> samples_;
};

// "1.2 GiB of 3.4 GiB (35%), 80.0 MiB/s, ETA 28s"; the rate and ETA parts
// read "measuring..." until known. "" when no bootstrap runs (total 0).
std::string ProgressLine(uint64_t done_bytes, uint64_t total_bytes, const ProgressRate& rate);

// One frame: a title line ("every 1s, Ctrl-C to stop"), the status view
// (format.h StatusText), and the progress line when a bootstrap runs.
// `error`, when not empty, says why this refresh failed (the last view is
// shown again).
std::string WatchFrame(const v1::NodeStatus& node, const ProgressRate& rate,
                       std::chrono::milliseconds interval, const std::string& error = "");

// The escape sequence that moves the cursor up over a frame of
// `lines` lines and clears to the end of the screen ("" for 0 lines).
std::string RedrawPrefix(int lines);

}  // namespace tandem::cli

#endif  // TANDEM_TANDEMCTL_WATCH_H_

#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tandem {

namespace {
std::atomic<bool> quiet{false};
}  // namespace

void SetLogQuiet(bool value) { quiet.store(value); }

void Log(LogLevel level, std::string_view message) {
  if (quiet.load(std::memory_order_relaxed)) return;
  static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
  std::string line;
  if (journal) {
    line = absl::StrCat("<", static_cast<int>(level), ">");
  } else {
    const char* name = level == LogLevel::kError     ? "ERROR"
                       : level == LogLevel::kWarning ? "WARN"
                       : level == LogLevel::kDebug   ? "DEBUG"
                                                     : "INFO";
    line = absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
                        " ", name, " ");
  }
  line.append(message.data(), message.size());
  line.push_back('\n');
  // A single write keeps lines from different threads whole.
  ssize_t ignored = ::write(2, line.data(), line.size());
  (void)ignored;
}

}  // namespace tandem

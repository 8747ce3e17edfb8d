// Small helpers shared by every module that works with absl::Status.
#ifndef TANDEM_COMMON_STATUS_UTIL_H_
#define TANDEM_COMMON_STATUS_UTIL_H_

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define TANDEM_RETURN_IF_ERROR(expr)          \
  do {                                        \
    if (absl::Status _st = (expr); !_st.ok()) \
      return _st;                             \
  } while (0)

namespace tandem {

// Debian's Abseil has its own string_view (no std alias): the bridge.
inline absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// `st` with "while <what>: " in front of its message, same code. OK stays OK.
absl::Status Context(std::string_view what, const absl::Status& st);

// Calls `cond` until it returns true or `timeout` passes, sleeping `every`
// in between; returns the last result.
bool PollFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
             std::chrono::milliseconds every = std::chrono::milliseconds(50));

// `s` without leading and trailing spaces, tabs and line ends.
std::string Trimmed(std::string_view s);

}  // namespace tandem

#endif  // TANDEM_COMMON_STATUS_UTIL_H_

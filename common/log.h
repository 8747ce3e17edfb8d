// One-line logging to stderr. Under systemd (JOURNAL_STREAM set) each line
// carries a <N> syslog priority prefix that journald reads; otherwise a UTC
// timestamp and the level. Log only at loop and RPC boundaries; never a
// secret. Thread-safe (one write per line).
#ifndef TANDEM_COMMON_LOG_H_
#define TANDEM_COMMON_LOG_H_

#include <string_view>

namespace tandem {

enum class LogLevel { kDebug = 7, kInfo = 6, kWarning = 4, kError = 3 };

void Log(LogLevel level, std::string_view message);

// Quiet: every message is dropped from now on (default: none). For programs
// that run the agent's code many times over (the simulation).
void SetLogQuiet(bool quiet);

inline void LogInfo(std::string_view message) { Log(LogLevel::kInfo, message); }
inline void LogWarning(std::string_view message) { Log(LogLevel::kWarning, message); }
inline void LogError(std::string_view message) { Log(LogLevel::kError, message); }

}  // namespace tandem

#endif  // TANDEM_COMMON_LOG_H_

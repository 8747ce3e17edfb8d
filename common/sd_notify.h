// systemd's service notification protocol (sd_notify(3),
// sd_watchdog_enabled(3)) without libsystemd: one datagram of
// newline-separated VAR=value assignments to the unix socket named by
// $NOTIFY_SOCKET ('@' first: an abstract socket). Under Type=notify,
// READY=1 ends the start-up, STATUS= is what `systemctl status` shows,
// WATCHDOG=1 resets the watchdog timer (WatchdogSec=), STOPPING=1 tells
// that a shutdown began. Without $NOTIFY_SOCKET every call is a no-op.
#ifndef TANDEM_COMMON_SD_NOTIFY_H_
#define TANDEM_COMMON_SD_NOTIFY_H_

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace tandem {

// Sends `state` to $NOTIFY_SOCKET; OK (nothing sent) when it is unset.
// Thread-safe.
absl::Status SdNotify(std::string_view state);

// Sends `state` to the socket `socket_path`. InvalidArgument for an empty
// or too long path; Unavailable when the datagram cannot be sent (no such
// socket, nobody listening), naming the socket.
absl::Status SdNotifyTo(std::string_view socket_path, std::string_view state);

// The watchdog interval systemd expects pings within: $WATCHDOG_USEC, when
// $WATCHDOG_PID is unset or names this process. nullopt: no watchdog.
std::optional<std::chrono::microseconds> SdWatchdogInterval();

// Keeps systemd informed from a thread of its own. Start() sends READY=1
// with the first STATUS=; then, every period, STATUS=<status()> and, when
// the watchdog is on and alive() says so, WATCHDOG=1. The period is half
// the watchdog interval, at most `status_period`. Stop() sends STOPPING=1
// and joins the thread. Without $NOTIFY_SOCKET no thread is started.
//
// `status` and `alive` (null: always alive) are called on the notifier's
// thread. Together they are the liveness probe: `status` should take the
// locks a deadlock would hold (e.g. read the reconcile loop's state), and
// `alive` should say whether the work still moves, so that a hung process
// stops pinging and systemd restarts it.
//
// Thread-safety: Start/Stop from one thread; Stopping() from any.
class SdNotifier {
 public:
  explicit SdNotifier(std::function<std::string()> status, std::function<bool()> alive = nullptr,
                      std::chrono::milliseconds status_period = std::chrono::seconds(5));
  ~SdNotifier();
  SdNotifier(const SdNotifier&) = delete;
  SdNotifier& operator=(const SdNotifier&) = delete;

  void Start();
  // Tells systemd a shutdown began (STOPPING=1 with `status`); the pings go
  // on until Stop().
  void Stopping(const std::string& status);
  void Stop();

 private:
  void Loop(std::chrono::milliseconds period, bool watchdog);

  const std::function<std::string()> status_;
  const std::function<bool()> alive_;
  const std::chrono::milliseconds status_period_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace tandem

#endif  // TANDEM_COMMON_SD_NOTIFY_H_

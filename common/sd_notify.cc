#include "common/sd_notify.h"

#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace tandem {
namespace {

// A STATUS= value on one line (a newline would start a new assignment).
std::string OneLine(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

}  // namespace

absl::Status SdNotifyTo(std::string_view socket_path, std::string_view state) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("NOTIFY_SOCKET \"", std::string(socket_path), "\" is empty or too long"));
  }
  std::memcpy(address.sun_path, socket_path.data(), socket_path.size());
  if (address.sun_path[0] == '@') address.sun_path[0] = '\0';  // abstract namespace
  const socklen_t length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_path.size());
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  const ssize_t sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                                reinterpret_cast<const sockaddr*>(&address), length);
  const int error = errno;
  ::close(fd);
  if (sent < 0 || static_cast<size_t>(sent) != state.size()) {
    return absl::UnavailableError(absl::StrCat("notifying systemd at ", std::string(socket_path),
                                               ": ", std::strerror(error)));
  }
  return absl::OkStatus();
}

absl::Status SdNotify(std::string_view state) {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  if (socket == nullptr || socket[0] == '\0') return absl::OkStatus();
  return SdNotifyTo(socket, state);
}

std::optional<std::chrono::microseconds> SdWatchdogInterval() {
  const char* usec = std::getenv("WATCHDOG_USEC");
  uint64_t value = 0;
  if (usec == nullptr || !absl::SimpleAtoi(usec, &value) || value == 0) return std::nullopt;
  if (const char* pid = std::getenv("WATCHDOG_PID"); pid != nullptr && pid[0] != '\0') {
    int64_t owner = 0;
    if (!absl::SimpleAtoi(pid, &owner) || owner != ::getpid()) return std::nullopt;
  }
  return std::chrono::microseconds(value);
}

SdNotifier::SdNotifier(std::function<std::string()> status, std::function<bool()> alive,
                       std::chrono::milliseconds status_period)
    : status_(std::move(status)), alive_(std::move(alive)), status_period_(status_period) {}

SdNotifier::~SdNotifier() { Stop(); }

void SdNotifier::Start() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  if (socket == nullptr || socket[0] == '\0' || thread_.joinable()) return;
  std::chrono::milliseconds period = status_period_;
  const std::optional<std::chrono::microseconds> watchdog = SdWatchdogInterval();
  if (watchdog) {
    period = std::min(period, std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog / 2));
    period = std::max(period, std::chrono::milliseconds(1));
  }
  // Errors are not fatal: a service that cannot reach systemd still works
  // (systemd then times the start out and says why).
  (void)SdNotify(
      absl::StrCat("READY=1\nSTATUS=", OneLine(status_()), watchdog ? "\nWATCHDOG=1" : ""));
  thread_ = std::thread([this, period, on = watchdog.has_value()] { Loop(period, on); });
}

void SdNotifier::Stopping(const std::string& status) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  (void)SdNotify(absl::StrCat("STOPPING=1\nSTATUS=", OneLine(status)));
}

void SdNotifier::Stop() {
  if (!thread_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
  Stopping("stopping");
}

void SdNotifier::Loop(std::chrono::milliseconds period, bool watchdog) {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), absl::FromChrono(period))) return;
    }
    std::string message = absl::StrCat("STATUS=", OneLine(status_()));
    if (watchdog && (!alive_ || alive_())) message += "\nWATCHDOG=1";
    (void)SdNotify(message);
  }
}

}  // namespace tandem

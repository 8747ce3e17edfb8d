// The clock the agent waits with: real in production, fake in tests.
#ifndef TANDEM_AGENT_CLOCK_H_
#define TANDEM_AGENT_CLOCK_H_

#include <chrono>
#include <thread>

namespace tandem {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point Now() = 0;
  virtual void SleepFor(std::chrono::milliseconds duration) = 0;
};

class RealClock : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() override { return std::chrono::steady_clock::now(); }
  void SleepFor(std::chrono::milliseconds duration) override {
    std::this_thread::sleep_for(duration);
  }
};

}  // namespace tandem

#endif  // TANDEM_AGENT_CLOCK_H_

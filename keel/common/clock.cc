// RealClock and ManualClock.
#include "keel/common/clock.h"

#include <thread>

namespace keel {

Clock* Clock::Real() {
  static RealClock* clock = new RealClock();  // never destroyed: usable during exit
  return clock;
}

TimePoint RealClock::Now() const {
  return std::chrono::time_point_cast<Duration>(std::chrono::steady_clock::now());
}

int64_t RealClock::WallNowNanos() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void RealClock::SleepUntil(TimePoint deadline) { std::this_thread::sleep_until(deadline); }

ManualClock::ManualClock(TimePoint start, int64_t wall_start_nanos)
    : now_(start), wall_nanos_(wall_start_nanos) {}

TimePoint ManualClock::Now() const {
  MutexLock lock(&mu_);
  return now_;
}

int64_t ManualClock::WallNowNanos() const {
  MutexLock lock(&mu_);
  return wall_nanos_;
}

void ManualClock::SleepUntil(TimePoint deadline) {
  MutexLock lock(&mu_);
  ++sleepers_;
  while (now_ < deadline) cv_.Wait(&mu_);
  --sleepers_;
}

void ManualClock::Advance(Duration d) {
  if (d <= Duration::zero()) return;
  {
    MutexLock lock(&mu_);
    now_ += d;
    wall_nanos_ += d.count();
  }
  cv_.SignalAll();
}

int ManualClock::sleepers() const {
  MutexLock lock(&mu_);
  return sleepers_;
}

}  // namespace keel

// Clock: the time seam. Code that waits, times out or stamps events takes a Clock*, so tests
// can drive time by hand with ManualClock instead of sleeping.
//
//   RealClock: steady (monotonic) time for Now(), the system clock for WallNow().
//   ManualClock: time moves only when Advance() or Set() is called; SleepFor/SleepUntil block
//   until then. Both are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

#include "keel/common/mutex.h"

namespace keel {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time, for deadlines and intervals.
  virtual TimePoint Now() const = 0;
  // Wall-clock time in nanoseconds since the Unix epoch, for timestamps shown to people.
  virtual int64_t WallNowNanos() const = 0;
  virtual void SleepUntil(TimePoint deadline) = 0;
  void SleepFor(Duration d) { SleepUntil(Now() + d); }

  // The process-wide RealClock.
  static Clock* Real();
};

class RealClock final : public Clock {
 public:
  TimePoint Now() const override;
  int64_t WallNowNanos() const override;
  void SleepUntil(TimePoint deadline) override;
};

class ManualClock final : public Clock {
 public:
  // Starts at `start` (monotonic) and `wall_start_nanos` (wall clock).
  explicit ManualClock(TimePoint start = TimePoint(std::chrono::seconds(1)),
                       int64_t wall_start_nanos = 1'700'000'000'000'000'000);

  TimePoint Now() const override;
  int64_t WallNowNanos() const override;
  // Blocks until another thread advances time to `deadline` or past it.
  void SleepUntil(TimePoint deadline) override;

  // Moves time forward by `d` (negative durations are ignored) and wakes sleepers.
  void Advance(Duration d);
  // Number of threads blocked in SleepUntil right now (lets tests wait for a sleeper).
  int sleepers() const;

 private:
  mutable Mutex mu_;
  CondVar cv_;
  TimePoint now_ KEEL_GUARDED_BY(mu_);
  int64_t wall_nanos_ KEEL_GUARDED_BY(mu_);
  int sleepers_ KEEL_GUARDED_BY(mu_) = 0;
};

}  // namespace keel

#include "keel/common/clock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace keel {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(RealClockTest, NowIsMonotonicAndSleepForWaitsAtLeastTheDuration) {
  Clock* clock = Clock::Real();
  TimePoint a = clock->Now();
  clock->SleepFor(milliseconds(20));
  TimePoint b = clock->Now();
  EXPECT_GE(b - a, milliseconds(20));
  // Wall clock is in nanoseconds since the epoch: later than 2020-01-01.
  EXPECT_GT(clock->WallNowNanos(), int64_t{1'577'836'800} * 1'000'000'000);
}

TEST(ManualClockTest, TimeMovesOnlyWhenAdvanced) {
  ManualClock clock;
  TimePoint t0 = clock.Now();
  int64_t w0 = clock.WallNowNanos();
  std::this_thread::sleep_for(milliseconds(5));
  EXPECT_EQ(clock.Now(), t0);
  clock.Advance(seconds(3));
  EXPECT_EQ(clock.Now() - t0, seconds(3));
  EXPECT_EQ(clock.WallNowNanos() - w0, 3'000'000'000);
  clock.Advance(-seconds(1));  // ignored: time never goes back
  EXPECT_EQ(clock.Now() - t0, seconds(3));
}

TEST(ManualClockTest, SleeperWakesOnlyOnceDeadlineIsReached) {
  ManualClock clock;
  std::atomic<bool> woke{false};
  std::thread sleeper([&] {
    clock.SleepFor(seconds(10));
    woke = true;
  });
  while (clock.sleepers() == 0) std::this_thread::yield();
  clock.Advance(seconds(9));
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_FALSE(woke.load());
  EXPECT_EQ(clock.sleepers(), 1);
  clock.Advance(seconds(1));
  sleeper.join();
  EXPECT_TRUE(woke.load());
  EXPECT_EQ(clock.sleepers(), 0);
}

}  // namespace
}  // namespace keel

#include "keel/common/mutex.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace keel {
namespace {

class Counter {
 public:
  void Add(int n) {
    MutexLock lock(&mu_);
    // Read-modify-write in two steps with a yield between: without the lock, increments from
    // other threads would be lost and the total would come up short.
    int v = total_;
    std::this_thread::yield();
    total_ = v + n;
  }
  int total() {
    MutexLock lock(&mu_);
    return total_;
  }

 private:
  Mutex mu_;
  int total_ KEEL_GUARDED_BY(mu_) = 0;
};

TEST(MutexTest, MutexLockSerialisesReadModifyWrite) {
  Counter c;
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&c] {
      for (int i = 0; i < 2000; ++i) c.Add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.total(), 8000);
}

TEST(MutexTest, TryLockFailsWhileHeld) {
  Mutex mu;
  mu.Lock();
  bool acquired = true;
  std::thread([&] {
    if (mu.TryLock()) {
      acquired = true;
      mu.Unlock();
    } else {
      acquired = false;
    }
  }).join();
  EXPECT_FALSE(acquired);
  mu.Unlock();
  bool reacquired = false;
  if (mu.TryLock()) {
    reacquired = true;
    mu.Unlock();
  }
  EXPECT_TRUE(reacquired);
}

TEST(CondVarTest, SignalWakesWaiterWithPredicateTrue) {
  Mutex mu;
  CondVar cv;
  bool ready = false;
  bool seen = false;
  std::thread waiter([&] {
    MutexLock lock(&mu);
    cv.Wait(&mu, [&]() KEEL_NO_THREAD_SAFETY_ANALYSIS { return ready; });
    seen = ready;
  });
  {
    MutexLock lock(&mu);
    ready = true;
  }
  cv.SignalAll();
  waiter.join();
  EXPECT_TRUE(seen);
}

TEST(CondVarTest, WaitForTimesOutWhenPredicateStaysFalse) {
  Mutex mu;
  CondVar cv;
  MutexLock lock(&mu);
  auto start = std::chrono::steady_clock::now();
  bool result = cv.WaitFor(&mu, std::chrono::milliseconds(30), [] { return false; });
  EXPECT_FALSE(result);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(30));
}

}  // namespace
}  // namespace keel

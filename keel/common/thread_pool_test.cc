#include "keel/common/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

namespace keel {
namespace {

TEST(ThreadPoolTest, RunsEveryTaskAndSubmitReturnsValues) {
  ThreadPool pool(3);
  EXPECT_EQ(pool.size(), 3);
  std::vector<std::future<int>> results;
  results.reserve(100);
  for (int i = 0; i < 100; ++i) results.push_back(pool.Submit([i] { return i * i; }));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(results[i].get(), i * i);
}

TEST(ThreadPoolTest, NeverRunsMoreTasksAtOnceThanThreads) {
  std::atomic<int> running{0};
  std::atomic<int> peak{0};
  {
    ThreadPool pool(2);
    for (int i = 0; i < 20; ++i) {
      pool.Schedule([&] {
        int now = ++running;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        --running;
      });
    }
  }
  EXPECT_EQ(peak.load(), 2);
}

TEST(ThreadPoolTest, DestructorRunsQueuedTasksBeforeJoining) {
  std::atomic<int> done{0};
  {
    ThreadPool pool(1);
    for (int i = 0; i < 50; ++i) {
      pool.Schedule([&] {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        ++done;
      });
    }
  }
  EXPECT_EQ(done.load(), 50);
}

TEST(ThreadPoolTest, SubmitCarriesExceptionsToTheFuture) {
  ThreadPool pool(1);
  auto f = pool.Submit([]() -> int { throw std::runtime_error("task failed"); });
  EXPECT_THROW(f.get(), std::runtime_error);
  EXPECT_EQ(pool.Submit([] { return 5; }).get(), 5);  // the worker survived
}

TEST(ThreadPoolTest, ParallelForCoversEachIndexExactlyOnce) {
  ThreadPool pool(3);
  for (int64_t n : {0, 1, 2, 7, 1000}) {
    std::vector<std::atomic<int>> hits(n);
    pool.ParallelFor(n, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) ++hits[i];
    });
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
  }
}

TEST(ThreadPoolTest, NestedParallelForDoesNotDeadlock) {
  ThreadPool pool(1);
  std::atomic<int64_t> sum{0};
  pool.Submit([&] {
        // The only worker is busy running this task: the inner loop must run on the caller.
        pool.ParallelFor(100, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) sum += i;
        });
      })
      .get();
  EXPECT_EQ(sum.load(), 4950);
}

TEST(ThreadPoolDeathTest, ZeroThreadsIsAProgrammerError) {
  EXPECT_DEATH(ThreadPool(0), "at least one thread");
}

}  // namespace
}  // namespace keel

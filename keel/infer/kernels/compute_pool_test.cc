// ComputePool: every index covered exactly once, back-to-back jobs of every size (the worker
// never runs a chunk of a job with another job's parameters), workers that went to sleep wake
// up, and the destructor joins while workers spin or sleep.
#include "keel/infer/kernels/compute_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace keel::infer {
namespace {

TEST(ComputePool, CoversEveryIndexOnceOverManyBackToBackJobs) {
  for (int workers : {0, 1, 3}) {
    ComputePool pool(workers);
    std::vector<std::atomic<int>> hits(1000);
    for (int job = 0; job < 20000; ++job) {
      const int64_t n = job % 97;  // 0..96, fewer and more indices than threads
      const int stamp = job + 1;
      pool.ParallelFor(n, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const int before = hits[i].exchange(stamp);
          EXPECT_NE(before, stamp) << "index " << i << " run twice in job " << job;
        }
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), stamp) << "job " << job;
    }
  }
}

TEST(ComputePool, SleepingWorkersWakeForTheNextJob) {
  ComputePool pool(2);
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // past the spin: they sleep
    std::atomic<int> threads_seen{0};
    std::atomic<int64_t> sum{0};
    pool.ParallelFor(3, [&](int64_t begin, int64_t end) {
      threads_seen.fetch_add(1);
      for (int64_t i = begin; i < end; ++i) sum += i + 1;
    });
    EXPECT_EQ(sum.load(), 6);
    EXPECT_EQ(threads_seen.load(), 3);  // three chunks of one index each
  }
}

TEST(ComputePool, DestroyedWhileWorkersSpinOrSleep) {
  for (int sleep_ms : {0, 20}) {
    ComputePool pool(3);
    pool.ParallelFor(10, [](int64_t, int64_t) {});
    std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  }
}

}  // namespace
}  // namespace keel::infer

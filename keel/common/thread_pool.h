// ThreadPool: a fixed number of worker threads and a FIFO task queue.
//
//   ThreadPool pool(4, "ckpt-copy");
//   std::future<int> f = pool.Submit([] { return 42; });
//   pool.ParallelFor(n, [&](int64_t begin, int64_t end) { ... });
//
// The destructor runs every task already queued, then joins the threads; no thread outlives
// the pool. Scheduling after destruction began is a programmer error. A task passed to
// Schedule must not throw (std::terminate); Submit carries exceptions through the future.
// Thread-safety: all methods are thread-safe; tasks may schedule more tasks.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "keel/common/mutex.h"

namespace keel {

class ThreadPool {
 public:
  // `num_threads` >= 1. `name` (up to 15 characters shown) names the threads for debuggers.
  explicit ThreadPool(int num_threads, const std::string& name = "keel-pool");
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void Schedule(std::function<void()> task) KEEL_EXCLUDES(mu_);

  template <typename F>
  auto Submit(F&& fn) -> std::future<std::invoke_result_t<std::decay_t<F>>> {
    using R = std::invoke_result_t<std::decay_t<F>>;
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(fn));
    std::future<R> result = task->get_future();
    Schedule([task] { (*task)(); });
    return result;
  }

  // Calls fn(begin, end) over disjoint ranges covering [0, n), on the pool and the calling
  // thread, and returns when all are done. Safe to call from inside a pool task (the caller
  // runs whatever chunks no worker has picked up, so it cannot deadlock). `fn` must not throw.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

  int size() const { return static_cast<int>(threads_.size()); }

 private:
  void WorkerLoop();

  Mutex mu_;
  CondVar cv_;
  std::deque<std::function<void()>> queue_ KEEL_GUARDED_BY(mu_);
  bool stopping_ KEEL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace keel

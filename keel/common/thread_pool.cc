// ThreadPool implementation.
#include "keel/common/thread_pool.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>

#include "keel/common/logging.h"

namespace keel {

ThreadPool::ThreadPool(int num_threads, const std::string& name) {
  KEEL_CHECK(num_threads >= 1, "ThreadPool needs at least one thread, got {}", num_threads);
  threads_.reserve(num_threads);
  std::string short_name = name.substr(0, 15);  // the kernel's limit for thread names
  for (int i = 0; i < num_threads; ++i) {
    threads_.emplace_back([this] { WorkerLoop(); });
    pthread_setname_np(threads_.back().native_handle(), short_name.c_str());
  }
}

ThreadPool::~ThreadPool() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
  for (std::thread& t : threads_) t.join();
}

void ThreadPool::Schedule(std::function<void()> task) {
  {
    MutexLock lock(&mu_);
    KEEL_CHECK(!stopping_, "ThreadPool::Schedule after the pool began shutting down");
    queue_.push_back(std::move(task));
  }
  cv_.Signal();
}

void ThreadPool::WorkerLoop() {
  while (true) {
    std::function<void()> task;
    {
      MutexLock lock(&mu_);
      while (queue_.empty() && !stopping_) cv_.Wait(&mu_);
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t chunks = std::min<int64_t>(n, size() + 1);
  if (chunks == 1) {
    fn(0, n);
    return;
  }
  // Shared by the caller and the helper tasks; helpers may start after the caller returned
  // only if they find no chunk left, so the state lives in a shared_ptr.
  struct Shared {
    std::atomic<int64_t> next{0};
    Mutex mu;
    CondVar done_cv;
    int64_t done KEEL_GUARDED_BY(mu) = 0;
  };
  auto shared = std::make_shared<Shared>();
  auto run_chunks = [shared, chunks, n, &fn] {
    // `fn` is only dereferenced for a claimed chunk, and the caller waits for every claimed
    // chunk to finish, so the reference is alive whenever it is used.
    int64_t finished = 0;
    for (int64_t c; (c = shared->next.fetch_add(1)) < chunks;) {
      fn(c * n / chunks, (c + 1) * n / chunks);
      ++finished;
    }
    if (finished > 0) {
      MutexLock lock(&shared->mu);
      shared->done += finished;
      shared->done_cv.SignalAll();
    }
  };
  for (int64_t i = 1; i < chunks; ++i) Schedule(run_chunks);
  run_chunks();
  MutexLock lock(&shared->mu);
  while (shared->done < chunks) shared->done_cv.Wait(&shared->mu);
}

}  // namespace keel

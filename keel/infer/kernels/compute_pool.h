// ComputePool: the inference kernels' worker threads. A forward pass is ~150 short parallel
// loops per token; waking a sleeping thread for each (a condition variable and a context switch,
// tens of microseconds) costs about what the second core saves. So workers spin on an atomic
// for a while after each loop (kSpin below) and only then sleep, and the caller spins for the
// chunks it handed out instead of blocking.
//
//   ComputePool pool(1);                       // one worker besides the calling thread
//   pool.ParallelFor(n, [&](int64_t begin, int64_t end) { ... });
//
// Thread-safety: ParallelFor may be called by one thread at a time (a session's thread) and
// not from inside `fn`; `fn` must not throw. The destructor joins the workers.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "keel/common/mutex.h"

namespace keel::infer {

class ComputePool {
 public:
  // `workers` >= 0 threads besides the caller.
  explicit ComputePool(int workers, const std::string& name = "keel-compute");
  ~ComputePool();
  ComputePool(const ComputePool&) = delete;
  ComputePool& operator=(const ComputePool&) = delete;

  // Calls fn(begin, end) over disjoint ranges covering [0, n) on the workers and the caller;
  // returns when all are done.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

  int size() const { return static_cast<int>(threads_.size()); }

 private:
  void WorkerLoop();
  // Claims and runs chunks of the job published as `generation`; returns chunks run.
  int64_t RunChunks(uint32_t generation);

  // generation << 32 | next chunk. An odd generation is "closed" (parameters being written).
  std::atomic<uint64_t> state_{0};
  std::atomic<int64_t> pending_{0};  // chunks of the current job not finished
  // The job (Note [Publishing a job] in the .cc); atomics only so that a reader racing with the
  // next job's writes is not undefined behaviour: such a reader's claim fails.
  std::atomic<const std::function<void(int64_t, int64_t)>*> fn_{nullptr};
  std::atomic<int64_t> n_{0}, chunks_{0};

  Mutex mu_;
  CondVar cv_;
  int sleepers_ KEEL_GUARDED_BY(mu_) = 0;
  bool stopping_ KEEL_GUARDED_BY(mu_) = false;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

}  // namespace keel::infer

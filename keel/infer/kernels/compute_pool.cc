// ComputePool (see compute_pool.h).
//
// Note [Publishing a job]: the job's parameters (fn_, n_, chunks_) are written while the state
// word holds an odd ("closed") generation, then an even generation is stored with next chunk 0.
// A chunk is claimed by a compare-exchange on the whole word, so a thread still holding the
// previous job's word cannot claim a chunk of the new job, and after a successful claim the
// parameters cannot change until that chunk is done (the caller waits for pending_ == 0 first).
#include "keel/infer/kernels/compute_pool.h"

#include <pthread.h>

#include <chrono>

#include "keel/common/logging.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace keel::infer {
namespace {

// How long an idle worker spins before it sleeps: longer than the gaps between the parallel
// loops of one forward pass and between decode steps, short enough not to hog a core that
// another process wants for long.
constexpr auto kSpin = std::chrono::milliseconds(1);

inline void Pause() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

uint32_t Generation(uint64_t state) { return static_cast<uint32_t>(state >> 32); }

}  // namespace

ComputePool::ComputePool(int workers, const std::string& name) {
  KEEL_CHECK(workers >= 0, "ComputePool needs workers >= 0, got {}", workers);
  const std::string short_name = name.substr(0, 15);
  for (int i = 0; i < workers; ++i) {
    threads_.emplace_back([this] { WorkerLoop(); });
    pthread_setname_np(threads_.back().native_handle(), short_name.c_str());
  }
}

ComputePool::~ComputePool() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    stop_.store(true);
  }
  cv_.SignalAll();
  for (std::thread& t : threads_) t.join();
}

int64_t ComputePool::RunChunks(uint32_t generation) {
  int64_t ran = 0;
  for (;;) {
    uint64_t s = state_.load(std::memory_order_acquire);
    if (Generation(s) != generation) break;
    const auto chunk = static_cast<int64_t>(static_cast<uint32_t>(s));
    if (chunk >= chunks_.load(std::memory_order_relaxed)) break;
    if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) continue;
    const int64_t n = n_.load(std::memory_order_relaxed);
    const int64_t chunks = chunks_.load(std::memory_order_relaxed);
    (*fn_.load(std::memory_order_relaxed))(chunk * n / chunks, (chunk + 1) * n / chunks);
    pending_.fetch_sub(1, std::memory_order_release);
    ++ran;
  }
  return ran;
}

void ComputePool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t chunks = std::min<int64_t>(n, size() + 1);
  if (chunks == 1) {
    fn(0, n);
    return;
  }
  const uint32_t closed = Generation(state_.load(std::memory_order_relaxed)) + 1;
  state_.store(uint64_t{closed} << 32);  // Note [Publishing a job]
  fn_.store(&fn, std::memory_order_relaxed);
  n_.store(n, std::memory_order_relaxed);
  chunks_.store(chunks, std::memory_order_relaxed);
  pending_.store(chunks, std::memory_order_relaxed);
  const uint32_t open = closed + 1;
  state_.store(uint64_t{open} << 32);
  {
    MutexLock lock(&mu_);
    if (sleepers_ > 0) cv_.SignalAll();
  }
  RunChunks(open);
  while (pending_.load(std::memory_order_acquire) > 0) Pause();
}

void ComputePool::WorkerLoop() {
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = 0;
    auto since = std::chrono::steady_clock::now();
    for (int spins = 1;; ++spins) {
      g = Generation(state_.load(std::memory_order_acquire));
      if (g != seen && g % 2 == 0) break;
      if (stop_.load(std::memory_order_relaxed)) return;
      Pause();
      if (spins % 256 == 0 && std::chrono::steady_clock::now() - since > kSpin) {
        MutexLock lock(&mu_);
        ++sleepers_;
        for (;;) {
          g = Generation(state_.load(std::memory_order_acquire));
          if (stopping_ || (g != seen && g % 2 == 0)) break;
          cv_.Wait(&mu_);
        }
        --sleepers_;
        if (stopping_) return;
        since = std::chrono::steady_clock::now();
      }
    }
    seen = g;
    RunChunks(g);
  }
}

}  // namespace keel::infer

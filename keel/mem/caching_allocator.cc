// The caching policy: PyTorch's documented CUDA caching allocator, one segment per cudaMalloc.
//
// Requests round up to 512 B. Up to 1 MiB they are "small" and served from 2 MiB segments;
// larger ones come from the large pool, whose new segments are 20 MiB for requests under
// 10 MiB and otherwise the request rounded up to 2 MiB. A request takes the best-fitting free
// block of its pool on its stream, ordered by (stream, size, address), and splits off the
// rest when at least 512 B (small) or more than 1 MiB (large, and the block is below
// max_split_size) would remain. Freed blocks coalesce with free neighbours of their segment.
// When the backend is full, every cached segment that is entirely free is released and the
// request retried once; then it fails with an out-of-memory error. A segment never shrinks.
#include <memory>
#include <unordered_map>

#include "keel/common/mutex.h"
#include "keel/mem/block_pool.h"
#include "keel/mem/policies.h"

namespace keel::mem::internal {
namespace {

class CachingAllocator final : public Allocator {
 public:
  CachingAllocator(PhysicalMemory* backend, const AllocatorOptions& options)
      : backend_(backend), options_(options) {}

  ~CachingAllocator() override {
    MutexLock lock(&mu_);
    for (auto& [base, seg] : segments_) (void)DestroySegment(backend_, seg.get(), &stats_);
  }

  StatusOr<Allocation> Allocate(uint64_t bytes, int stream) override {
    KEEL_RETURN_IF_ERROR(CheckRequest(bytes, stream));
    MutexLock lock(&mu_);
    const uint64_t size = RoundUp(bytes, kMinBlockSize);
    const bool small = size <= kSmallSize;
    BlockPool& pool = small ? small_pool_ : large_pool_;
    const uint64_t max_split = small ? 0 : options_.max_split_size_bytes;
    Block* b = pool.BestFit(stream, size, max_split);
    if (b != nullptr) {
      pool.Erase(b);
    } else {
      StatusOr<Block*> fresh = NewSegment(bytes, size, stream, small);
      if (!fresh.ok()) return fresh.status();
      b = *fresh;
    }
    return HandOut(b, size, bytes, small, max_split, &pool, &live_, &stats_);
  }

  Status Free(void* ptr) override {
    MutexLock lock(&mu_);
    return TakeBack(name(), ptr, &live_, &small_pool_, &large_pool_, &stats_);
  }

  void EmptyCache() override {
    MutexLock lock(&mu_);
    ReleaseCached();
  }

  AllocatorStats stats() const override {
    MutexLock lock(&mu_);
    return stats_;
  }

  void ResetPeaks() override {
    MutexLock lock(&mu_);
    internal::ResetPeaks(&stats_);
  }

  std::string_view name() const override { return "caching"; }

 private:
  // A new segment sized by PyTorch's rules; its one block is returned outside any pool. When
  // the backend is full, releases the cached segments and tries once more.
  StatusOr<Block*> NewSegment(uint64_t bytes, uint64_t size, int stream, bool small)
      KEEL_REQUIRES(mu_) {
    uint64_t seg_bytes = small                   ? kSmallBuffer
                         : size < kMinLargeAlloc ? kLargeBuffer
                                                 : RoundUp(size, kRoundLarge);
    seg_bytes = RoundUp(seg_bytes, backend_->granularity());
    StatusOr<std::unique_ptr<Segment>> seg = StatusOr<std::unique_ptr<Segment>>(
        ResourceExhaustedError("larger than the backend's capacity"));
    if (seg_bytes <= backend_->capacity()) {
      seg = CreateSegment(backend_, seg_bytes, seg_bytes, stream, small, &stats_);
      if (!seg.ok() && seg.status().code() == StatusCode::kResourceExhausted) {
        ++stats_.empty_cache_count;
        ReleaseCached();
        seg = CreateSegment(backend_, seg_bytes, seg_bytes, stream, small, &stats_);
      }
    }
    if (!seg.ok()) {
      if (seg.status().code() != StatusCode::kResourceExhausted) return seg.status();
      ++stats_.oom_count;
      return OutOfMemory(name(), bytes, size, stream, stats_, *backend_,
                         "Free tensors sooner, lower the batch, raise capacity, or try "
                         "--allocator stitching or expandable, which fragment less.");
    }
    Block* b = (*seg)->blocks.begin()->second.get();
    segments_.emplace((*seg)->base, std::move(*seg));
    ++stats_.segment_count;
    return b;
  }

  // Releases every segment whose memory is one free block (PyTorch's release_cached_blocks).
  void ReleaseCached() KEEL_REQUIRES(mu_) {
    for (auto it = segments_.begin(); it != segments_.end();) {
      Segment* seg = it->second.get();
      Block* only = seg->blocks.size() == 1 ? seg->blocks.begin()->second.get() : nullptr;
      if (only == nullptr || only->allocated) {
        ++it;
        continue;
      }
      (seg->small ? small_pool_ : large_pool_).Erase(only);
      (void)DestroySegment(backend_, seg, &stats_);
      --stats_.segment_count;
      it = segments_.erase(it);
    }
  }

  PhysicalMemory* const backend_;
  const AllocatorOptions options_;
  mutable Mutex mu_;
  std::map<uintptr_t, std::unique_ptr<Segment>> segments_ KEEL_GUARDED_BY(mu_);
  LiveBlocks live_ KEEL_GUARDED_BY(mu_);
  BlockPool small_pool_ KEEL_GUARDED_BY(mu_);
  BlockPool large_pool_ KEEL_GUARDED_BY(mu_);
  AllocatorStats stats_ KEEL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<Allocator> NewCachingAllocator(PhysicalMemory* backend,
                                               const AllocatorOptions& options) {
  return std::make_unique<CachingAllocator>(backend, options);
}

}  // namespace keel::mem::internal

// The expandable policy: PyTorch's expandable segments (glake.md §4).
//
// Each (stream, pool) owns one reserved virtual range, 1⅛ × the backend's capacity, that is
// mapped from its start in pages: expandable_page_bytes for the large pool (PyTorch: 20 MiB),
// 2 MiB for the small one. Inside a range the caching rules apply (512 B rounding, best fit by
// (stream, size, address), split, coalesce). When no free block fits, the range grows at its
// end by the pages the request needs beyond a free block already at the end, so the "N+1
// batch" slivers that strand memory between caching segments do not occur.
// EmptyCache, and an allocation that finds the backend full, unmap the whole pages of the free
// block at the end of every range (the memory can then grow any other range); the allocation
// is retried once, then fails with an out-of-memory error.
#include <memory>
#include <unordered_map>
#include <utility>

#include "keel/common/mutex.h"
#include "keel/mem/block_pool.h"
#include "keel/mem/policies.h"

namespace keel::mem::internal {
namespace {

// Note [Expandable reclaim at the end only]
// PyTorch also unmaps empty pages in the middle of a range, leaving holes it maps again later.
// Here only the free tail is unmapped: every range stays one mapped prefix, so growth is a
// plain append and the block list needs no holes. The pages a middle hole would return stay
// cached until the blocks after them are freed; fragmentation results show that cost.

class ExpandableAllocator final : public Allocator {
 public:
  ExpandableAllocator(PhysicalMemory* backend, const AllocatorOptions& options)
      : backend_(backend),
        options_(options),
        large_page_(RoundUp(options.expandable_page_bytes, backend->granularity())),
        small_page_(RoundUp(kSmallBuffer, backend->granularity())) {}

  ~ExpandableAllocator() override {
    MutexLock lock(&mu_);
    for (auto& [key, seg] : segments_) (void)DestroySegment(backend_, seg.get(), &stats_);
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
      StatusOr<Block*> grown = Grow(stream, small, size);
      if (!grown.ok() && grown.status().code() == StatusCode::kResourceExhausted) {
        ++stats_.empty_cache_count;
        ReleaseFreePages();
        grown = Grow(stream, small, size);
      }
      if (!grown.ok()) {
        if (grown.status().code() != StatusCode::kResourceExhausted) return grown.status();
        ++stats_.oom_count;
        return OutOfMemory(name(), bytes, size, stream, stats_, *backend_,
                           "Free tensors sooner, lower the batch, raise capacity, or try "
                           "--allocator stitching.");
      }
      b = *grown;
    }
    return HandOut(b, size, bytes, small, max_split, &pool, &live_, &stats_);
  }

  Status Free(void* ptr) override {
    MutexLock lock(&mu_);
    return TakeBack(name(), ptr, &live_, &small_pool_, &large_pool_, &stats_);
  }

  void EmptyCache() override {
    MutexLock lock(&mu_);
    ReleaseFreePages();
  }

  AllocatorStats stats() const override {
    MutexLock lock(&mu_);
    return stats_;
  }

  void ResetPeaks() override {
    MutexLock lock(&mu_);
    internal::ResetPeaks(&stats_);
  }

  std::string_view name() const override { return "expandable"; }

 private:
  uint64_t PageBytes(bool small) const { return small ? small_page_ : large_page_; }

  // Maps pages at the end of (stream, small)'s range so that a free block of at least `size`
  // ends it; returns that block, outside the pool.
  StatusOr<Block*> Grow(int stream, bool small, uint64_t size) KEEL_REQUIRES(mu_) {
    const uint64_t page = PageBytes(small);
    auto key = std::make_pair(stream, small);
    auto it = segments_.find(key);
    if (it == segments_.end()) {
      uint64_t reserve = RoundUp(backend_->capacity() / 8 * 9, page);
      KEEL_ASSIGN_OR_RETURN(std::unique_ptr<Segment> seg,
                            CreateSegment(backend_, reserve, 0, stream, small, &stats_));
      it = segments_.emplace(key, std::move(seg)).first;
    }
    Segment* seg = it->second.get();
    Block* last = seg->blocks.empty() ? nullptr : std::prev(seg->blocks.end())->second.get();
    if (last != nullptr && last->allocated) last = nullptr;
    const uint64_t have = last != nullptr ? last->size : 0;
    if (have >= size) {  // the tail fits but BestFit's max_split rule passed it over
      (small ? small_pool_ : large_pool_).Erase(last);
      return last;
    }
    const uint64_t grow = RoundUp(size - have, page);
    if (seg->mapped + grow > seg->reserved) {
      return ResourceExhaustedError("the stream's virtual range is exhausted");
    }
    const uintptr_t end = seg->base + seg->mapped;
    KEEL_RETURN_IF_ERROR(MapChunks(backend_, seg, grow, &stats_));
    stats_.segment_count += grow / page;
    if (last != nullptr) {
      (small ? small_pool_ : large_pool_).Erase(last);
      last->size += grow;
      return last;
    }
    auto b = std::make_unique<Block>();
    b->addr = end;
    b->size = grow;
    b->stream = stream;
    b->segment = seg;
    Block* raw = b.get();
    seg->blocks.emplace(end, std::move(b));
    return raw;
  }

  // Unmaps the whole pages of each range's free tail; drops ranges left with nothing mapped.
  void ReleaseFreePages() KEEL_REQUIRES(mu_) {
    for (auto it = segments_.begin(); it != segments_.end();) {
      Segment* seg = it->second.get();
      const uint64_t page = PageBytes(seg->small);
      BlockPool& pool = seg->small ? small_pool_ : large_pool_;
      Block* last = seg->blocks.empty() ? nullptr : std::prev(seg->blocks.end())->second.get();
      if (last != nullptr && !last->allocated) {
        const uintptr_t end = seg->base + seg->mapped;
        const uintptr_t cut = seg->base + RoundUp(last->addr - seg->base, page);
        if (cut < end) {
          pool.Erase(last);
          last->size -= end - cut;
          if (last->size == 0) {
            seg->blocks.erase(last->addr);
          } else {
            pool.Insert(last);
          }
          (void)UnmapChunks(backend_, seg, end - cut, &stats_);
          stats_.segment_count -= (end - cut) / page;
        }
      }
      if (seg->mapped == 0) {
        (void)DestroySegment(backend_, seg, &stats_);
        it = segments_.erase(it);
      } else {
        ++it;
      }
    }
  }

  PhysicalMemory* const backend_;
  const AllocatorOptions options_;
  const uint64_t large_page_, small_page_;
  mutable Mutex mu_;
  std::map<std::pair<int, bool>, std::unique_ptr<Segment>> segments_ KEEL_GUARDED_BY(mu_);
  LiveBlocks live_ KEEL_GUARDED_BY(mu_);
  BlockPool small_pool_ KEEL_GUARDED_BY(mu_);
  BlockPool large_pool_ KEEL_GUARDED_BY(mu_);
  AllocatorStats stats_ KEEL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<Allocator> NewExpandableAllocator(PhysicalMemory* backend,
                                                  const AllocatorOptions& options) {
  return std::make_unique<ExpandableAllocator>(backend, options);
}

}  // namespace keel::mem::internal

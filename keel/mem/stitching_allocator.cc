// The stitching policy: GMLake's allocator (glake.md §1) — decision order, primary blocks,
// segments. Stitched blocks, chunk state and GC are in stitched_blocks.cc.
//
// Requests up to 1 MiB round to 512 B and use the caching small pool (2 MiB segments).
// Larger ones round up to 2 MiB chunks and go, in this order, to:
//   1. the best-fitting free primary block (pBlock) on the stream, split at a chunk boundary;
//   2. the best-fitting cached, intact stitched block (sBlock) no larger than
//      request × reuse_limit, of which only the needed prefix of chunks is claimed;
//   3. a new stitch of the stream's free pBlocks, largest first (defrag_level 0 only, requests
//      >= frag_limit);
//   4. a new segment (20 MiB under 10 MiB, else the request);
//   5. a stitch again (the first one for defrag_level 1), GC allowed;
//   6. releasing every entirely free cached segment and retrying 4, then a last stitch;
//   7. out of memory.
// Stitched blocks add no reserved bytes: they map chunks their primaries already hold. As in
// GMLake, stats.segment_count counts the stitched blocks (active or cached) with the segments.
// Not done: GMLake's reAlloc=1 (allocate only the shortfall, then stitch) and its GC-and-retry
// when creating a segment fails; the latter only helps where the driver runs out of mappings,
// which neither the host nor the simulated backend model.
#include "keel/mem/stitching_allocator.h"

#include <algorithm>
#include <tuple>

#include "keel/mem/policies.h"

namespace keel::mem::internal {

// Note [Per-chunk state]
// As in GMLake, every chunk of a large segment carries a `used` flag and the list of stitched
// blocks that map it. A chunk is used exactly when an allocated or claimed pBlock covers it,
// so the flags change only in SetUsed, called whenever a pBlock changes state. Each change
// re-files the free stitched blocks that map the chunk: intact (every chunk free, so it can be
// handed out again) or fragmented (something else holds one of its chunks). Free pBlocks are
// always coalesced, so a run of free chunks inside a segment is inside one free pBlock, which
// is what lets Carve claim any run of chunks by splitting at most one block twice.

StitchingAllocator::StitchingAllocator(PhysicalMemory* backend, const AllocatorOptions& options)
    : backend_(backend),
      options_(options),
      granularity_(backend->granularity()),
      unit_(RoundUp(kRoundLarge, backend->granularity())) {}

StitchingAllocator::~StitchingAllocator() {
  MutexLock lock(&mu_);
  for (auto& [base, s] : stitched_) {
    for (size_t i = 0; i < s->chunks.size(); ++i) (void)backend_->Unmap(base + i * granularity_);
    (void)backend_->Free(base, s->size);
  }
  for (auto& [base, seg] : segments_) (void)DestroySegment(backend_, seg.get(), &stats_);
}

StatusOr<Allocation> StitchingAllocator::Allocate(uint64_t bytes, int stream) {
  KEEL_RETURN_IF_ERROR(CheckRequest(bytes, stream));
  MutexLock lock(&mu_);
  if (bytes <= kSmallSize) return AllocateSmall(bytes, stream);
  return AllocateLarge(bytes, stream);
}

StatusOr<Allocation> StitchingAllocator::AllocateSmall(uint64_t bytes, int stream) {
  const uint64_t size = RoundUp(bytes, kMinBlockSize);
  Block* b = small_pool_.BestFit(stream, size, 0);
  if (b != nullptr) {
    small_pool_.Erase(b);
  } else {
    const uint64_t seg_bytes = RoundUp(kSmallBuffer, granularity_);
    StatusOr<std::unique_ptr<Segment>> seg = NewSegment(seg_bytes, stream, /*small=*/true);
    if (!seg.ok() && seg.status().code() == StatusCode::kResourceExhausted) {
      ++stats_.empty_cache_count;
      ReleaseCached();
      seg = NewSegment(seg_bytes, stream, /*small=*/true);
    }
    if (!seg.ok()) {
      if (seg.status().code() != StatusCode::kResourceExhausted) return seg.status();
      return OutOfMemoryError(bytes, size, stream);
    }
    b = (*seg)->blocks.begin()->second.get();
    segments_.emplace((*seg)->base, std::move(*seg));
  }
  if (ShouldSplit(*b, size, /*small=*/true, 0)) small_pool_.Insert(SplitBlock(b, size));
  b->allocated = true;
  b->requested = bytes;
  live_[b->addr] = b;
  AddActive(&stats_, b->size, bytes);
  return Allocation{reinterpret_cast<void*>(b->addr), b->size};
}

StatusOr<Allocation> StitchingAllocator::AllocateLarge(uint64_t bytes, int stream) {
  const uint64_t size = RoundUp(bytes, unit_);
  if (Block* b = large_pool_.BestFit(stream, size, options_.max_split_size_bytes)) {
    return TakeBlock(b, size, bytes);
  }
  if (Stitched* s = BestFitStitched(stream, size)) return ReuseStitched(s, size, bytes);
  if (options_.defrag_level == 0) {
    if (std::optional<Allocation> a = TryStitch(size, bytes, stream, 0)) return *a;
  }
  StatusOr<Allocation> a = NewLargeSegment(size, bytes, stream);
  if (a.ok() || a.status().code() != StatusCode::kResourceExhausted) return a;
  if (std::optional<Allocation> st = TryStitch(size, bytes, stream, 1)) return *st;
  ++stats_.empty_cache_count;
  ReleaseCached();
  a = NewLargeSegment(size, bytes, stream);
  if (a.ok() || a.status().code() != StatusCode::kResourceExhausted) return a;
  if (std::optional<Allocation> st = TryStitch(size, bytes, stream, 2)) return *st;
  return OutOfMemoryError(bytes, size, stream);
}

// Allocates from free pBlock `b` (in the large pool): split at `size` when the rest is at
// least one chunk and the request is below max_split_size (GMLake's rule).
Allocation StitchingAllocator::TakeBlock(Block* b, uint64_t size, uint64_t bytes) {
  large_pool_.Erase(b);
  const uint64_t max_split = options_.max_split_size_bytes;
  if (b->size - size >= unit_ && (max_split == 0 || size < max_split)) {
    large_pool_.Insert(SplitBlock(b, size));
  }
  b->allocated = true;
  b->requested = bytes;
  live_[b->addr] = b;
  SetUsed(b, true);
  AddActive(&stats_, b->size, bytes);
  return Allocation{reinterpret_cast<void*>(b->addr), b->size};
}

StatusOr<Allocation> StitchingAllocator::NewLargeSegment(uint64_t size, uint64_t bytes,
                                                         int stream) {
  const uint64_t seg_bytes = RoundUp(size < kMinLargeAlloc ? kLargeBuffer : size, unit_);
  KEEL_ASSIGN_OR_RETURN(std::unique_ptr<Segment> seg,
                        NewSegment(seg_bytes, stream, /*small=*/false));
  seg_chunks_[seg.get()].chunks.resize(seg->chunks.size());
  Block* b = seg->blocks.begin()->second.get();
  segments_.emplace(seg->base, std::move(seg));
  large_pool_.Insert(b);
  return TakeBlock(b, size, bytes);
}

StatusOr<std::unique_ptr<Segment>> StitchingAllocator::NewSegment(uint64_t seg_bytes, int stream,
                                                                  bool small) {
  if (seg_bytes > backend_->capacity()) {
    return ResourceExhaustedError("larger than the backend's capacity");
  }
  KEEL_ASSIGN_OR_RETURN(std::unique_ptr<Segment> seg,
                        CreateSegment(backend_, seg_bytes, seg_bytes, stream, small, &stats_));
  ++stats_.segment_count;
  return seg;
}

Status StitchingAllocator::Free(void* ptr) {
  MutexLock lock(&mu_);
  const auto addr = reinterpret_cast<uintptr_t>(ptr);
  if (auto it = live_.find(addr); it != live_.end()) {
    Block* b = it->second;
    live_.erase(it);
    SubActive(&stats_, b->size, b->requested);
    FreeBlock(b);
    return OkStatus();
  }
  auto it = stitched_.find(addr);
  if (it == stitched_.end() || it->second->state != Stitched::State::kActive) {
    return UnknownPointer(name(), ptr);
  }
  FreeStitched(it->second.get());
  return OkStatus();
}

// Returns an allocated or claimed pBlock to its pool, coalesced.
void StitchingAllocator::FreeBlock(Block* b) {
  b->allocated = false;
  b->requested = 0;
  b->claimed_by = nullptr;
  if (b->segment->small) {
    small_pool_.Insert(MergeFree(b, &small_pool_));
    return;
  }
  SetUsed(b, false);
  large_pool_.Insert(MergeFree(b, &large_pool_));
}

void StitchingAllocator::EmptyCache() {
  MutexLock lock(&mu_);
  GarbageCollect(0, 1);
  ReleaseCached();
}

// Releases every segment that is one free block. A large segment first destroys the free
// stitched blocks mapping its chunks; one still mapped by an active stitched block stays.
void StitchingAllocator::ReleaseCached() {
  for (auto it = segments_.begin(); it != segments_.end();) {
    Segment* seg = it->second.get();
    Block* only = seg->blocks.size() == 1 ? seg->blocks.begin()->second.get() : nullptr;
    if (only == nullptr || only->allocated || only->claimed_by != nullptr) {
      ++it;
      continue;
    }
    if (seg->small) {
      small_pool_.Erase(only);
    } else if (!ReleaseLargeSegment(seg)) {
      ++it;
      continue;
    }
    (void)DestroySegment(backend_, seg, &stats_);
    --stats_.segment_count;
    it = segments_.erase(it);
  }
}

bool StitchingAllocator::ReleaseLargeSegment(Segment* seg) {
  auto sc = seg_chunks_.find(seg);
  std::set<Stitched*> views;
  if (sc != seg_chunks_.end()) {
    for (const ChunkState& cs : sc->second.chunks) {
      for (Stitched* s : cs.views) {
        if (s->state == Stitched::State::kActive) return false;
        views.insert(s);
      }
    }
  }
  for (Stitched* s : views) DestroyStitched(s);
  seg_chunks_.erase(seg);
  large_pool_.Erase(seg->blocks.begin()->second.get());
  return true;
}

Status StitchingAllocator::OutOfMemoryError(uint64_t bytes, uint64_t size, int stream) {
  ++stats_.oom_count;
  return OutOfMemory(name(), bytes, size, stream, stats_, *backend_,
                     "Free tensors sooner, lower the batch, raise capacity, or lower "
                     "frag_limit so that smaller requests may be stitched.");
}

AllocatorStats StitchingAllocator::stats() const {
  MutexLock lock(&mu_);
  return stats_;
}

void StitchingAllocator::ResetPeaks() {
  MutexLock lock(&mu_);
  internal::ResetPeaks(&stats_);
}

bool StitchedOrder::operator()(const Stitched* a, const Stitched* b) const {
  return std::tie(a->stream, a->size, a->base) < std::tie(b->stream, b->size, b->base);
}

std::unique_ptr<Allocator> NewStitchingAllocator(PhysicalMemory* backend,
                                                 const AllocatorOptions& options) {
  return std::make_unique<StitchingAllocator>(backend, options);
}

}  // namespace keel::mem::internal

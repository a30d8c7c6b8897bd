// The stitching policy: GMLake's allocator (glake.md §1) — decision order, primary blocks,
// segments. Stitched blocks, chunk state and GC are in stitched_blocks.cc.
//
// Requests up to 1 MiB round to 512 B and use the caching small pool (2 MiB segments).
// Larger ones round to 512 B as pBlocks (or, with chunk_rounding, to 2 MiB chunks as GMLake
// does), and to whole chunks as sBlocks, and go, in this order, to:
//   1. the best-fitting free primary block (pBlock) on the stream, split as PyTorch does (at a
//      chunk boundary with chunk_rounding);
//   2. the best-fitting cached, intact stitched block (sBlock) no larger than
//      request × reuse_limit, of which only the needed prefix of chunks is claimed;
//   3. a new stitch of the free whole chunks in the stream's pBlocks, largest block first
//      (defrag_level 0 only, requests >= frag_limit);
//   4. with realloc_level 1, defrag_level 0 and a request >= frag_limit: entirely free small
//   segments lent to
//      the large pool, then a new segment of only the shortfall, stitched with the stream's
//      free chunks (GMLake's reAlloc, paper S4; Note [Lending free small segments]);
//   5. a new segment (20 MiB under 10 MiB, else the request);
//   6. a stitch again (the first one for defrag_level 1), GC allowed;
//   7. releasing every entirely free cached segment and retrying 5, then a last stitch;
//   8. out of memory.
// Stitched blocks add no reserved bytes: they map chunks their primaries already hold. As in
// GMLake, stats.segment_count counts the stitched blocks (active or cached) with the segments.
// Not done: GMLake's GC-and-retry when creating a segment fails; it only helps where the
// driver runs out of mappings, which neither the host nor the simulated backend model.
#include "keel/mem/stitching_allocator.h"

#include <algorithm>
#include <tuple>

#include "keel/mem/policies.h"

namespace keel::mem::internal {

// Note [Per-chunk state]
// As in GMLake, every chunk of a large segment carries its use and the list of stitched blocks
// that map it. GMLake's pBlocks are whole chunks, so a flag suffices; ours may be rounded to
// 512 B (Note [Stitching defaults]), so two blocks can share a chunk and each chunk counts the
// allocated or claimed pBlocks that overlap it (`users`). The counts change only in SetUsed,
// called whenever a pBlock changes state. A change between zero and non-zero re-files the
// free stitched blocks that map the chunk: intact (every chunk free, so it can be handed out
// again) or fragmented (something else holds one of its chunks). Free pBlocks are always
// coalesced, so a run of free chunks inside a segment is inside one free pBlock, which is what
// lets Carve claim any run of chunks by splitting at most one block twice; only a free block's
// whole chunks (WholeChunks) may be stitched.
//
// Note [Stitching defaults]
// GMLake's settings are tuned for 80 GB GPUs and its tests' multi-GB requests. keel keeps
// GMLake's frag_limit (512 MiB), reuse_limit, autoGC and defrag_level as defaults and changes
// two things, each a field that restores GMLake's behaviour:
//  - realloc_level 1: without it a request that the free blocks almost cover still reserves
//    its full size, the very fragmentation stitching exists to avoid. With it, reserved grows
//    by the shortfall only. GMLake ships it off; its paper describes it as the S4 state.
//  - chunk_rounding false: rounding every request > 1 MiB to 2 MiB inflates the blocks of
//    small and mid-size models by up to 2 MiB each (the recorded GPT trace: peak active 661
//    vs 537 MiB with PyTorch's 512 B), more than stitching ever recovers. pBlocks keep
//    PyTorch's 512 B rounding and splitting; stitched blocks are whole chunks, built from the
//    whole free chunks of free pBlocks.
// frag_limit stays 512 MiB because stitching costs one map per chunk (about 80 µs on CUDA,
// glake.md §1) and a driver mapping each; a trace whose requests are all smaller (a small
// model, a CPU recording) needs a lower limit, e.g. `--frag-limit 2M` (docs/mem.md).

StitchingAllocator::StitchingAllocator(PhysicalMemory* backend, const AllocatorOptions& options)
    : backend_(backend),
      options_(options),
      granularity_(backend->granularity()),
      unit_(RoundUp(kRoundLarge, backend->granularity())),
      large_round_(options.chunk_rounding ? unit_ : kMinBlockSize) {}

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
  const uint64_t block = RoundUp(bytes, large_round_);  // as a pBlock
  const uint64_t size = RoundUp(bytes, unit_);          // as an sBlock
  if (Block* b = large_pool_.BestFit(stream, block, options_.max_split_size_bytes)) {
    return TakeBlock(b, block, bytes);
  }
  if (Stitched* s = BestFitStitched(stream, size)) return ReuseStitched(s, size, bytes);
  if (options_.defrag_level == 0) {
    if (std::optional<Allocation> a = TryStitch(size, bytes, stream, 0)) return *a;
  }
  if (options_.realloc_level == 1 && options_.defrag_level == 0) {
    if (std::optional<Allocation> a = ReallocShortfall(block, size, bytes, stream)) return *a;
  }
  StatusOr<Allocation> a = NewLargeSegment(block, bytes, stream);
  if (a.ok() || a.status().code() != StatusCode::kResourceExhausted) return a;
  if (std::optional<Allocation> st = TryStitch(size, bytes, stream, 1)) return *st;
  ++stats_.empty_cache_count;
  ReleaseCached();
  a = NewLargeSegment(block, bytes, stream);
  if (a.ok() || a.status().code() != StatusCode::kResourceExhausted) return a;
  if (std::optional<Allocation> st = TryStitch(size, bytes, stream, 2)) return *st;
  return OutOfMemoryError(bytes, block, stream);
}

// Allocates from free pBlock `b` (in the large pool). With chunk_rounding, GMLake's rule:
// split at `size` when the rest is at least one chunk and the request is below max_split_size;
// otherwise PyTorch's (ShouldSplit).
Allocation StitchingAllocator::TakeBlock(Block* b, uint64_t size, uint64_t bytes) {
  large_pool_.Erase(b);
  const uint64_t max_split = options_.max_split_size_bytes;
  const bool split = options_.chunk_rounding
                         ? b->size - size >= unit_ && (max_split == 0 || size < max_split)
                         : ShouldSplit(*b, size, /*small=*/false, max_split);
  if (split) large_pool_.Insert(SplitBlock(b, size));
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
  return TakeBlock(AddLargeSegment(std::move(seg)), size, bytes);
}

// Files a new large segment; returns its one free block, now in the large pool.
Block* StitchingAllocator::AddLargeSegment(std::unique_ptr<Segment> seg) {
  seg_chunks_[seg.get()].chunks.resize(seg->chunks.size());
  Block* b = seg->blocks.begin()->second.get();
  segments_.emplace(seg->base, std::move(seg));
  large_pool_.Insert(b);
  return b;
}

// GMLake's reAlloc (Note [Stitching defaults]): when the stream's free whole chunks fall short
// of `size`, moves entirely free small-pool segments of the stream to the large pool, then
// creates a segment of only what is still missing, and serves the request from the free
// chunks (one block if one now fits, else a stitch), so reserved grows by the shortfall at
// most. Nothing when the request is below frag_limit, there is nothing free to stitch with, or
// the segment cannot be created (the caller goes on as without reAlloc).
std::optional<Allocation> StitchingAllocator::ReallocShortfall(uint64_t block, uint64_t size,
                                                               uint64_t bytes, int stream) {
  if (size < options_.frag_limit_bytes) return std::nullopt;
  uint64_t free_bytes = FreeChunkBytes(stream);
  if (free_bytes < size) free_bytes += AdoptFreeSmallSegments(stream, size - free_bytes);
  if (free_bytes == 0) return std::nullopt;
  if (free_bytes < size) {
    StatusOr<std::unique_ptr<Segment>> seg =
        NewSegment(RoundUp(size - free_bytes, unit_), stream, /*small=*/false);
    if (!seg.ok()) return std::nullopt;
    AddLargeSegment(std::move(*seg));
  }
  if (Block* b = large_pool_.BestFit(stream, block, options_.max_split_size_bytes)) {
    return TakeBlock(b, block, bytes);
  }
  return TryStitch(size, bytes, stream, 0);
}

// Note [Lending free small segments]
// Unlike GMLake, whose small pool is plain cudaMalloc, our small segments are single chunks
// of the same backend. One that is entirely free holds a whole free chunk that nothing else
// can use: PyTorch releases it only on OOM or EmptyCache. reAlloc counts such chunks as free
// before creating new memory: the segment moves to the large pool as it is (no remapping), to
// be stitched or handed out like any large segment; the small pool creates a new one when it
// next needs one. Without this, a phase of many small tensors strands its segments: the
// recorded GPT trace ends with 39 MiB of free small segments beside a 45 MiB new segment.
uint64_t StitchingAllocator::AdoptFreeSmallSegments(int stream, uint64_t need) {
  uint64_t moved = 0;
  for (auto& [base, seg] : segments_) {
    if (moved >= need) break;
    if (!seg->small || seg->stream != stream || seg->blocks.size() != 1) continue;
    Block* b = seg->blocks.begin()->second.get();
    if (b->allocated) continue;
    small_pool_.Erase(b);
    seg->small = false;
    seg_chunks_[seg.get()].chunks.resize(seg->chunks.size());
    large_pool_.Insert(b);
    moved += seg->mapped;
  }
  return moved;
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

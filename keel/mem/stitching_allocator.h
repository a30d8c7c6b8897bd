// The stitching policy (GMLake, glake.md §1): the class shared by stitching_allocator.cc (the
// decision order, primary blocks, segments) and stitched_blocks.cc (stitching, cached stitched
// blocks, per-chunk state, GC). Internal; use MakeAllocator("stitching", ...).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "keel/common/mutex.h"
#include "keel/mem/allocator.h"
#include "keel/mem/block_pool.h"
#include "keel/mem/physical_memory.h"

namespace keel::mem::internal {

struct Stitched;

// A chunk of a large (primary) segment (Note [Per-chunk state]). `users` = how many allocated
// or claimed pBlocks overlap it (used when > 0; with 512 B rounding two blocks may share a
// chunk); `views` = the stitched blocks that also map it (GMLake's mapped_blocks minus the
// primary entry).
struct ChunkState {
  uint32_t users = 0;
  std::vector<Stitched*> views;
};

// The chunk states of one primary segment, by chunk index; `views` counts all their entries
// so that segments no stitched block maps skip the per-chunk work.
struct SegmentChunks {
  std::vector<ChunkState> chunks;
  size_t views = 0;
};

// One chunk as a stitched block sees it: which segment, which index there.
struct ChunkRef {
  Segment* segment = nullptr;
  SegmentChunks* states = nullptr;  // owned by the allocator, stable while the segment lives
  uint32_t index = 0;
  ChunkState& state() const { return states->chunks[index]; }
  ChunkId id() const { return segment->chunks[index]; }
};

// A stitched block (sBlock): a second virtual range mapping chunks that stay mapped in their
// primary segments. While active, the primary blocks it uses are "pieces" claimed by it.
struct Stitched {
  enum class State { kActive, kIntact, kFragmented };
  uintptr_t base = 0;
  uint64_t size = 0;
  int stream = 0;
  std::vector<ChunkRef> chunks;  // chunk i mapped at base + i * granularity
  State state = State::kActive;
  std::vector<Block*> pieces;  // claimed primary blocks while active
  uint64_t active_bytes = 0, requested = 0;
  uint64_t last_use = 0;   // LRU tick
  size_t used_chunks = 0;  // of `chunks`, how many are used (0 = intact when free)
};

struct StitchedOrder {
  bool operator()(const Stitched* a, const Stitched* b) const;
};

class StitchingAllocator final : public Allocator {
 public:
  StitchingAllocator(PhysicalMemory* backend, const AllocatorOptions& options);
  ~StitchingAllocator() override;

  StatusOr<Allocation> Allocate(uint64_t bytes, int stream) override;
  Status Free(void* ptr) override;
  void EmptyCache() override;
  AllocatorStats stats() const override;
  void ResetPeaks() override;
  std::string_view name() const override { return "stitching"; }

 private:
  // stitching_allocator.cc
  StatusOr<Allocation> AllocateSmall(uint64_t bytes, int stream) KEEL_REQUIRES(mu_);
  StatusOr<Allocation> AllocateLarge(uint64_t bytes, int stream) KEEL_REQUIRES(mu_);
  Allocation TakeBlock(Block* b, uint64_t size, uint64_t bytes) KEEL_REQUIRES(mu_);
  StatusOr<Allocation> NewLargeSegment(uint64_t size, uint64_t bytes, int stream)
      KEEL_REQUIRES(mu_);
  Block* AddLargeSegment(std::unique_ptr<Segment> seg) KEEL_REQUIRES(mu_);
  std::optional<Allocation> ReallocShortfall(uint64_t block, uint64_t size, uint64_t bytes,
                                             int stream) KEEL_REQUIRES(mu_);
  uint64_t AdoptFreeSmallSegments(int stream, uint64_t need) KEEL_REQUIRES(mu_);
  StatusOr<std::unique_ptr<Segment>> NewSegment(uint64_t seg_bytes, int stream, bool small)
      KEEL_REQUIRES(mu_);
  void FreeBlock(Block* b) KEEL_REQUIRES(mu_);
  void ReleaseCached() KEEL_REQUIRES(mu_);
  bool ReleaseLargeSegment(Segment* seg) KEEL_REQUIRES(mu_);
  Status OutOfMemoryError(uint64_t bytes, uint64_t size, int stream) KEEL_REQUIRES(mu_);

  // stitched_blocks.cc
  void SetUsed(const Block* b, bool used) KEEL_REQUIRES(mu_);
  void Reclassify(Stitched* s) KEEL_REQUIRES(mu_);
  bool AllChunksFree(const Stitched* s) const KEEL_REQUIRES(mu_);
  // The whole chunks inside block b, as [first, end) chunk indices of its segment.
  std::pair<size_t, size_t> WholeChunks(const Block* b) const;
  uint64_t FreeChunkBytes(int stream) const KEEL_REQUIRES(mu_);
  Stitched* BestFitStitched(int stream, uint64_t size) const KEEL_REQUIRES(mu_);
  StatusOr<Allocation> ReuseStitched(Stitched* s, uint64_t size, uint64_t bytes) KEEL_REQUIRES(mu_);
  Status ClaimChunks(Stitched* s, size_t n) KEEL_REQUIRES(mu_);
  Status Carve(Segment* seg, uintptr_t addr, uint64_t len, Stitched* s) KEEL_REQUIRES(mu_);
  std::optional<Allocation> TryStitch(uint64_t size, uint64_t bytes, int stream, int attempt)
      KEEL_REQUIRES(mu_);
  StatusOr<uintptr_t> MapStitched(const std::vector<ChunkRef>& chunks, uint64_t size, int attempt)
      KEEL_REQUIRES(mu_);
  void FreeStitched(Stitched* s) KEEL_REQUIRES(mu_);
  void GarbageCollect(uint64_t need, int attempt) KEEL_REQUIRES(mu_);
  void DestroyStitched(Stitched* s) KEEL_REQUIRES(mu_);

  PhysicalMemory* const backend_;
  const AllocatorOptions options_;
  const uint64_t granularity_;
  const uint64_t unit_;  // stitched blocks round to this: 2 MiB, or the granularity if larger
  const uint64_t large_round_;  // primary blocks > 1 MiB round to this: unit_ or 512 B
  mutable Mutex mu_;
  std::map<uintptr_t, std::unique_ptr<Segment>> segments_ KEEL_GUARDED_BY(mu_);
  std::unordered_map<uintptr_t, Block*> live_ KEEL_GUARDED_BY(mu_);  // primary allocations
  BlockPool small_pool_ KEEL_GUARDED_BY(mu_);
  BlockPool large_pool_ KEEL_GUARDED_BY(mu_);
  // Node-based: SegmentChunks addresses stay valid as the map grows (ChunkRef holds them).
  std::unordered_map<const Segment*, SegmentChunks> seg_chunks_ KEEL_GUARDED_BY(mu_);
  std::map<uintptr_t, std::unique_ptr<Stitched>> stitched_ KEEL_GUARDED_BY(mu_);
  std::set<Stitched*, StitchedOrder> intact_ KEEL_GUARDED_BY(mu_);  // free, all chunks free
  std::set<Stitched*> fragmented_ KEEL_GUARDED_BY(mu_);  // free, some chunk in use elsewhere
  uint64_t stitched_since_gc_ KEEL_GUARDED_BY(mu_) = 0;
  uint64_t tick_ KEEL_GUARDED_BY(mu_) = 0;
  AllocatorStats stats_ KEEL_GUARDED_BY(mu_);
};

}  // namespace keel::mem::internal

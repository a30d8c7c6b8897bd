// Blocks, segments and best-fit pools shared by the three allocator policies.
//
// A Segment is one reserved virtual range with chunks mapped over [base, base + mapped); it
// owns its Blocks, which tile the mapped part in address order. A BlockPool holds the free
// blocks of one pool ordered by (stream, size, address), PyTorch's order, so BestFit is one
// lower_bound. SplitBlock / MergeFree implement the split and coalesce steps; MapChunks /
// UnmapChunks talk to the backend and keep the map/unmap counters.
// Thread-safety: none; each allocator holds its mutex around all of this.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "keel/common/status.h"
#include "keel/mem/allocator.h"
#include "keel/mem/physical_memory.h"

namespace keel::mem::internal {

// PyTorch's constants (c10/cuda/CUDACachingAllocator.cpp), shared by all policies.
constexpr uint64_t kMinBlockSize = 512;         // every request rounds up to this
constexpr uint64_t kSmallSize = 1ull << 20;     // largest "small" request
constexpr uint64_t kSmallBuffer = 2ull << 20;   // small-pool segment size
constexpr uint64_t kLargeBuffer = 20ull << 20;  // large segment for requests < kMinLargeAlloc
constexpr uint64_t kMinLargeAlloc = 10ull << 20;
constexpr uint64_t kRoundLarge = 2ull << 20;  // larger segments round to this

inline uint64_t RoundUp(uint64_t n, uint64_t unit) { return (n + unit - 1) / unit * unit; }

struct Segment;

struct Block {
  uintptr_t addr = 0;
  uint64_t size = 0;
  int stream = 0;
  bool allocated = false;
  uint64_t requested = 0;      // caller's bytes while allocated
  Segment* segment = nullptr;  // owner
  void* claimed_by = nullptr;  // stitching: the stitched block using this one
};

struct Segment {
  uintptr_t base = 0;
  uint64_t reserved = 0;  // virtual bytes
  uint64_t mapped = 0;    // bytes mapped from base
  int stream = 0;
  bool small = false;
  std::vector<ChunkId> chunks;                         // chunk i at base + i * granularity
  std::map<uintptr_t, std::unique_ptr<Block>> blocks;  // tiles [base, base + mapped)

  Block* Prev(const Block* b) const;
  Block* Next(const Block* b) const;
  // The block covering `address`, or nullptr.
  Block* Containing(uintptr_t address) const;
};

struct BlockOrder {
  bool operator()(const Block* a, const Block* b) const;
};

class BlockPool {
 public:
  // The smallest free block on `stream` of at least `size` bytes. With a split limit
  // (max_split_size, 0 = none), PyTorch's rules: a request below it never takes a block at or
  // above it, and a request at or above it takes a block at most kLargeBuffer larger.
  Block* BestFit(int stream, uint64_t size, uint64_t max_split) const;
  void Insert(Block* b) { set_.insert(b); }
  void Erase(Block* b) { set_.erase(b); }
  bool empty() const { return set_.empty(); }
  const std::set<Block*, BlockOrder>& blocks() const { return set_; }

 private:
  std::set<Block*, BlockOrder> set_;
};

// Shrinks `b` to `size` bytes and returns the new free block holding the rest (same segment
// and stream; not in any pool).
Block* SplitBlock(Block* b, uint64_t size);
// Joins `b` with its free, unclaimed neighbours (erasing them from `pool`); returns the
// surviving block. `b` must be free and not in the pool.
Block* MergeFree(Block* b, BlockPool* pool);
// PyTorch's split rule: small blocks split when >= kMinBlockSize remains, large ones when the
// block is below max_split (0 = no limit) and more than kSmallSize remains.
bool ShouldSplit(const Block& b, uint64_t size, bool small, uint64_t max_split);

// Creates and maps chunks over [seg->base + seg->mapped, + bytes) and grows seg->mapped. On
// failure everything done by this call is undone and the error returned.
Status MapChunks(PhysicalMemory* backend, Segment* seg, uint64_t bytes, AllocatorStats* stats);
// Unmaps and releases the last `bytes` of seg's mapped range.
Status UnmapChunks(PhysicalMemory* backend, Segment* seg, uint64_t bytes, AllocatorStats* stats);
// Reserves `reserve` bytes and maps the first `map` of them as one Segment with a single free
// block; undone on failure.
StatusOr<std::unique_ptr<Segment>> CreateSegment(PhysicalMemory* backend, uint64_t reserve,
                                                 uint64_t map, int stream, bool small,
                                                 AllocatorStats* stats);
// Unmaps, releases and frees a whole segment (its blocks must all be free).
Status DestroySegment(PhysicalMemory* backend, Segment* seg, AllocatorStats* stats);

// Stats bookkeeping with peaks.
void AddActive(AllocatorStats* s, uint64_t active, uint64_t requested);
void SubActive(AllocatorStats* s, uint64_t active, uint64_t requested);
void AddReserved(AllocatorStats* s, uint64_t bytes);
void ResetPeaks(AllocatorStats* s);

// Argument checks shared by every policy's Allocate.
Status CheckRequest(uint64_t bytes, int stream);
// The out-of-memory error: requested, active, reserved, capacity and what to change.
Status OutOfMemory(std::string_view policy, uint64_t bytes, uint64_t rounded, int stream,
                   const AllocatorStats& stats, const PhysicalMemory& backend,
                   std::string_view advice);
Status UnknownPointer(std::string_view policy, const void* ptr);

// Live blocks by address, as the caching and expandable policies keep them.
using LiveBlocks = std::unordered_map<uintptr_t, Block*>;
// Hands out free block `b` (in no pool) for a request of `bytes` rounded to `size`: the rest
// is split off into `pool` when ShouldSplit allows, and the block is recorded live and in the
// stats.
Allocation HandOut(Block* b, uint64_t size, uint64_t bytes, bool small, uint64_t max_split,
                   BlockPool* pool, LiveBlocks* live, AllocatorStats* stats);
// Takes back the live block at `ptr` (UnknownPointer if there is none): out of the stats,
// merged with its free neighbours into its segment's pool.
Status TakeBack(std::string_view policy, void* ptr, LiveBlocks* live, BlockPool* small_pool,
                BlockPool* large_pool, AllocatorStats* stats);

}  // namespace keel::mem::internal

// Blocks, segments and best-fit pools shared by the allocator policies (see block_pool.h).
#include "keel/mem/block_pool.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "keel/mem/backend_ledger.h"

namespace keel::mem::internal {

Block* Segment::Prev(const Block* b) const {
  auto it = blocks.find(b->addr);
  if (it == blocks.begin()) return nullptr;
  return std::prev(it)->second.get();
}

Block* Segment::Next(const Block* b) const {
  auto it = blocks.find(b->addr);
  if (it == blocks.end() || ++it == blocks.end()) return nullptr;
  return it->second.get();
}

Block* Segment::Containing(uintptr_t address) const {
  auto it = blocks.upper_bound(address);
  if (it == blocks.begin()) return nullptr;
  Block* b = std::prev(it)->second.get();
  return address < b->addr + b->size ? b : nullptr;
}

bool BlockOrder::operator()(const Block* a, const Block* b) const {
  return std::tie(a->stream, a->size, a->addr) < std::tie(b->stream, b->size, b->addr);
}

Block* BlockPool::BestFit(int stream, uint64_t size, uint64_t max_split) const {
  Block key;
  key.stream = stream;
  key.size = size;
  auto it = set_.lower_bound(&key);
  if (it == set_.end() || (*it)->stream != stream) return nullptr;
  Block* b = *it;
  if (max_split != 0) {
    if (size < max_split && b->size >= max_split) return nullptr;
    if (size >= max_split && b->size >= size + kLargeBuffer) return nullptr;
  }
  return b;
}

Block* SplitBlock(Block* b, uint64_t size) {
  auto rest = std::make_unique<Block>();
  rest->addr = b->addr + size;
  rest->size = b->size - size;
  rest->stream = b->stream;
  rest->segment = b->segment;
  b->size = size;
  Block* raw = rest.get();
  b->segment->blocks.emplace(raw->addr, std::move(rest));
  return raw;
}

Block* MergeFree(Block* b, BlockPool* pool) {
  Segment* seg = b->segment;
  auto mergeable = [](const Block* n) {
    return n != nullptr && !n->allocated && n->claimed_by == nullptr;
  };
  if (Block* next = seg->Next(b); mergeable(next)) {
    pool->Erase(next);
    b->size += next->size;
    seg->blocks.erase(next->addr);
  }
  if (Block* prev = seg->Prev(b); mergeable(prev)) {
    pool->Erase(prev);
    prev->size += b->size;
    seg->blocks.erase(b->addr);
    b = prev;
  }
  return b;
}

bool ShouldSplit(const Block& b, uint64_t size, bool small, uint64_t max_split) {
  uint64_t remaining = b.size - size;
  if (small) return remaining >= kMinBlockSize;
  return (max_split == 0 || b.size < max_split) && remaining > kSmallSize;
}

Status MapChunks(PhysicalMemory* backend, Segment* seg, uint64_t bytes, AllocatorStats* stats) {
  const uint64_t g = backend->granularity();
  const size_t first = seg->chunks.size();
  Status status;
  for (uint64_t off = 0; off < bytes; off += g) {
    StatusOr<ChunkId> chunk = backend->CreateChunk();
    if (!chunk.ok()) {
      status = chunk.status();
      break;
    }
    status = backend->Map(seg->base + seg->mapped + off, *chunk);
    if (!status.ok()) {
      (void)backend->ReleaseChunk(*chunk);
      break;
    }
    seg->chunks.push_back(*chunk);
    ++stats->map_count;
  }
  if (!status.ok()) {
    // Undo this call's chunks, newest first; the segment is as it was.
    while (seg->chunks.size() > first) {
      uintptr_t addr = seg->base + seg->mapped + (seg->chunks.size() - first - 1) * g;
      (void)backend->Unmap(addr);
      (void)backend->ReleaseChunk(seg->chunks.back());
      seg->chunks.pop_back();
      ++stats->unmap_count;
    }
    return status;
  }
  seg->mapped += bytes;
  AddReserved(stats, bytes);
  return OkStatus();
}

Status UnmapChunks(PhysicalMemory* backend, Segment* seg, uint64_t bytes, AllocatorStats* stats) {
  const uint64_t g = backend->granularity();
  Status first_error;
  for (uint64_t done = 0; done < bytes; done += g) {
    seg->mapped -= g;
    Status s = backend->Unmap(seg->base + seg->mapped);
    if (s.ok()) s = backend->ReleaseChunk(seg->chunks.back());
    if (!s.ok() && first_error.ok()) first_error = s;
    seg->chunks.pop_back();
    ++stats->unmap_count;
    stats->reserved_bytes -= g;
  }
  return first_error;
}

StatusOr<std::unique_ptr<Segment>> CreateSegment(PhysicalMemory* backend, uint64_t reserve,
                                                 uint64_t map, int stream, bool small,
                                                 AllocatorStats* stats) {
  KEEL_ASSIGN_OR_RETURN(uintptr_t base, backend->Reserve(reserve));
  auto seg = std::make_unique<Segment>();
  seg->base = base;
  seg->reserved = reserve;
  seg->stream = stream;
  seg->small = small;
  if (Status s = MapChunks(backend, seg.get(), map, stats); !s.ok()) {
    (void)backend->Free(base, reserve);
    return s;
  }
  if (map > 0) {
    auto b = std::make_unique<Block>();
    b->addr = base;
    b->size = map;
    b->stream = stream;
    b->segment = seg.get();
    seg->blocks.emplace(base, std::move(b));
  }
  return seg;
}

Status DestroySegment(PhysicalMemory* backend, Segment* seg, AllocatorStats* stats) {
  Status s = UnmapChunks(backend, seg, seg->mapped, stats);
  Status f = backend->Free(seg->base, seg->reserved);
  seg->blocks.clear();
  return s.ok() ? f : s;
}

void AddActive(AllocatorStats* s, uint64_t active, uint64_t requested) {
  s->active_bytes += active;
  s->requested_bytes += requested;
  s->peak_active_bytes = std::max(s->peak_active_bytes, s->active_bytes);
  s->peak_requested_bytes = std::max(s->peak_requested_bytes, s->requested_bytes);
  ++s->alloc_count;
}

void SubActive(AllocatorStats* s, uint64_t active, uint64_t requested) {
  s->active_bytes -= active;
  s->requested_bytes -= requested;
  ++s->free_count;
}

void AddReserved(AllocatorStats* s, uint64_t bytes) {
  s->reserved_bytes += bytes;
  s->peak_reserved_bytes = std::max(s->peak_reserved_bytes, s->reserved_bytes);
}

void ResetPeaks(AllocatorStats* s) {
  s->peak_active_bytes = s->active_bytes;
  s->peak_requested_bytes = s->requested_bytes;
  s->peak_reserved_bytes = s->reserved_bytes;
}

Status CheckRequest(uint64_t bytes, int stream) {
  if (bytes == 0) return InvalidArgumentError("Allocate: size must be > 0 bytes");
  if (bytes > (1ull << 56)) {
    return InvalidArgumentError("Allocate: " + std::to_string(bytes) +
                                " bytes is beyond any device (more than 64 PiB)");
  }
  if (stream < 0) {
    return InvalidArgumentError("Allocate: stream " + std::to_string(stream) +
                                " is negative; streams are numbered from 0");
  }
  return OkStatus();
}

Status OutOfMemory(std::string_view policy, uint64_t bytes, uint64_t rounded, int stream,
                   const AllocatorStats& stats, const PhysicalMemory& backend,
                   std::string_view advice) {
  const uint64_t cached = stats.reserved_bytes - std::min(stats.reserved_bytes, stats.active_bytes);
  return ResourceExhaustedError(
      std::string(policy) + " allocator out of memory: requested " + FormatBytes(bytes) +
      " (rounded to " + FormatBytes(rounded) + ") on stream " + std::to_string(stream) +
      "; active " + FormatBytes(stats.active_bytes) + ", reserved " +
      FormatBytes(stats.reserved_bytes) + " (" + FormatBytes(cached) +
      " of it cached but unusable for this request), capacity " + FormatBytes(backend.capacity()) +
      " (" + std::string(backend.name()) + " backend). " + std::string(advice));
}

Status UnknownPointer(std::string_view policy, const void* ptr) {
  return InvalidArgumentError(std::string(policy) + " allocator: Free of " +
                              FormatAddress(reinterpret_cast<uintptr_t>(ptr)) +
                              ", which is not a live allocation (unknown or already freed)");
}

Allocation HandOut(Block* b, uint64_t size, uint64_t bytes, bool small, uint64_t max_split,
                   BlockPool* pool, LiveBlocks* live, AllocatorStats* stats) {
  if (ShouldSplit(*b, size, small, max_split)) pool->Insert(SplitBlock(b, size));
  b->allocated = true;
  b->requested = bytes;
  (*live)[b->addr] = b;
  AddActive(stats, b->size, bytes);
  return Allocation{reinterpret_cast<void*>(b->addr), b->size};
}

Status TakeBack(std::string_view policy, void* ptr, LiveBlocks* live, BlockPool* small_pool,
                BlockPool* large_pool, AllocatorStats* stats) {
  auto it = live->find(reinterpret_cast<uintptr_t>(ptr));
  if (it == live->end()) return UnknownPointer(policy, ptr);
  Block* b = it->second;
  live->erase(it);
  SubActive(stats, b->size, b->requested);
  b->allocated = false;
  b->requested = 0;
  BlockPool* pool = b->segment->small ? small_pool : large_pool;
  pool->Insert(MergeFree(b, pool));
  return OkStatus();
}

}  // namespace keel::mem::internal

// keel::mem — allocator policies over a physical-memory backend (GLake/GMLake, docs/mem.md).
//
// A PhysicalMemory backend (physical_memory.h) hands out fixed-size chunks (2 MiB by default)
// and maps them into reserved virtual ranges. An Allocator is one policy over a backend:
//
//   caching     PyTorch's documented CUDA caching allocator (512 B rounding, small pool for
//               requests <= 1 MiB in 2 MiB segments, large pool, best fit, block splitting,
//               20 MiB segments below 10 MiB requests), one physical segment per cudaMalloc.
//   expandable  PyTorch's expandable segments: one growing virtual range per (stream, pool),
//               pages mapped at its end, whole empty pages unmapped on EmptyCache/OOM.
//   stitching   GMLake: 2 MiB chunks; best fit -> cached stitched block -> stitch free blocks
//               into a second mapping -> (reAlloc) create only the shortfall and stitch ->
//               new segment -> free the cache and retry -> OOM.
//
//   auto backend = keel::mem::MakeSimulatedMemory({.capacity_bytes = 80_GiB});
//   KEEL_ASSIGN_OR_RETURN(auto alloc, keel::mem::MakeAllocator("stitching", backend.get(), {}));
//   KEEL_ASSIGN_OR_RETURN(keel::mem::Allocation a, alloc->Allocate(64 << 20, /*stream=*/0));
//   ... a.ptr is usable (host backend: really writable memory) ...
//   KEEL_RETURN_IF_ERROR(alloc->Free(a.ptr));
//
// Thread-safety: an Allocator is safe to call from several threads (one internal mutex).
// Ownership: the allocator does not own the backend; the backend must outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "keel/common/status.h"

namespace keel::mem {

class PhysicalMemory;

// Counters every policy keeps. "active" = bytes of live blocks as the policy rounded them
// (what PyTorch reports as allocated); "requested" = the callers' sizes; "reserved" = physical
// bytes the allocator holds from the backend (stitched views add nothing). Peaks are since
// construction or the last ResetPeaks().
struct AllocatorStats {
  uint64_t requested_bytes = 0, peak_requested_bytes = 0;
  uint64_t active_bytes = 0, peak_active_bytes = 0;
  uint64_t reserved_bytes = 0, peak_reserved_bytes = 0;
  uint64_t alloc_count = 0, free_count = 0;
  uint64_t segment_count = 0;  // physical segments (caching), mapped pages (expandable)
  uint64_t map_count = 0, unmap_count = 0;        // backend map/unmap calls
  uint64_t stitch_count = 0, stitched_bytes = 0;  // stitching only
  uint64_t stitched_reuse_count = 0;              // allocations served by a cached stitched block
  uint64_t gc_count = 0;                          // stitched-block garbage collections
  uint64_t empty_cache_count = 0;                 // internal "free the cache and retry" passes
  uint64_t oom_count = 0;
  // peak_active / peak_reserved (1.0 when nothing was reserved).
  double utilization() const;
};

struct AllocatorOptions {
  // stitching: smallest request that may be stitched (GMLake's fragLimit).
  uint64_t frag_limit_bytes = 512ull << 20;
  // stitching: a cached stitched block is reused only if <= request * reuse_limit.
  double reuse_limit = 10.0;
  // stitching: total stitched bytes that trigger a full GC of stitched blocks (GMLake autoGC).
  uint64_t auto_gc_bytes = 1000ull << 30;
  // stitching: 0 = stitch before creating new memory, 1 = stitch only when creation fails.
  int defrag_level = 0;
  // caching/stitching: blocks >= this are never split (PyTorch max_split_size_mb); 0 = no limit.
  uint64_t max_split_size_bytes = 0;
  // expandable: page size of the large pool (PyTorch: 20 MiB).
  uint64_t expandable_page_bytes = 20ull << 20;
  // stitching: GMLake's reAlloc (paper S4). 1 = when no free block, cached stitched block or
  // stitch covers a request >= frag_limit, create only the shortfall (the request minus the
  // stream's free whole chunks) and stitch it with those free blocks; 0 = create a segment of
  // the full request (GMLake's default). Applies with defrag_level 0 only (1 stitches nothing
  // before creation fails). Default 1 (Note [Stitching defaults], docs/mem.md).
  int realloc_level = 1;
  // stitching: true = GMLake's rounding of every request > 1 MiB up to whole 2 MiB chunks;
  // false = PyTorch's 512 B for primary blocks (stitched blocks are whole chunks either way).
  // Default false (Note [Stitching defaults]).
  bool chunk_rounding = false;
  Status Validate() const;
};

struct Allocation {
  void* ptr = nullptr;
  uint64_t size = 0;  // bytes the policy reserved for this block (>= requested)
};

class Allocator {
 public:
  virtual ~Allocator() = default;

  // A block of at least `bytes` (> 0) on `stream` (>= 0). Out of memory returns
  // ResourceExhausted with a message stating requested, active, reserved, the backend's
  // capacity and what to change; nothing is leaked and the allocator stays usable.
  virtual StatusOr<Allocation> Allocate(uint64_t bytes, int stream) = 0;
  // Frees a pointer returned by Allocate. Unknown or already-freed pointers: InvalidArgument.
  virtual Status Free(void* ptr) = 0;
  // Returns every cached (free) byte it can to the backend (torch.cuda.empty_cache()).
  virtual void EmptyCache() = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void ResetPeaks() = 0;
  virtual std::string_view name() const = 0;
};

// policy: "caching", "expandable" or "stitching"; anything else is InvalidArgument naming the
// three. `backend` is borrowed.
StatusOr<std::unique_ptr<Allocator>> MakeAllocator(std::string_view policy, PhysicalMemory* backend,
                                                   const AllocatorOptions& options);

}  // namespace keel::mem

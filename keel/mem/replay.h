// Trace replay: runs an allocation trace through one allocator policy on a backend and
// measures what GMLake's paper measures (docs/mem.md, "Replay").
//
//   KEEL_ASSIGN_OR_RETURN(Trace t, ReadTrace("bench/traces/gpt.trace.gz"));
//   ReplayOptions o;
//   o.policy = "stitching";
//   KEEL_ASSIGN_OR_RETURN(ReplayResult r, Replay(t, o));
//   // r.utilization = peak active / peak reserved
//
// Events are applied in trace order, one Allocate per `a` and one Free per `f`; timestamps
// only order them (the replay runs as fast as it can). An allocation the allocator refuses
// with ResourceExhausted is counted as an OOM, and that block's later free is skipped; the
// replay goes on. Any other allocator error ends the replay with that error.
// Thread-safety: Replay is a free function; each call builds its own backend and allocator.
#pragma once

#include <cstdint>
#include <string>

#include "keel/common/status.h"
#include "keel/mem/allocator.h"
#include "keel/mem/trace.h"

namespace keel::mem {

struct ReplayOptions {
  std::string policy = "stitching";   // caching | expandable | stitching
  std::string backend = "simulated";  // simulated (accounting only) | host (memfd + mmap)
  // Backend capacity; 0 = automatic: 80 GiB simulated, host max(1 GiB, 2 x the trace's peak
  // live bytes) rounded up to the chunk size.
  uint64_t capacity_bytes = 0;
  uint64_t chunk_bytes = 2ull << 20;
  AllocatorOptions allocator;
  Status Validate() const;
};

// Latency of one kind of Allocate call, in nanoseconds.
struct LatencyStats {
  uint64_t count = 0;
  double median_ns = 0, p99_ns = 0, total_ns = 0;
};

struct ReplayResult {
  std::string policy, backend;
  uint64_t capacity_bytes = 0;
  uint64_t events = 0, allocs = 0, frees = 0;
  uint64_t trace_peak_live_bytes = 0;  // the ideal: peak of live requested bytes
  uint64_t peak_active_bytes = 0, peak_reserved_bytes = 0;
  double utilization = 1.0;    // peak active / peak reserved
  double fragmentation = 0.0;  // 1 - utilization
  uint64_t map_count = 0, unmap_count = 0;
  uint64_t stitch_count = 0, stitched_bytes = 0, stitched_reuse_count = 0, gc_count = 0;
  uint64_t oom_count = 0;
  std::string first_oom;  // the allocator's message for the first OOM, if any
  // Allocate latency: every call, and split by how it was served (classified from the
  // allocator's counters around the call): `cached` took no new memory and stitched nothing;
  // `stitched` built or reused a stitched block; `grew` reserved or mapped new memory.
  LatencyStats alloc_all, alloc_cached, alloc_stitched, alloc_grew;
  double free_total_ns = 0;
  double wall_ms = 0;
};

StatusOr<ReplayResult> Replay(const Trace& trace, const ReplayOptions& options);

}  // namespace keel::mem

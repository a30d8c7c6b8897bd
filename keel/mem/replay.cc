// Trace replay (replay.h): one backend + one allocator per call, events in order, latency
// measured around each Allocate with the steady clock.
#include "keel/mem/replay.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "keel/mem/physical_memory.h"

namespace keel::mem {
namespace {

using Clock = std::chrono::steady_clock;

LatencyStats Summarize(std::vector<double>* ns) {
  LatencyStats s;
  s.count = ns->size();
  if (ns->empty()) return s;
  for (double v : *ns) s.total_ns += v;
  auto at = [&](double q) {
    const size_t k =
        std::min(ns->size() - 1, static_cast<size_t>(std::llround(q * (ns->size() - 1))));
    std::nth_element(ns->begin(), ns->begin() + static_cast<std::ptrdiff_t>(k), ns->end());
    return (*ns)[k];
  };
  s.median_ns = at(0.5);
  s.p99_ns = at(0.99);
  return s;
}

StatusOr<std::unique_ptr<PhysicalMemory>> MakeBackend(const ReplayOptions& o, uint64_t capacity) {
  if (o.backend == "simulated") {
    return MakeSimulatedMemory({.chunk_bytes = o.chunk_bytes, .capacity_bytes = capacity});
  }
  return MakeHostMemory({.chunk_bytes = o.chunk_bytes, .capacity_bytes = capacity});
}

uint64_t AutoCapacity(const ReplayOptions& o, const TraceSummary& s) {
  if (o.capacity_bytes != 0) return o.capacity_bytes;
  if (o.backend == "simulated") return 80ull << 30;
  const uint64_t want = std::max<uint64_t>(1ull << 30, 2 * s.peak_live_bytes);
  return (want + o.chunk_bytes - 1) / o.chunk_bytes * o.chunk_bytes;
}

}  // namespace

Status ReplayOptions::Validate() const {
  if (policy != "caching" && policy != "expandable" && policy != "stitching") {
    return InvalidArgumentError(
        fmt::format("unknown allocator '{}': use caching, expandable or stitching", policy));
  }
  if (backend != "simulated" && backend != "host") {
    return InvalidArgumentError(
        fmt::format("unknown backend '{}': use simulated or host", backend));
  }
  if (chunk_bytes == 0 || chunk_bytes % 4096 != 0) {
    return InvalidArgumentError(
        fmt::format("chunk size {} must be a positive multiple of 4096", chunk_bytes));
  }
  if (capacity_bytes != 0 && capacity_bytes < chunk_bytes) {
    return InvalidArgumentError(
        fmt::format("capacity {} is below one chunk ({} bytes)", capacity_bytes, chunk_bytes));
  }
  return allocator.Validate();
}

StatusOr<ReplayResult> Replay(const Trace& trace, const ReplayOptions& options) {
  KEEL_RETURN_IF_ERROR(options.Validate());
  const TraceSummary summary = keel::mem::Summarize(trace);
  ReplayResult r;
  r.policy = options.policy;
  r.backend = options.backend;
  r.capacity_bytes = AutoCapacity(options, summary);
  r.trace_peak_live_bytes = summary.peak_live_bytes;
  KEEL_ASSIGN_OR_RETURN(std::unique_ptr<PhysicalMemory> backend,
                        MakeBackend(options, r.capacity_bytes));
  KEEL_ASSIGN_OR_RETURN(std::unique_ptr<Allocator> alloc,
                        MakeAllocator(options.policy, backend.get(), options.allocator));

  std::unordered_map<uint64_t, void*> live;
  std::unordered_set<uint64_t> refused;  // ids whose allocation hit OOM
  std::vector<double> all, cached, stitched, grew;
  all.reserve(summary.allocs);
  const auto wall0 = Clock::now();
  for (size_t i = 0; i < trace.events.size(); ++i) {
    const TraceEvent& e = trace.events[i];
    ++r.events;
    if (e.kind == TraceEvent::Kind::kFree) {
      if (refused.erase(e.id) > 0) continue;
      auto it = live.find(e.id);
      if (it == live.end()) {
        return InvalidArgumentError(fmt::format("trace event {}: free of unknown id {}", i, e.id));
      }
      const auto t0 = Clock::now();
      const Status s = alloc->Free(it->second);
      r.free_total_ns += std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
      if (!s.ok()) return s.WithContext(fmt::format("replaying event {} (free of id {})", i, e.id));
      live.erase(it);
      ++r.frees;
      continue;
    }
    const AllocatorStats before = alloc->stats();
    const auto t0 = Clock::now();
    StatusOr<Allocation> a = alloc->Allocate(e.bytes, e.stream);
    const double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
    if (!a.ok()) {
      if (a.status().code() != StatusCode::kResourceExhausted) {
        return a.status().WithContext(
            fmt::format("replaying event {} (alloc of {} bytes, id {})", i, e.bytes, e.id));
      }
      if (r.oom_count++ == 0) {
        r.first_oom =
            fmt::format("event {} (alloc of {} bytes): {}", i, e.bytes, a.status().message());
      }
      refused.insert(e.id);
      continue;
    }
    live[e.id] = a->ptr;
    ++r.allocs;
    const AllocatorStats after = alloc->stats();
    all.push_back(ns);
    if (after.stitch_count != before.stitch_count ||
        after.stitched_reuse_count != before.stitched_reuse_count) {
      stitched.push_back(ns);
    } else if (after.reserved_bytes > before.reserved_bytes ||
               after.map_count != before.map_count) {
      grew.push_back(ns);
    } else {
      cached.push_back(ns);
    }
  }
  r.wall_ms = std::chrono::duration<double, std::milli>(Clock::now() - wall0).count();
  const AllocatorStats st = alloc->stats();
  r.peak_active_bytes = st.peak_active_bytes;
  r.peak_reserved_bytes = st.peak_reserved_bytes;
  r.utilization = st.utilization();
  r.fragmentation = 1.0 - r.utilization;
  r.map_count = st.map_count;
  r.unmap_count = st.unmap_count;
  r.stitch_count = st.stitch_count;
  r.stitched_bytes = st.stitched_bytes;
  r.stitched_reuse_count = st.stitched_reuse_count;
  r.gc_count = st.gc_count;
  r.alloc_all = Summarize(&all);
  r.alloc_cached = Summarize(&cached);
  r.alloc_stitched = Summarize(&stitched);
  r.alloc_grew = Summarize(&grew);
  // Return every block so the allocator and backend are torn down from a clean state.
  for (const auto& [id, ptr] : live) {
    if (Status s = alloc->Free(ptr); !s.ok()) return s.WithContext("freeing blocks at the end");
  }
  return r;
}

}  // namespace keel::mem

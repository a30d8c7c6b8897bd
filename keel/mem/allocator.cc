// MakeAllocator, option validation and the stats helpers of allocator.h.
#include "keel/mem/allocator.h"

#include <string>

#include "keel/mem/physical_memory.h"
#include "keel/mem/policies.h"

namespace keel::mem {

double AllocatorStats::utilization() const {
  if (peak_reserved_bytes == 0) return 1.0;
  return static_cast<double>(peak_active_bytes) / static_cast<double>(peak_reserved_bytes);
}

Status AllocatorOptions::Validate() const {
  if (frag_limit_bytes == 0) {
    return InvalidArgumentError("allocator options: frag_limit_bytes must be > 0");
  }
  if (!(reuse_limit >= 1.0)) {
    return InvalidArgumentError("allocator options: reuse_limit " + std::to_string(reuse_limit) +
                                " must be >= 1 (a cached stitched block is at least the request)");
  }
  if (auto_gc_bytes == 0) {
    return InvalidArgumentError("allocator options: auto_gc_bytes must be > 0");
  }
  if (defrag_level != 0 && defrag_level != 1) {
    return InvalidArgumentError("allocator options: defrag_level " + std::to_string(defrag_level) +
                                " must be 0 or 1");
  }
  if (realloc_level != 0 && realloc_level != 1) {
    return InvalidArgumentError("allocator options: realloc_level " +
                                std::to_string(realloc_level) + " must be 0 or 1");
  }
  if (expandable_page_bytes == 0) {
    return InvalidArgumentError("allocator options: expandable_page_bytes must be > 0");
  }
  return OkStatus();
}

StatusOr<std::unique_ptr<Allocator>> MakeAllocator(std::string_view policy, PhysicalMemory* backend,
                                                   const AllocatorOptions& options) {
  if (backend == nullptr) return InvalidArgumentError("MakeAllocator: backend is null");
  KEEL_RETURN_IF_ERROR(options.Validate());
  if (policy == "caching") return internal::NewCachingAllocator(backend, options);
  if (policy == "expandable") return internal::NewExpandableAllocator(backend, options);
  if (policy == "stitching") return internal::NewStitchingAllocator(backend, options);
  return InvalidArgumentError("unknown allocator policy '" + std::string(policy) +
                              "'; choose caching, expandable or stitching");
}

}  // namespace keel::mem

// The three policies' factories, behind MakeAllocator (allocator.h). Each takes a borrowed
// backend and validated options.
#pragma once

#include <memory>

#include "keel/mem/allocator.h"
#include "keel/mem/physical_memory.h"

namespace keel::mem::internal {

std::unique_ptr<Allocator> NewCachingAllocator(PhysicalMemory* backend,
                                               const AllocatorOptions& options);
std::unique_ptr<Allocator> NewExpandableAllocator(PhysicalMemory* backend,
                                                  const AllocatorOptions& options);
std::unique_ptr<Allocator> NewStitchingAllocator(PhysicalMemory* backend,
                                                 const AllocatorOptions& options);

}  // namespace keel::mem::internal

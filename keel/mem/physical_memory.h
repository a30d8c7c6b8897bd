// PhysicalMemory: the backend seam under keel's allocators (docs/mem.md, "Backends").
//
// The calls follow the CUDA driver's virtual-memory API, one to one:
//
//   CreateChunk      cuMemCreate           a physical chunk of granularity() bytes
//   ReleaseChunk     cuMemRelease          freed once no mapping uses it
//   Reserve          cuMemAddressReserve   a virtual range, multiple of granularity()
//   Free             cuMemAddressFree      (the range must be fully unmapped)
//   Map              cuMemMap+SetAccess    one chunk at reserved_base + offset, read/write
//   Unmap            cuMemUnmap            one chunk's mapping; the reservation stays
//
// A chunk may be mapped at several addresses at once (that is what a stitched block is).
// Backends:
//   MakeHostMemory       memfd + mmap(MAP_FIXED|MAP_SHARED): real, writable memory; a chunk
//                        mapped twice shows the same bytes at both addresses.
//   MakeSimulatedMemory  pure accounting (no memory behind the addresses; never dereference):
//                        for replaying large traces fast and deterministically.
//   MakeCudaMemory       the CUDA driver VMM API, libcuda loaded at run time; Unavailable
//                        (with the reason) where there is no driver or GPU.
//
// Every backend enforces: capacity (CreateChunk beyond it is ResourceExhausted), granularity
// alignment, no double map of one address, no Free of a range with live mappings — violations
// are FailedPrecondition/InvalidArgument, never a crash. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "keel/common/status.h"

namespace keel::mem {

using ChunkId = uint64_t;

struct BackendCounters {
  uint64_t chunks_live = 0, peak_chunks_live = 0;
  uint64_t creates = 0, releases = 0, reserves = 0, frees = 0, maps = 0, unmaps = 0;
};

class PhysicalMemory {
 public:
  virtual ~PhysicalMemory() = default;
  virtual std::string_view name() const = 0;  // "host", "simulated", "cuda"
  virtual uint64_t granularity() const = 0;   // bytes per chunk
  virtual uint64_t capacity() const = 0;      // bytes of chunks that may exist at once

  virtual StatusOr<ChunkId> CreateChunk() = 0;
  virtual Status ReleaseChunk(ChunkId chunk) = 0;
  virtual StatusOr<uintptr_t> Reserve(uint64_t bytes) = 0;
  virtual Status Free(uintptr_t base, uint64_t bytes) = 0;
  virtual Status Map(uintptr_t address, ChunkId chunk) = 0;
  virtual Status Unmap(uintptr_t address) = 0;
  virtual BackendCounters counters() const = 0;
};

struct HostMemoryOptions {
  uint64_t chunk_bytes = 2ull << 20;    // multiple of the page size
  uint64_t capacity_bytes = 1ull << 30;
};
StatusOr<std::unique_ptr<PhysicalMemory>> MakeHostMemory(const HostMemoryOptions& options);

struct SimulatedMemoryOptions {
  uint64_t chunk_bytes = 2ull << 20;
  uint64_t capacity_bytes = 80ull << 30;
};
StatusOr<std::unique_ptr<PhysicalMemory>> MakeSimulatedMemory(
    const SimulatedMemoryOptions& options);

struct CudaMemoryOptions {
  int device = 0;
  uint64_t capacity_bytes = 0;  // 0 = the device's free memory at creation
};
StatusOr<std::unique_ptr<PhysicalMemory>> MakeCudaMemory(const CudaMemoryOptions& options);

}  // namespace keel::mem

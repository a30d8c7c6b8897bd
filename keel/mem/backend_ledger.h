// BackendLedger: the bookkeeping and rule checks every PhysicalMemory backend shares.
//
// The host, simulated and CUDA backends differ only in the calls they make (mmap, nothing,
// cuMem*); which chunks exist, which ranges are reserved and which addresses are mapped is
// the same state with the same rules (physical_memory.h): capacity, granularity alignment,
// no double map, no Free of a range with live mappings, deferred release of a mapped chunk.
// Each mutation comes as a Check* (pure, returns the error) followed by the change, so a
// backend can make its system call in between and leave the ledger untouched if it fails.
// Thread-safety: not thread-safe; the owning backend holds its mutex around every call.
#pragma once

#include <cstdint>
#include <map>
#include <unordered_map>
#include <vector>

#include "keel/common/status.h"
#include "keel/mem/physical_memory.h"

namespace keel::mem::internal {

class BackendLedger {
 public:
  BackendLedger(uint64_t granularity, uint64_t capacity_bytes);

  uint64_t granularity() const { return granularity_; }
  uint64_t capacity() const { return capacity_chunks_ * granularity_; }
  const BackendCounters& counters() const { return counters_; }

  // ResourceExhausted when capacity() bytes of chunks already exist.
  Status CheckCreate() const;
  ChunkId AddChunk(uint64_t payload);  // payload: the backend's handle or slot
  // The chunk's payload; NotFound for ids that were never created or (unless
  // `include_released`) are released.
  StatusOr<uint64_t> Payload(ChunkId chunk, bool include_released = false) const;
  // Marks the chunk released. True when nothing maps it, i.e. the backend must free it now;
  // false when the last Unmap will (RemoveMapping then returns its payload).
  StatusOr<bool> Release(ChunkId chunk);
  // Forgets a chunk the backend has freed.
  void DropChunk(ChunkId chunk);

  Status CheckReserve(uint64_t bytes) const;
  void AddReservation(uintptr_t base, uint64_t bytes);
  Status CheckFree(uintptr_t base, uint64_t bytes) const;
  void RemoveReservation(uintptr_t base);

  Status CheckMap(uintptr_t address, ChunkId chunk) const;
  void AddMapping(uintptr_t address, ChunkId chunk);
  // The chunk mapped at `address`, or FailedPrecondition.
  StatusOr<ChunkId> CheckUnmap(uintptr_t address) const;
  // Removes the mapping. True when the chunk was released and this was its last mapping:
  // the backend frees it now and calls DropChunk.
  bool RemoveMapping(uintptr_t address);

  // For a backend's destructor: every reserved range (base -> bytes), every mapping
  // (address -> chunk) and the payload of every chunk not yet freed.
  const std::map<uintptr_t, uint64_t>& reservations() const { return reservations_; }
  const std::map<uintptr_t, ChunkId>& mappings() const { return mappings_; }
  std::vector<uint64_t> LivePayloads() const;

 private:
  struct Chunk {
    uint64_t payload = 0;
    uint32_t mappings = 0;
    bool released = false;
  };
  // The reservation holding [address, address + bytes), or nullptr.
  const std::pair<const uintptr_t, uint64_t>* Containing(uintptr_t address, uint64_t bytes) const;

  uint64_t granularity_;
  uint64_t capacity_chunks_;
  ChunkId next_id_ = 1;
  std::unordered_map<ChunkId, Chunk> chunks_;
  std::map<uintptr_t, uint64_t> reservations_;
  std::map<uintptr_t, ChunkId> mappings_;
  BackendCounters counters_;
};

// Formats a byte count for messages: "512 B", "2.0 MiB", "1.50 GiB".
std::string FormatBytes(uint64_t bytes);
// "0x7f12a4000000".
std::string FormatAddress(uintptr_t address);

}  // namespace keel::mem::internal

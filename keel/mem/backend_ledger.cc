// BackendLedger: shared chunk/reservation/mapping bookkeeping of the PhysicalMemory backends.
#include "keel/mem/backend_ledger.h"

#include <algorithm>
#include <cstdio>
#include <string>

namespace keel::mem::internal {

BackendLedger::BackendLedger(uint64_t granularity, uint64_t capacity_bytes)
    : granularity_(granularity), capacity_chunks_(capacity_bytes / granularity) {}

Status BackendLedger::CheckCreate() const {
  if (counters_.chunks_live >= capacity_chunks_) {
    return ResourceExhaustedError("physical memory full: " + std::to_string(capacity_chunks_) +
                                  " chunks of " + FormatBytes(granularity_) + " (capacity " +
                                  FormatBytes(capacity()) + ") already exist");
  }
  return OkStatus();
}

ChunkId BackendLedger::AddChunk(uint64_t payload) {
  ChunkId id = next_id_++;
  chunks_[id] = Chunk{.payload = payload};
  ++counters_.creates;
  ++counters_.chunks_live;
  counters_.peak_chunks_live = std::max(counters_.peak_chunks_live, counters_.chunks_live);
  return id;
}

StatusOr<uint64_t> BackendLedger::Payload(ChunkId chunk, bool include_released) const {
  auto it = chunks_.find(chunk);
  if (it == chunks_.end() || (it->second.released && !include_released)) {
    return NotFoundError("chunk " + std::to_string(chunk) + " does not exist or was released");
  }
  return it->second.payload;
}

StatusOr<bool> BackendLedger::Release(ChunkId chunk) {
  auto it = chunks_.find(chunk);
  if (it == chunks_.end() || it->second.released) {
    return InvalidArgumentError("ReleaseChunk: chunk " + std::to_string(chunk) +
                                " does not exist or was already released");
  }
  it->second.released = true;
  ++counters_.releases;
  return it->second.mappings == 0;
}

void BackendLedger::DropChunk(ChunkId chunk) {
  if (chunks_.erase(chunk) > 0) --counters_.chunks_live;
}

Status BackendLedger::CheckReserve(uint64_t bytes) const {
  if (bytes == 0 || bytes % granularity_ != 0) {
    return InvalidArgumentError("Reserve: " + std::to_string(bytes) +
                                " bytes is not a positive multiple of the granularity " +
                                std::to_string(granularity_));
  }
  return OkStatus();
}

void BackendLedger::AddReservation(uintptr_t base, uint64_t bytes) {
  reservations_[base] = bytes;
  ++counters_.reserves;
}

const std::pair<const uintptr_t, uint64_t>* BackendLedger::Containing(uintptr_t address,
                                                                      uint64_t bytes) const {
  auto it = reservations_.upper_bound(address);
  if (it == reservations_.begin()) return nullptr;
  --it;
  if (address + bytes > it->first + it->second) return nullptr;
  return &*it;
}

Status BackendLedger::CheckFree(uintptr_t base, uint64_t bytes) const {
  auto it = reservations_.find(base);
  if (it == reservations_.end() || it->second != bytes) {
    return InvalidArgumentError("Free: no reserved range of " + std::to_string(bytes) +
                                " bytes at " + FormatAddress(base));
  }
  auto m = mappings_.lower_bound(base);
  if (m != mappings_.end() && m->first < base + bytes) {
    return FailedPreconditionError("Free: the range still has live mappings (unmap first)");
  }
  return OkStatus();
}

void BackendLedger::RemoveReservation(uintptr_t base) {
  reservations_.erase(base);
  ++counters_.frees;
}

Status BackendLedger::CheckMap(uintptr_t address, ChunkId chunk) const {
  if (address % granularity_ != 0) {
    return InvalidArgumentError("Map: address is not aligned to the granularity " +
                                std::to_string(granularity_));
  }
  if (Containing(address, granularity_) == nullptr) {
    return InvalidArgumentError("Map: address is not inside a reserved range");
  }
  if (mappings_.count(address) > 0) {
    return FailedPreconditionError("Map: address is already mapped (unmap it first)");
  }
  auto it = chunks_.find(chunk);
  if (it == chunks_.end() || it->second.released) {
    return InvalidArgumentError("Map: chunk " + std::to_string(chunk) +
                                " does not exist or was released");
  }
  return OkStatus();
}

void BackendLedger::AddMapping(uintptr_t address, ChunkId chunk) {
  mappings_[address] = chunk;
  ++chunks_[chunk].mappings;
  ++counters_.maps;
}

StatusOr<ChunkId> BackendLedger::CheckUnmap(uintptr_t address) const {
  auto it = mappings_.find(address);
  if (it == mappings_.end()) return FailedPreconditionError("Unmap: address is not mapped");
  return it->second;
}

bool BackendLedger::RemoveMapping(uintptr_t address) {
  auto it = mappings_.find(address);
  if (it == mappings_.end()) return false;
  Chunk& chunk = chunks_[it->second];
  mappings_.erase(it);
  ++counters_.unmaps;
  return --chunk.mappings == 0 && chunk.released;
}

std::vector<uint64_t> BackendLedger::LivePayloads() const {
  std::vector<uint64_t> out;
  out.reserve(chunks_.size());
  for (const auto& [id, chunk] : chunks_) out.push_back(chunk.payload);
  return out;
}

std::string FormatBytes(uint64_t bytes) {
  char buf[64];
  if (bytes < (1u << 10)) {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
  } else if (bytes < (1ull << 30)) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  } else {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(bytes) / (1ull << 30));
  }
  return buf;
}

std::string FormatAddress(uintptr_t address) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(address));
  return buf;
}

}  // namespace keel::mem::internal

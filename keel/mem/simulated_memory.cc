// The simulated backend: pure accounting, no memory behind the addresses.
//
// Chunks are ids, reservations are fake, increasing, granularity-aligned addresses that are
// never reused, and every rule of physical_memory.h is enforced through the shared
// BackendLedger. It lets the trace replayer run 80 GiB workloads deterministically in
// microseconds per call; never dereference its addresses.
#include <memory>
#include <string>

#include "keel/common/mutex.h"
#include "keel/mem/backend_ledger.h"
#include "keel/mem/physical_memory.h"

namespace keel::mem {
namespace {

// Note [Simulated addresses]
// The first reservation starts at 1 TiB, far from anything a test might compare against, and
// each range is followed by a one-granule gap so that two reservations are never adjacent:
// code that wrongly merges blocks across reservations then shows up as an overlap in tests.
constexpr uintptr_t kFirstAddress = uintptr_t{1} << 40;

class SimulatedMemory final : public PhysicalMemory {
 public:
  SimulatedMemory(uint64_t granularity, uint64_t capacity)
      : granularity_(granularity),
        capacity_(capacity / granularity * granularity),
        ledger_(granularity, capacity),
        next_address_(kFirstAddress) {}

  std::string_view name() const override { return "simulated"; }
  uint64_t granularity() const override { return granularity_; }
  uint64_t capacity() const override { return capacity_; }

  StatusOr<ChunkId> CreateChunk() override {
    MutexLock lock(&mu_);
    KEEL_RETURN_IF_ERROR(ledger_.CheckCreate());
    return ledger_.AddChunk(0);
  }

  Status ReleaseChunk(ChunkId chunk) override {
    MutexLock lock(&mu_);
    KEEL_ASSIGN_OR_RETURN(bool free_now, ledger_.Release(chunk));
    if (free_now) ledger_.DropChunk(chunk);
    return OkStatus();
  }

  StatusOr<uintptr_t> Reserve(uint64_t bytes) override {
    MutexLock lock(&mu_);
    KEEL_RETURN_IF_ERROR(ledger_.CheckReserve(bytes));
    uintptr_t base = next_address_;
    next_address_ += bytes + ledger_.granularity();
    ledger_.AddReservation(base, bytes);
    return base;
  }

  Status Free(uintptr_t base, uint64_t bytes) override {
    MutexLock lock(&mu_);
    KEEL_RETURN_IF_ERROR(ledger_.CheckFree(base, bytes));
    ledger_.RemoveReservation(base);
    return OkStatus();
  }

  Status Map(uintptr_t address, ChunkId chunk) override {
    MutexLock lock(&mu_);
    KEEL_RETURN_IF_ERROR(ledger_.CheckMap(address, chunk));
    ledger_.AddMapping(address, chunk);
    return OkStatus();
  }

  Status Unmap(uintptr_t address) override {
    MutexLock lock(&mu_);
    KEEL_ASSIGN_OR_RETURN(ChunkId chunk, ledger_.CheckUnmap(address));
    if (ledger_.RemoveMapping(address)) ledger_.DropChunk(chunk);
    return OkStatus();
  }

  BackendCounters counters() const override {
    MutexLock lock(&mu_);
    return ledger_.counters();
  }

 private:
  const uint64_t granularity_, capacity_;  // immutable: read without mu_
  mutable Mutex mu_;
  internal::BackendLedger ledger_ KEEL_GUARDED_BY(mu_);
  uintptr_t next_address_ KEEL_GUARDED_BY(mu_);
};

}  // namespace

StatusOr<std::unique_ptr<PhysicalMemory>> MakeSimulatedMemory(
    const SimulatedMemoryOptions& options) {
  if (options.chunk_bytes == 0 || options.chunk_bytes % 4096 != 0) {
    return InvalidArgumentError("simulated memory: chunk_bytes " +
                                std::to_string(options.chunk_bytes) +
                                " must be a positive multiple of 4096");
  }
  if (options.capacity_bytes < options.chunk_bytes) {
    return InvalidArgumentError("simulated memory: capacity_bytes " +
                                std::to_string(options.capacity_bytes) +
                                " is smaller than one chunk; raise it");
  }
  return std::unique_ptr<PhysicalMemory>(
      new SimulatedMemory(options.chunk_bytes, options.capacity_bytes));
}

}  // namespace keel::mem

// The host backend: real, writable memory with the CUDA VMM's shape, from memfd + mmap.
//
// CreateChunk commits a chunk-sized slot of one memfd (fallocate), Reserve takes a PROT_NONE
// anonymous range, Map puts a slot at a reserved address with mmap(MAP_FIXED|MAP_SHARED), so
// a chunk mapped twice shows the same bytes at both addresses (a stitched block's aliasing is
// real here), Unmap lays PROT_NONE back over it and keeps the reservation, and ReleaseChunk
// punches the slot's pages out of the file. glake.md §7 compares the costs with CUDA's.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "keel/common/mutex.h"
#include "keel/mem/backend_ledger.h"
#include "keel/mem/physical_memory.h"

namespace keel::mem {
namespace {

// Note [One memfd, one slot per chunk]
// All chunks live in a single memfd of capacity bytes; chunk k owns the slot at offset
// slot * chunk_bytes while it exists, and freed slots are reused. One fd per chunk would need
// thousands of descriptors for a few GiB (the default RLIMIT_NOFILE is 1024) and a close per
// release; with one file, fallocate commits a slot (Linux otherwise allocates lazily at the
// first touch, where CUDA commits at cuMemCreate) and FALLOC_FL_PUNCH_HOLE gives the pages
// back. ReleaseChunk on a chunk that is still mapped is deferred, as cuMemRelease is: the
// ledger keeps counting it live, and the last Unmap punches the hole.

class HostMemory final : public PhysicalMemory {
 public:
  HostMemory(int fd, uint64_t granularity, uint64_t capacity)
      : fd_(fd),
        granularity_(granularity),
        capacity_(capacity / granularity * granularity),
        ledger_(granularity, capacity) {}

  ~HostMemory() override {
    MutexLock lock(&mu_);
    for (const auto& [base, bytes] : ledger_.reservations()) {
      munmap(reinterpret_cast<void*>(base), bytes);
    }
    close(fd_);
  }

  std::string_view name() const override { return "host"; }
  uint64_t granularity() const override { return granularity_; }
  uint64_t capacity() const override { return capacity_; }

  StatusOr<ChunkId> CreateChunk() override {
    MutexLock lock(&mu_);
    KEEL_RETURN_IF_ERROR(ledger_.CheckCreate());
    uint64_t slot = next_slot_;
    if (!free_slots_.empty()) slot = free_slots_.back();
    off_t offset = static_cast<off_t>(slot * granularity());
    if (fallocate(fd_, 0, offset, static_cast<off_t>(granularity())) != 0) {
      int err = errno;
      if (err == ENOSPC || err == ENOMEM) {
        return ResourceExhaustedError("host memory: committing a chunk failed (" +
                                      ErrnoError(err, "fallocate").message() +
                                      "); the machine is short of memory, lower capacity");
      }
      return ErrnoError(err, "host memory: fallocate of a chunk");
    }
    if (slot == next_slot_) {
      ++next_slot_;
    } else {
      free_slots_.pop_back();
    }
    return ledger_.AddChunk(slot);
  }

  Status ReleaseChunk(ChunkId chunk) override {
    MutexLock lock(&mu_);
    KEEL_ASSIGN_OR_RETURN(bool free_now, ledger_.Release(chunk));
    KEEL_ASSIGN_OR_RETURN(uint64_t slot, ledger_.Payload(chunk, /*include_released=*/true));
    if (free_now) return FreeSlot(chunk, slot);
    return OkStatus();
  }

  StatusOr<uintptr_t> Reserve(uint64_t bytes) override {
    MutexLock lock(&mu_);
    KEEL_RETURN_IF_ERROR(ledger_.CheckReserve(bytes));
    KEEL_ASSIGN_OR_RETURN(uintptr_t base, ReserveAligned(bytes));
    ledger_.AddReservation(base, bytes);
    return base;
  }

  Status Free(uintptr_t base, uint64_t bytes) override {
    MutexLock lock(&mu_);
    KEEL_RETURN_IF_ERROR(ledger_.CheckFree(base, bytes));
    if (munmap(reinterpret_cast<void*>(base), bytes) != 0) {
      return ErrnoError(errno, "host memory: munmap of a reserved range");
    }
    ledger_.RemoveReservation(base);
    return OkStatus();
  }

  Status Map(uintptr_t address, ChunkId chunk) override {
    MutexLock lock(&mu_);
    KEEL_RETURN_IF_ERROR(ledger_.CheckMap(address, chunk));
    KEEL_ASSIGN_OR_RETURN(uint64_t slot, ledger_.Payload(chunk));
    void* p = mmap(reinterpret_cast<void*>(address), granularity(), PROT_READ | PROT_WRITE,
                   MAP_FIXED | MAP_SHARED, fd_, static_cast<off_t>(slot * granularity()));
    if (p == MAP_FAILED) return ErrnoError(errno, "host memory: mmap of a chunk");
    ledger_.AddMapping(address, chunk);
    return OkStatus();
  }

  Status Unmap(uintptr_t address) override {
    MutexLock lock(&mu_);
    KEEL_ASSIGN_OR_RETURN(ChunkId chunk, ledger_.CheckUnmap(address));
    void* p = mmap(reinterpret_cast<void*>(address), granularity(), PROT_NONE,
                   MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return ErrnoError(errno, "host memory: re-reserving an unmapped chunk");
    if (ledger_.RemoveMapping(address)) {
      KEEL_ASSIGN_OR_RETURN(uint64_t slot, ledger_.Payload(chunk, /*include_released=*/true));
      return FreeSlot(chunk, slot);
    }
    return OkStatus();
  }

  BackendCounters counters() const override {
    MutexLock lock(&mu_);
    return ledger_.counters();
  }

 private:
  // A PROT_NONE range of `bytes` whose start is aligned to the granularity, like
  // cuMemAddressReserve's: over-reserve by one granule and trim both ends.
  StatusOr<uintptr_t> ReserveAligned(uint64_t bytes) KEEL_REQUIRES(mu_) {
    const uint64_t g = granularity();
    void* p =
        mmap(nullptr, bytes + g, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      return ResourceExhaustedError(
          "host memory: reserving " + internal::FormatBytes(bytes) +
          " of address space failed: " + ErrnoError(errno, "mmap").message());
    }
    auto raw = reinterpret_cast<uintptr_t>(p);
    uintptr_t base = (raw + g - 1) / g * g;
    if (base > raw) munmap(p, base - raw);
    uintptr_t tail = base + bytes;
    if (raw + bytes + g > tail) munmap(reinterpret_cast<void*>(tail), raw + bytes + g - tail);
    return base;
  }

  Status FreeSlot(ChunkId chunk, uint64_t slot) KEEL_REQUIRES(mu_) {
    ledger_.DropChunk(chunk);
    free_slots_.push_back(slot);
    if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(slot * granularity()),
                  static_cast<off_t>(granularity())) != 0) {
      return ErrnoError(errno, "host memory: punching a released chunk out of the memfd");
    }
    return OkStatus();
  }

  const int fd_;
  const uint64_t granularity_, capacity_;  // immutable: read without mu_
  mutable Mutex mu_;
  internal::BackendLedger ledger_ KEEL_GUARDED_BY(mu_);
  uint64_t next_slot_ KEEL_GUARDED_BY(mu_) = 0;
  std::vector<uint64_t> free_slots_ KEEL_GUARDED_BY(mu_);
};

}  // namespace

StatusOr<std::unique_ptr<PhysicalMemory>> MakeHostMemory(const HostMemoryOptions& options) {
  const auto page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (options.chunk_bytes == 0 || options.chunk_bytes % page != 0) {
    return InvalidArgumentError("host memory: chunk_bytes " + std::to_string(options.chunk_bytes) +
                                " must be a positive multiple of the page size " +
                                std::to_string(page));
  }
  if (options.capacity_bytes < options.chunk_bytes) {
    return InvalidArgumentError("host memory: capacity_bytes " +
                                std::to_string(options.capacity_bytes) +
                                " is smaller than one chunk; raise it");
  }
  int fd = memfd_create("keel-mem", MFD_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "host memory: memfd_create");
  uint64_t capacity = options.capacity_bytes / options.chunk_bytes * options.chunk_bytes;
  if (ftruncate(fd, static_cast<off_t>(capacity)) != 0) {
    Status s = ErrnoError(errno, "host memory: sizing the memfd to the capacity");
    close(fd);
    return s;
  }
  return std::unique_ptr<PhysicalMemory>(new HostMemory(fd, options.chunk_bytes, capacity));
}

}  // namespace keel::mem

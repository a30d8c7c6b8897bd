// SsdStoreImpl: the implementation behind SsdStore::Open, split by concern over
// ssd_store.cc (open, directory, ForEach, stats), ssd_store_write.cc (appends, Put, Erase),
// ssd_store_read.cc (batched Get/Take) and ssd_store_compact.cc (garbage collection).
// Internal: include ssd_store.h instead; tests use internal::OpenSsdStore for the FileOps
// seam and WaitForCompactions.
//
// Note [Locations]: a record's location is one uint32, segment_id * slots_per_segment + slot,
// below 2^31; bit 31 (kInFlight) marks a key a Take is reading (Note [Take in flight]), and
// 0xFFFFFFFF is the index's empty marker. So a store addresses at most 2^31 - 1 slots, live
// and garbage together (≈ 1.7 TB of 784 B records, 200 GB of 80 B ones); Open rejects a
// segment size that leaves fewer than kMinSegments segment ids, and Put fails with
// RESOURCE_EXHAUSTED when every id is in use.
//
// Note [Take in flight]: Take and Get look up locations under the mutex, pin the segments
// (pins > 0: the file is not deleted), then pread without the mutex. Take also sets
// kInFlight on its keys and removes them only after the reads succeeded, and only if the
// location is unchanged (a concurrent Put replaced the key: the Take came first and the new
// record stays; a concurrent Erase: nothing left to remove). A second Take of a key in flight
// waits for the first (take_cv_) — it must not return the row twice. Compaction leaves keys
// in flight where they are. A failed read leaves the store as it was.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "keel/common/mutex.h"
#include "keel/common/thread_pool.h"
#include "keel/embed/file_ops.h"
#include "keel/embed/ssd_index.h"
#include "keel/embed/ssd_store.h"

namespace keel::embed {

namespace internal {

struct SsdStoreHooks {
  FileOps* file_ops = nullptr;  // nullptr: FileOps::Posix(); must outlive the store
};

StatusOr<std::unique_ptr<SsdStore>> OpenSsdStore(const SsdStore::Options& options,
                                                 const SsdStoreHooks& hooks);
// Blocks until compaction has nothing left to do (deterministic stats in tests).
void WaitForCompactions(SsdStore& store);

}  // namespace internal

class SsdStoreImpl final : public SsdStore {
 public:
  static constexpr uint32_t kInFlight = 0x80000000u;
  static constexpr int64_t kMaxSlots = 0x7FFFFFFF;  // locations 0 .. kMaxSlots - 1
  static constexpr int64_t kMinSegments = 4;
  static constexpr int64_t kWriteBufferBytes = 4 << 20;
  static constexpr int64_t kCompactionChunkBytes = 256 << 10;

  SsdStoreImpl(const Options& options, FileOps* ops, UniqueFd lock_fd);
  ~SsdStoreImpl() override;

  Status Put(std::span<const uint64_t> keys, const uint8_t* records) override KEEL_EXCLUDES(mu_);
  Status Take(std::span<const uint64_t> keys, uint8_t* records, uint8_t* found) override
      KEEL_EXCLUDES(mu_);
  Status Get(std::span<const uint64_t> keys, uint8_t* records, uint8_t* found) override
      KEEL_EXCLUDES(mu_);
  Status Erase(std::span<const uint64_t> keys) override KEEL_EXCLUDES(mu_);
  Status ForEach(const std::function<Status(uint64_t, const uint8_t*)>& fn) override
      KEEL_EXCLUDES(mu_);
  Stats stats() const override KEEL_EXCLUDES(mu_);

  void WaitForCompactions() KEEL_EXCLUDES(mu_);

 private:
  struct Segment {
    uint32_t id = 0;
    std::string path;
    UniqueFd fd;
    int64_t used = 0;  // slots written (== slots_per_segment_ once sealed)
    int64_t live = 0;  // slots the index points at
    int pins = 0;      // reads in progress without the mutex
    bool sealed = false;
    bool compacting = false;
    bool doomed = false;  // compacted empty; deleted once unpinned
    // A compaction pass left live records behind (keys a Take holds, or a record too corrupt
    // to move): not retried until one of its records is superseded.
    bool stuck = false;
  };
  // The state an append sequence can be rolled back to (a failed Put or compaction step).
  struct AppendMark {
    int64_t active = -1;
    int64_t used = 0;
  };
  struct Read {  // one pread of Get/Take
    uint32_t location;
    int64_t index;  // into the call's keys
    Segment* segment;
  };

  uint32_t Location(int64_t segment, int64_t slot) const {
    return static_cast<uint32_t>(segment * slots_per_segment_ + slot);
  }
  Segment& SegmentOf(uint32_t location) KEEL_REQUIRES(mu_) {
    return *segments_[location / slots_per_segment_];
  }
  int64_t SlotOf(uint32_t location) const { return location % slots_per_segment_; }
  int64_t OffsetOf(uint32_t location) const { return SlotOf(location) * slot_bytes_; }

  // ssd_store_write.cc
  AppendMark MarkAppends() KEEL_REQUIRES(mu_);
  StatusOr<uint32_t> Append(const uint8_t* header, const uint8_t* record) KEEL_REQUIRES(mu_);
  void RollBack(const AppendMark& mark) KEEL_REQUIRES(mu_);
  Status OpenActiveSegment() KEEL_REQUIRES(mu_);
  Status FlushBuffer() KEEL_REQUIRES(mu_);
  void Seal() KEEL_REQUIRES(mu_);
  // The record at `location` became garbage (replaced or removed).
  void Supersede(uint32_t location) KEEL_REQUIRES(mu_);
  void CloseAndDelete(uint32_t id) KEEL_REQUIRES(mu_);

  // ssd_store_read.cc
  Status ReadBatch(std::span<const uint64_t> keys, uint8_t* records, uint8_t* found, bool take)
      KEEL_EXCLUDES(mu_);
  Status PreadRecord(const Read& read, uint64_t key, uint8_t* record) const;
  void Unpin(Segment* segment) KEEL_REQUIRES(mu_);

  // ssd_store_compact.cc
  bool Compactable(const Segment& segment) const KEEL_REQUIRES(mu_);
  void MaybeScheduleCompaction(const Segment& segment) KEEL_REQUIRES(mu_);
  void CompactionLoop() KEEL_EXCLUDES(mu_);
  Status CompactSegment(Segment* victim) KEEL_EXCLUDES(mu_);
  Status MoveLiveRecords(Segment* victim, int64_t first_slot, const std::vector<uint8_t>& chunk,
                         int64_t slots, bool* stopping) KEEL_EXCLUDES(mu_);

  // ssd_store.cc
  Status ForEachInSegment(const Segment& segment,
                          const std::function<Status(uint64_t, const uint8_t*)>& fn)
      KEEL_REQUIRES(mu_);

  const Options options_;
  const int64_t slot_bytes_;
  const int64_t slots_per_segment_;
  const int64_t max_segments_;
  const int64_t buffer_slots_;  // write buffer capacity, in slots
  FileOps* const ops_;
  UniqueFd lock_fd_;  // holds the directory's flock

  mutable Mutex mu_;
  CondVar take_cv_;        // a Take released its keys in flight
  CondVar compaction_cv_;  // compaction went idle
  SsdIndex index_ KEEL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Segment>> segments_ KEEL_GUARDED_BY(mu_);  // by id; null: free
  std::vector<uint32_t> free_ids_ KEEL_GUARDED_BY(mu_);
  int64_t active_ KEEL_GUARDED_BY(mu_) = -1;  // id of the segment appends go to; -1: none yet
  // Slots [buffer_start_, active used) of the active segment, not yet written to its file.
  std::vector<uint8_t> buffer_ KEEL_GUARDED_BY(mu_);
  int64_t buffer_start_ KEEL_GUARDED_BY(mu_) = 0;
  // Segments created since the last MarkAppends (deleted again by RollBack).
  std::vector<uint32_t> created_since_mark_ KEEL_GUARDED_BY(mu_);
  int64_t file_slots_ KEEL_GUARDED_BY(mu_) = 0;  // sum of segments' `used`
  int64_t records_written_ KEEL_GUARDED_BY(mu_) = 0;
  int64_t records_read_ KEEL_GUARDED_BY(mu_) = 0;
  int64_t compactions_ KEEL_GUARDED_BY(mu_) = 0;
  int take_waiters_ KEEL_GUARDED_BY(mu_) = 0;
  bool compaction_scheduled_ KEEL_GUARDED_BY(mu_) = false;
  bool stopping_ KEEL_GUARDED_BY(mu_) = false;

  std::unique_ptr<ThreadPool> io_pool_;    // io_threads - 1 workers (the caller is one more)
  std::unique_ptr<ThreadPool> compactor_;  // one thread running CompactionLoop
};

}  // namespace keel::embed

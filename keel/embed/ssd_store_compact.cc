// SsdStore's garbage collection. Every superseded record adds to its segment's garbage;
// a sealed segment whose garbage reaches compact_garbage_ratio of its slots is compacted by
// the store's one compaction thread: its live records are appended anew and the file is
// deleted. Notes [Compaction] and [Take in flight] (ssd_store_impl.h) give the protocol.
//
// Note [Compaction]: the victim is read in 256 KiB chunks without the mutex (a sealed file never
// changes). For each chunk the thread takes the mutex and moves a record only if the index
// still points at its old slot — a record replaced, removed or held by a Take meanwhile
// stays behind as garbage (or for a later pass) — appending it and updating the index in
// one critical section (Note [All or nothing]), so Put/Take/Get never see a half-moved row.
// The file is deleted once no live record is left in it and no read has it pinned; a pass
// that leaves live records (keys in flight, an unreadable record) marks the segment stuck
// until one of its records is superseded, so compaction never spins.
#include <algorithm>
#include <cerrno>

#include "keel/common/logging.h"
#include "keel/embed/segment_file.h"
#include "keel/embed/ssd_store_impl.h"

namespace keel::embed {

bool SsdStoreImpl::Compactable(const Segment& segment) const {
  return segment.sealed && !segment.compacting && !segment.doomed && !segment.stuck &&
         static_cast<double>(segment.used - segment.live) >=
             options_.compact_garbage_ratio * static_cast<double>(slots_per_segment_);
}

void SsdStoreImpl::MaybeScheduleCompaction(const Segment& segment) {
  if (stopping_ || compaction_scheduled_ || !Compactable(segment)) return;
  compaction_scheduled_ = true;
  compactor_->Schedule([this] { CompactionLoop(); });
}

void SsdStoreImpl::CompactionLoop() {
  for (;;) {
    Segment* victim = nullptr;
    bool empty = false;
    {
      MutexLock lock(&mu_);
      if (!stopping_) {
        for (const auto& segment : segments_) {
          if (segment != nullptr && Compactable(*segment) &&
              (victim == nullptr || segment->live < victim->live)) {
            victim = segment.get();
          }
        }
      }
      if (victim == nullptr) {
        compaction_scheduled_ = false;
        compaction_cv_.SignalAll();
        return;
      }
      victim->compacting = true;
      empty = victim->live == 0;
    }
    Status status = empty ? OkStatus() : CompactSegment(victim);
    MutexLock lock(&mu_);
    victim->compacting = false;
    if (!status.ok()) {
      KEEL_LOG(Error, "SsdStore: compaction of {} failed, will retry once it changes: {}",
               victim->path, status.ToString());
      victim->stuck = true;
    } else if (victim->live > 0) {
      victim->stuck = true;
    } else {
      victim->doomed = true;
      ++compactions_;
      if (victim->pins == 0) CloseAndDelete(victim->id);
    }
  }
}

Status SsdStoreImpl::CompactSegment(Segment* victim) {
  // `victim` stays alive: only this thread dooms segments, and it has not doomed this one.
  const int64_t chunk_slots = std::max<int64_t>(1, kCompactionChunkBytes / slot_bytes_);
  std::vector<uint8_t> chunk;
  for (int64_t first = 0; first < slots_per_segment_; first += chunk_slots) {
    const int64_t n = std::min(chunk_slots, slots_per_segment_ - first);
    chunk.resize(n * slot_bytes_);
    iovec iov{chunk.data(), chunk.size()};
    ssize_t got;
    do {
      got = ops_->Preadv(victim->fd.get(), &iov, 1, first * slot_bytes_);
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
      return ErrnoError(errno, fmt::format("SsdStore: compaction read at offset {} of {}",
                                           first * slot_bytes_, victim->path));
    }
    if (got != static_cast<ssize_t>(chunk.size())) {
      return DataLossError(fmt::format("SsdStore: short compaction read at offset {} of {}",
                                       first * slot_bytes_, victim->path));
    }
    bool stopping = false;
    KEEL_RETURN_IF_ERROR(MoveLiveRecords(victim, first, chunk, n, &stopping));
    if (stopping) break;
  }
  return OkStatus();
}

Status SsdStoreImpl::MoveLiveRecords(Segment* victim, int64_t first_slot,
                                     const std::vector<uint8_t>& chunk, int64_t slots,
                                     bool* stopping) {
  // Checksums outside the lock; a corrupt record is never copied (it stays, and reads of it
  // keep failing clearly).
  std::vector<uint8_t> valid(slots);
  for (int64_t i = 0; i < slots; ++i) {
    const uint8_t* slot = chunk.data() + i * slot_bytes_;
    valid[i] = VerifyRecord(slot, slot + kRecordHeaderBytes, options_.record_bytes, std::nullopt,
                            victim->path, (first_slot + i) * slot_bytes_)
                   .ok();
  }
  MutexLock lock(&mu_);
  if (stopping_) {
    *stopping = true;
    return OkStatus();
  }
  const AppendMark mark = MarkAppends();
  std::vector<std::pair<uint64_t, uint32_t>> moves;  // (key, new location)
  for (int64_t i = 0; i < slots; ++i) {
    const uint8_t* slot = chunk.data() + i * slot_bytes_;
    const uint64_t key = RecordKey(slot);
    if (index_.Find(key) != Location(victim->id, first_slot + i)) continue;
    if (!valid[i]) {
      KEEL_LOG(Error, "SsdStore: record of key {} at offset {} of {} is corrupt; left in place",
               key, (first_slot + i) * slot_bytes_, victim->path);
      continue;
    }
    StatusOr<uint32_t> location = Append(slot, slot + kRecordHeaderBytes);
    if (!location.ok()) {
      RollBack(mark);
      return location.status();
    }
    moves.emplace_back(key, *location);
  }
  for (const auto& [key, location] : moves) {
    index_.Update(key, location);
    ++SegmentOf(location).live;
    --victim->live;
  }
  records_written_ += static_cast<int64_t>(moves.size());
  return OkStatus();
}

}  // namespace keel::embed

// SsdStore's write path: appends into the active segment through the write buffer, sealing,
// rollback of a failed append sequence, and Put / Erase.
//
// Note [All or nothing]: Put (and each compaction step) first appends every record, then
// updates the index. An I/O error during the appends rolls them back — segments created
// since the mark are deleted, the active segment's length goes back to the mark (bytes a
// successful flush wrote past it are junk no location points at, overwritten by the next
// appends) — and the index is never touched, so a failed Put stores none of its records.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "keel/common/logging.h"
#include "keel/embed/segment_file.h"
#include "keel/embed/ssd_store_impl.h"

namespace keel::embed {

Status SsdStoreImpl::OpenActiveSegment() {
  uint32_t id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else if (static_cast<int64_t>(segments_.size()) < max_segments_) {
    id = static_cast<uint32_t>(segments_.size());
    segments_.emplace_back();
  } else {
    return ResourceExhaustedError(
        fmt::format("SsdStore {}: all {} segment ids are in use ({} records of {} bytes; record "
                    "locations are 31 bits). Use a lower compact_garbage_ratio or more stores",
                    options_.dir, max_segments_, max_segments_ * slots_per_segment_, slot_bytes_));
  }
  auto segment = std::make_unique<Segment>();
  segment->id = id;
  segment->path = (std::filesystem::path(options_.dir) / SegmentFileName(id)).string();
  segment->fd = UniqueFd(ops_->Open(segment->path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644));
  if (!segment->fd.valid()) {
    int err = errno;
    free_ids_.push_back(id);
    return ErrnoError(err, fmt::format("SsdStore: cannot create segment {}", segment->path));
  }
  // Reads are random single records: kernel read-ahead would only amplify them.
  (void)::posix_fadvise(segment->fd.get(), 0, 0, POSIX_FADV_RANDOM);
  segments_[id] = std::move(segment);
  active_ = id;
  buffer_start_ = 0;
  created_since_mark_.push_back(id);
  return OkStatus();
}

Status SsdStoreImpl::FlushBuffer() {
  Segment& segment = *segments_[active_];
  const int64_t bytes = (segment.used - buffer_start_) * slot_bytes_;
  const int64_t offset = buffer_start_ * slot_bytes_;
  for (int64_t done = 0; done < bytes;) {
    ssize_t n = ops_->Pwrite(segment.fd.get(), buffer_.data() + done,
                             static_cast<size_t>(bytes - done), offset + done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      return ErrnoError(err, fmt::format("SsdStore: write of {} bytes at offset {} to {}",
                                         bytes - done, offset + done, segment.path));
    }
    done += n;
  }
  buffer_start_ = segment.used;
  return OkStatus();
}

void SsdStoreImpl::Seal() {
  Segment& segment = *segments_[active_];
  segment.sealed = true;
  active_ = -1;
  MaybeScheduleCompaction(segment);
}

SsdStoreImpl::AppendMark SsdStoreImpl::MarkAppends() {
  created_since_mark_.clear();
  return AppendMark{active_, active_ >= 0 ? segments_[active_]->used : 0};
}

StatusOr<uint32_t> SsdStoreImpl::Append(const uint8_t* header, const uint8_t* record) {
  if (active_ < 0) KEEL_RETURN_IF_ERROR(OpenActiveSegment());
  Segment& segment = *segments_[active_];
  const int64_t slot = segment.used;
  uint8_t* dst = buffer_.data() + (slot - buffer_start_) * slot_bytes_;
  std::memcpy(dst, header, kRecordHeaderBytes);
  std::memcpy(dst + kRecordHeaderBytes, record, options_.record_bytes);
  ++segment.used;
  ++file_slots_;
  const uint32_t location = Location(active_, slot);
  if (segment.used - buffer_start_ == buffer_slots_ || segment.used == slots_per_segment_) {
    KEEL_RETURN_IF_ERROR(FlushBuffer());
  }
  if (segment.used == slots_per_segment_) Seal();
  return location;
}

void SsdStoreImpl::RollBack(const AppendMark& mark) {
  for (auto it = created_since_mark_.rbegin(); it != created_since_mark_.rend(); ++it) {
    CloseAndDelete(*it);
  }
  created_since_mark_.clear();
  if (mark.active < 0) {
    active_ = -1;
    buffer_start_ = 0;
    return;
  }
  Segment& segment = *segments_[mark.active];
  // If the mark's segment is still active, the buffer still holds [buffer_start_, mark.used)
  // unless a flush moved buffer_start_ past the mark; if it was sealed, it was flushed whole.
  const int64_t flushed = active_ == mark.active ? buffer_start_ : segment.used;
  file_slots_ -= segment.used - mark.used;
  segment.used = mark.used;
  segment.sealed = false;
  active_ = mark.active;
  buffer_start_ = std::min(flushed, mark.used);
}

void SsdStoreImpl::CloseAndDelete(uint32_t id) {
  Segment& segment = *segments_[id];
  file_slots_ -= segment.used;
  segment.fd.Reset();
  if (::unlink(segment.path.c_str()) != 0 && errno != ENOENT) {
    KEEL_LOG(Warn, "SsdStore: cannot delete segment {}: {}", segment.path, std::strerror(errno));
  }
  if (active_ == static_cast<int64_t>(id)) active_ = -1;
  segments_[id].reset();
  free_ids_.push_back(id);
}

void SsdStoreImpl::Supersede(uint32_t location) {
  Segment& segment = SegmentOf(location);
  --segment.live;
  segment.stuck = false;
  MaybeScheduleCompaction(segment);
}

Status SsdStoreImpl::Put(std::span<const uint64_t> keys, const uint8_t* records) {
  if (keys.empty()) return OkStatus();
  if (records == nullptr) {
    return InvalidArgumentError(
        fmt::format("SsdStore::Put: {} keys but records is null", keys.size()));
  }
  const int64_t n = static_cast<int64_t>(keys.size());
  const int64_t rb = options_.record_bytes;
  // Checksums outside the lock.
  std::vector<uint8_t> headers(n * kRecordHeaderBytes);
  for (int64_t i = 0; i < n; ++i) {
    EncodeRecordHeader(keys[i], records + i * rb, rb, headers.data() + i * kRecordHeaderBytes);
  }
  std::vector<uint32_t> locations(n);
  MutexLock lock(&mu_);
  for (uint64_t key : keys) index_.Prefetch(key);
  const AppendMark mark = MarkAppends();
  for (int64_t i = 0; i < n; ++i) {
    StatusOr<uint32_t> location = Append(headers.data() + i * kRecordHeaderBytes, records + i * rb);
    if (!location.ok()) {
      RollBack(mark);
      return Status(location.status().code(),
                    fmt::format("SsdStore::Put of {} records failed, none stored: {}", n,
                                location.status().message()));
    }
    locations[i] = *location;
  }
  for (int64_t i = 0; i < n; ++i) {
    ++SegmentOf(locations[i]).live;
    uint32_t old = index_.Upsert(keys[i], locations[i]);
    if (old != SsdIndex::kEmpty) Supersede(old & ~kInFlight);
  }
  records_written_ += n;
  return OkStatus();
}

Status SsdStoreImpl::Erase(std::span<const uint64_t> keys) {
  MutexLock lock(&mu_);
  for (uint64_t key : keys) {
    uint32_t old = index_.Erase(key);
    if (old != SsdIndex::kEmpty) Supersede(old & ~kInFlight);
  }
  return OkStatus();
}

}  // namespace keel::embed

// SsdStore's batched reads: Get and Take look locations up under the mutex, serve records
// still in the write buffer from memory, and pread the rest without the mutex, spread over
// the I/O threads (Note [Take in flight] in ssd_store_impl.h).
#include <fmt/format.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "keel/embed/segment_file.h"
#include "keel/embed/ssd_store_impl.h"

namespace keel::embed {

Status SsdStoreImpl::Get(std::span<const uint64_t> keys, uint8_t* records, uint8_t* found) {
  return ReadBatch(keys, records, found, /*take=*/false);
}

Status SsdStoreImpl::Take(std::span<const uint64_t> keys, uint8_t* records, uint8_t* found) {
  return ReadBatch(keys, records, found, /*take=*/true);
}

Status SsdStoreImpl::PreadRecord(const Read& read, uint64_t key, uint8_t* record) const {
  uint8_t header[kRecordHeaderBytes];
  iovec iov[2] = {{header, sizeof(header)}, {record, static_cast<size_t>(options_.record_bytes)}};
  const int64_t offset = OffsetOf(read.location);
  ssize_t got;
  do {
    got = ops_->Preadv(read.segment->fd.get(), iov, 2, offset);
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    return ErrnoError(errno, fmt::format("SsdStore: read of key {} at offset {} of {}", key, offset,
                                         read.segment->path));
  }
  if (got != slot_bytes_) {
    return DataLossError(
        fmt::format("SsdStore: short read of key {} at offset {} of {}: {} of "
                    "{} bytes",
                    key, offset, read.segment->path, got, slot_bytes_));
  }
  return VerifyRecord(header, record, options_.record_bytes, key, read.segment->path, offset);
}

void SsdStoreImpl::Unpin(Segment* segment) {
  if (--segment->pins == 0 && segment->doomed) CloseAndDelete(segment->id);
}

Status SsdStoreImpl::ReadBatch(std::span<const uint64_t> keys, uint8_t* records, uint8_t* found,
                               bool take) {
  if (keys.empty()) return OkStatus();
  if (records == nullptr || found == nullptr) {
    return InvalidArgumentError(fmt::format("SsdStore::{}: {} keys but records or found is null",
                                            take ? "Take" : "Get", keys.size()));
  }
  const int64_t n = static_cast<int64_t>(keys.size());
  const int64_t rb = options_.record_bytes;
  std::vector<Read> reads;
  std::vector<std::pair<int64_t, uint32_t>> taken;  // (index into keys, location)
  {
    MutexLock lock(&mu_);
    for (uint64_t key : keys) index_.Prefetch(key);
    if (take) {  // wait until no other Take holds one of these keys
      auto busy = [&]() KEEL_REQUIRES(mu_) {
        return std::any_of(keys.begin(), keys.end(), [&](uint64_t key) KEEL_REQUIRES(mu_) {
          uint32_t loc = index_.Find(key);
          return loc != SsdIndex::kEmpty && (loc & kInFlight) != 0;
        });
      };
      while (busy()) {
        ++take_waiters_;
        take_cv_.Wait(&mu_);
        --take_waiters_;
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      uint32_t loc = index_.Find(keys[i]);
      // In flight here only if this call names the key twice: the first one gets it.
      if (loc == SsdIndex::kEmpty || (take && (loc & kInFlight) != 0)) {
        found[i] = 0;
        continue;
      }
      loc &= ~kInFlight;
      found[i] = 1;
      if (take) {
        index_.Update(keys[i], loc | kInFlight);
        taken.emplace_back(i, loc);
      }
      Segment& segment = SegmentOf(loc);
      const int64_t slot = SlotOf(loc);
      if (static_cast<int64_t>(segment.id) == active_ && slot >= buffer_start_) {
        std::memcpy(records + i * rb,
                    buffer_.data() + (slot - buffer_start_) * slot_bytes_ + kRecordHeaderBytes, rb);
        continue;
      }
      ++segment.pins;
      reads.push_back(Read{loc, i, &segment});
    }
  }

  // Sorted by location, each thread's share is a run of nearby offsets.
  std::sort(reads.begin(), reads.end(),
            [](const Read& a, const Read& b) { return a.location < b.location; });
  std::vector<Status> errors(reads.size());
  auto read_range = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      errors[r] = PreadRecord(reads[r], keys[reads[r].index], records + reads[r].index * rb);
    }
  };
  const auto num_reads = static_cast<int64_t>(reads.size());
  if (io_pool_ != nullptr && num_reads > 1) {
    io_pool_->ParallelFor(num_reads, read_range);
  } else {
    read_range(0, num_reads);
  }
  Status status;
  for (Status& error : errors) {
    if (!error.ok()) {
      status = std::move(error);
      break;
    }
  }

  MutexLock lock(&mu_);
  for (const Read& read : reads) Unpin(read.segment);
  records_read_ += num_reads;
  for (const auto& [i, loc] : taken) {
    if (index_.Find(keys[i]) != (loc | kInFlight)) continue;  // replaced or erased meanwhile
    if (status.ok()) {
      index_.Erase(keys[i]);
      Supersede(loc);
    } else {
      index_.Update(keys[i], loc);
    }
  }
  if (take && take_waiters_ > 0) take_cv_.SignalAll();
  if (!status.ok()) std::memset(found, 0, n);
  return status;
}

}  // namespace keel::embed

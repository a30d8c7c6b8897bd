// SsdStore::Open (options, directory, lock), the store's lifetime, ForEach and stats.
// Appends live in ssd_store_write.cc, batched reads in ssd_store_read.cc, garbage collection
// in ssd_store_compact.cc; the design is in docs/embed.md ("SSD tier").
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <filesystem>
#include <system_error>

#include "keel/common/logging.h"
#include "keel/embed/segment_file.h"
#include "keel/embed/ssd_store_impl.h"

namespace keel::embed {
namespace {

namespace fs = std::filesystem;

Status ValidateOptions(const SsdStore::Options& o) {
  if (o.dir.empty()) return InvalidArgumentError("SsdStore: Options::dir is empty");
  if (o.record_bytes <= 0) {
    return InvalidArgumentError(
        fmt::format("SsdStore: Options::record_bytes is {}; it must be > 0", o.record_bytes));
  }
  if (o.segment_bytes < SlotBytes(o.record_bytes)) {
    return InvalidArgumentError(fmt::format(
        "SsdStore: Options::segment_bytes {} is smaller than one record slot ({} bytes: "
        "record_bytes {} + a {}-byte header)",
        o.segment_bytes, SlotBytes(o.record_bytes), o.record_bytes, kRecordHeaderBytes));
  }
  int64_t slots = o.segment_bytes / SlotBytes(o.record_bytes);
  if (slots > SsdStoreImpl::kMaxSlots / SsdStoreImpl::kMinSegments) {
    return InvalidArgumentError(fmt::format(
        "SsdStore: Options::segment_bytes {} holds {} records; record locations are 31 bits, "
        "so a segment may hold at most {} (lower segment_bytes)",
        o.segment_bytes, slots, SsdStoreImpl::kMaxSlots / SsdStoreImpl::kMinSegments));
  }
  if (!(o.compact_garbage_ratio > 0 && o.compact_garbage_ratio <= 1)) {
    return InvalidArgumentError(
        fmt::format("SsdStore: Options::compact_garbage_ratio is {}; it must be in (0, 1]",
                    o.compact_garbage_ratio));
  }
  if (o.io_threads < 1) {
    return InvalidArgumentError(
        fmt::format("SsdStore: Options::io_threads is {}; it must be >= 1", o.io_threads));
  }
  return OkStatus();
}

// Creates `dir`, locks it, and empties it of a previous store's segment files; refuses a
// directory holding anything else.
StatusOr<UniqueFd> PrepareDirectory(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return ErrnoError(ec.value(), fmt::format("SsdStore: cannot create directory {}", dir));
  }
  std::string lock_path = (fs::path(dir) / kLockFileName).string();
  UniqueFd lock_fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock_fd.valid()) {
    return ErrnoError(errno, fmt::format("SsdStore: cannot open lock file {}", lock_path));
  }
  if (::flock(lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err == EWOULDBLOCK) {
      return FailedPreconditionError(fmt::format(
          "SsdStore: directory {} is in use by another SsdStore (flock on {} is held); give "
          "each store its own Options::dir",
          dir, lock_path));
    }
    return ErrnoError(err, fmt::format("SsdStore: flock on {}", lock_path));
  }
  std::vector<fs::path> stale;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name == kLockFileName) continue;
    std::error_code type_ec;
    if (!IsSegmentFileName(name) || !it->is_regular_file(type_ec)) {
      return FailedPreconditionError(fmt::format(
          "SsdStore: refusing to use directory {}: it holds '{}', which is not an SsdStore "
          "file; point Options::dir at an empty directory or one a previous store used",
          dir, name));
    }
    stale.push_back(it->path());
  }
  if (ec) return ErrnoError(ec.value(), fmt::format("SsdStore: cannot list directory {}", dir));
  for (const fs::path& path : stale) {
    fs::remove(path, ec);
    if (ec) {
      return ErrnoError(ec.value(),
                        fmt::format("SsdStore: cannot remove stale segment {}", path.string()));
    }
  }
  return lock_fd;
}

}  // namespace

StatusOr<std::unique_ptr<SsdStore>> SsdStore::Open(const Options& options) {
  return internal::OpenSsdStore(options, {});
}

namespace internal {

StatusOr<std::unique_ptr<SsdStore>> OpenSsdStore(const SsdStore::Options& options,
                                                 const SsdStoreHooks& hooks) {
  KEEL_RETURN_IF_ERROR(ValidateOptions(options));
  KEEL_ASSIGN_OR_RETURN(UniqueFd lock_fd, PrepareDirectory(options.dir));
  FileOps* ops = hooks.file_ops != nullptr ? hooks.file_ops : &FileOps::Posix();
  return std::unique_ptr<SsdStore>(new SsdStoreImpl(options, ops, std::move(lock_fd)));
}

void WaitForCompactions(SsdStore& store) { static_cast<SsdStoreImpl&>(store).WaitForCompactions(); }

}  // namespace internal

SsdStoreImpl::SsdStoreImpl(const Options& options, FileOps* ops, UniqueFd lock_fd)
    : options_(options),
      slot_bytes_(SlotBytes(options.record_bytes)),
      slots_per_segment_(options.segment_bytes / slot_bytes_),
      max_segments_(kMaxSlots / slots_per_segment_),
      buffer_slots_(std::clamp<int64_t>(kWriteBufferBytes / slot_bytes_, 1, slots_per_segment_)),
      ops_(ops),
      lock_fd_(std::move(lock_fd)),
      compactor_(std::make_unique<ThreadPool>(1, "ssd-compact")) {
  if (options.io_threads > 1) {
    io_pool_ = std::make_unique<ThreadPool>(options.io_threads - 1, "ssd-io");
  }
  MutexLock lock(&mu_);
  buffer_.resize(buffer_slots_ * slot_bytes_);
}

SsdStoreImpl::~SsdStoreImpl() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  compactor_.reset();  // the running CompactionLoop sees stopping_ and returns
  io_pool_.reset();
  MutexLock lock(&mu_);
  // The files are scratch space (ssd_store.h): give the disk back now.
  for (auto& segment : segments_) {
    if (segment != nullptr) CloseAndDelete(segment->id);
  }
}

SsdStore::Stats SsdStoreImpl::stats() const {
  MutexLock lock(&mu_);
  Stats s;
  s.rows = index_.size();
  s.index_bytes = index_.bytes();
  s.file_bytes = file_slots_ * slot_bytes_;
  s.garbage_bytes = (file_slots_ - index_.size()) * slot_bytes_;
  s.records_written = records_written_;
  s.records_read = records_read_;
  s.compactions = compactions_;
  return s;
}

void SsdStoreImpl::WaitForCompactions() {
  MutexLock lock(&mu_);
  while (compaction_scheduled_) compaction_cv_.Wait(&mu_);
}

Status SsdStoreImpl::ForEach(const std::function<Status(uint64_t, const uint8_t*)>& fn) {
  // Holds the mutex throughout: writers, readers and compaction wait (ssd_store.h). Segments
  // are read sequentially; a slot is visited if the index points at it.
  MutexLock lock(&mu_);
  for (const auto& segment : segments_) {
    if (segment != nullptr && !segment->doomed) {
      KEEL_RETURN_IF_ERROR(ForEachInSegment(*segment, fn));
    }
  }
  return OkStatus();
}

Status SsdStoreImpl::ForEachInSegment(const Segment& segment,
                                      const std::function<Status(uint64_t, const uint8_t*)>& fn) {
  const bool active = static_cast<int64_t>(segment.id) == active_;
  const int64_t on_file = active ? buffer_start_ : segment.used;
  const int64_t chunk_slots = std::max<int64_t>(1, kCompactionChunkBytes / slot_bytes_);
  std::vector<uint8_t> chunk;
  int64_t visited = 0;
  for (int64_t first = 0; first < segment.used; first += chunk_slots) {
    const int64_t n = std::min(chunk_slots, segment.used - first);
    const uint8_t* base;
    if (first >= on_file) {  // the active segment's tail, still in the write buffer
      base = buffer_.data() + (first - buffer_start_) * slot_bytes_;
    } else {
      const int64_t from_file = std::min(n, on_file - first);
      chunk.resize(n * slot_bytes_);
      iovec iov{chunk.data(), static_cast<size_t>(from_file * slot_bytes_)};
      ssize_t got = ops_->Preadv(segment.fd.get(), &iov, 1, first * slot_bytes_);
      if (got != static_cast<ssize_t>(iov.iov_len)) {
        return got < 0 ? ErrnoError(errno, fmt::format("SsdStore: read of {} at offset {}",
                                                       segment.path, first * slot_bytes_))
                       : DataLossError(fmt::format("SsdStore: short read of {} at offset {}",
                                                   segment.path, first * slot_bytes_));
      }
      if (from_file < n) {
        std::memcpy(chunk.data() + from_file * slot_bytes_, buffer_.data(),
                    (n - from_file) * slot_bytes_);
      }
      base = chunk.data();
    }
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* slot = base + i * slot_bytes_;
      const uint64_t key = RecordKey(slot);
      const uint32_t location = Location(segment.id, first + i);
      if ((index_.Find(key) & ~kInFlight) != location) continue;  // garbage
      KEEL_RETURN_IF_ERROR(VerifyRecord(slot, slot + kRecordHeaderBytes, options_.record_bytes, key,
                                        segment.path, (first + i) * slot_bytes_));
      KEEL_RETURN_IF_ERROR(fn(key, slot + kRecordHeaderBytes));
      ++visited;
    }
  }
  if (visited != segment.live) {  // a live slot whose key field no longer matches the index
    return DataLossError(
        fmt::format("SsdStore: {} should hold {} live records but {} match the index: corrupt keys",
                    segment.path, segment.live, visited));
  }
  return OkStatus();
}

}  // namespace keel::embed

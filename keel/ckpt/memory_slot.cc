// SlotWriter: in-place writes into warm, mapped shared-memory slots.
#include "keel/ckpt/memory_slot.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "keel/common/logging.h"
#ifdef KEEL_CKPT_WITH_CUDA
#include "keel/cuda/driver.h"
#endif

namespace keel::ckpt {
namespace {

Status NoRoom(const std::string& path, uint64_t bytes) {
  return ResourceExhaustedError(
      "no room for a " + std::to_string(bytes >> 20) + " MiB checkpoint slot '" + path +
      "': the shared-memory filesystem is full. Enlarge /dev/shm (docker run --shm-size, "
      "Kubernetes emptyDir medium: Memory with a sizeLimit, or mount -o remount,size=... "
      "/dev/shm) or checkpoint less state");
}

}  // namespace

std::string SlotPath(const std::string& shm_dir, int local_rank, int slot) {
  return shm_dir + "/rank-" + std::to_string(local_rank) + ".slot-" + std::to_string(slot) +
         ".safetensors";
}

SlotWriter::SlotWriter(std::string shm_dir, int local_rank, int threads)
    : shm_dir_(std::move(shm_dir)), local_rank_(local_rank), threads_(threads < 1 ? 1 : threads) {}

SlotWriter::~SlotWriter() {
  if (warmer_.joinable()) warmer_.join();
  Unmap(0);
  Unmap(1);
}

void SlotWriter::Unmap(int slot) {
  Mapped& m = mapped_[slot];
#ifdef KEEL_CKPT_WITH_CUDA
  if (m.pinned) (void)cuda::UnregisterHostMemory(m.addr);
#endif
  if (m.addr != nullptr) munmap(m.addr, m.size);
  m = Mapped{};
}

void SlotWriter::PinForCuda() {
  if (warmer_.joinable()) warmer_.join();
  pin_ = true;
  for (Mapped& m : mapped_) Pin(&m);
}

void SlotWriter::Pin(Mapped* m) {
  if (!pin_ || pin_failed_ || m->addr == nullptr || m->pinned) return;
#ifdef KEEL_CKPT_WITH_CUDA
  Status s = cuda::RegisterHostMemory(m->addr, m->size);
  m->pinned = s.ok();
  if (!s.ok()) {
    pin_failed_ = true;
    KEEL_LOG(Warn,
             "keel.ckpt: cannot page-lock the checkpoint slots ({}); CUDA copies into "
             "them will be slower",
             s.ToString());
  }
#else
  pin_failed_ = true;
  KEEL_LOG(Warn, "keel.ckpt: built without CUDA; checkpoint slots are not page-locked");
#endif
}

void SlotWriter::Detach(int slot) {
  if (slot != 0 && slot != 1) return;
  if (warmer_.joinable()) warmer_.join();
  Unmap(slot);
  detached_[slot] = true;
}

Status SlotWriter::Write(int slot, const std::vector<NamedTensor>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  KEEL_ASSIGN_OR_RETURN(std::vector<TensorView> dst, Prepare(slot, tensors, metadata));
  if (!dst.empty()) CopyTensorData(tensors, dst.front().data, threads_);
  return OkStatus();
}

StatusOr<std::vector<TensorView>> SlotWriter::Prepare(
    int slot, const std::vector<NamedTensor>& layout,
    const std::map<std::string, std::string>& metadata) {
  if (slot != 0 && slot != 1) return InvalidArgumentError("slot must be 0 or 1");
  if (warmer_.joinable()) warmer_.join();
  KEEL_ASSIGN_OR_RETURN(std::string prefix, SafetensorsPrefix(layout, metadata));
  uint64_t total = prefix.size();
  for (const NamedTensor& t : layout) total += t.view.nbytes();
  const bool cold = mapped_[slot].addr == nullptr || mapped_[slot].size != total;
  KEEL_RETURN_IF_ERROR(Map(slot, total));
  Pin(&mapped_[slot]);  // a slot warmed in the background is pinned on first use
  if (cold) WarmOther(slot, total);
  char* base = static_cast<char*>(mapped_[slot].addr);
  std::copy(prefix.begin(), prefix.end(), base);  // the header: bytes, not a C string
  std::vector<TensorView> out;
  out.reserve(layout.size());
  char* at = base + prefix.size();
  for (const NamedTensor& t : layout) {
    out.push_back(TensorView::Contiguous(at, t.view.dtype, t.view.shape));
    at += t.view.nbytes();
  }
  return out;
}

Status SlotWriter::Map(int slot, uint64_t total) {
  const std::string path = SlotPath(shm_dir_, local_rank_, slot);
  Mapped& m = mapped_[slot];
  if (m.addr == nullptr || m.size != total) {
    // Cold path: size the file and map it. A file left by a previous worker process is reused
    // (its pages are allocated already; the agent handed this slot out, so nobody reads it),
    // except one this process restored from, which is replaced by a new file.
    Unmap(slot);
    const bool replace = detached_[slot];
    const std::string target = replace ? path + ".new" : path;
    int fd = open(target.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (replace ? O_TRUNC : 0), 0600);
    if (fd < 0) return ErrnoError(errno, "opening checkpoint slot '" + target + "'");
    struct stat st;
    Status s;
    if (fstat(fd, &st) != 0) s = ErrnoError(errno, "stat of '" + target + "'");
    if (s.ok() && static_cast<uint64_t>(st.st_size) > total &&
        ftruncate(fd, static_cast<off_t>(total)) != 0) {
      s = ErrnoError(errno, "resizing '" + target + "'");
    }
    // fallocate allocates every page now: ENOSPC here instead of SIGBUS in the copy.
    if (s.ok()) {
      int rc = posix_fallocate(fd, 0, static_cast<off_t>(total));
      if (rc == ENOSPC) s = NoRoom(target, total);
      if (rc != 0 && rc != ENOSPC) s = ErrnoError(rc, "allocating '" + target + "'");
    }
    void* addr = MAP_FAILED;
    if (s.ok()) {
      addr = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
      if (addr == MAP_FAILED) s = ErrnoError(errno, "mapping '" + target + "'");
    }
    close(fd);
    if (s.ok() && replace && rename(target.c_str(), path.c_str()) != 0) {
      s = ErrnoError(errno, "renaming '" + target + "' to '" + path + "'");
    }
    if (!s.ok()) {
      if (addr != MAP_FAILED) munmap(addr, total);
      if (replace) unlink(target.c_str());
      return s;
    }
    detached_[slot] = false;
    m = Mapped{addr, static_cast<size_t>(total)};
  }
  return OkStatus();
}

void SlotWriter::WarmOther(int slot, uint64_t total) {
  const int other = 1 - slot;
  if (mapped_[other].addr != nullptr || detached_[other]) return;
  struct stat st;
  const std::string path = SlotPath(shm_dir_, local_rank_, other);
  const bool absent = stat(path.c_str(), &st) != 0 && errno == ENOENT;
  // Only an absent file is created; an existing one is merely mapped when it has the right
  // size (it may hold a step the agent persists or restores: never resize or write it).
  if (!absent && static_cast<uint64_t>(st.st_size) != total) return;
  warmer_ = std::thread([this, other, total] {
    Status s = Map(other, total);
    if (!s.ok()) KEEL_LOG(Debug, "keel.ckpt: warming slot {}: {}", other, s.ToString());
  });
}

}  // namespace keel::ckpt

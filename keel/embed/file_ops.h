// FileOps: the seam through which SsdStore reaches segment files, so tests can inject
// failures (ENOSPC on a write, EIO on a read) at chosen points. UniqueFd: an owned descriptor.
//
//   FileOps& ops = FileOps::Posix();             // the real calls
//   int fd = ops.Open(path, O_RDWR | O_CREAT, 0644);
//   ssize_t n = ops.Pwrite(fd, buf, len, offset);  // -1 with errno set on failure
//
// The methods mirror the POSIX calls and report errors the same way (-1 and errno), so a
// fake can forward to Posix() for the calls it does not want to break.
// Thread-safety: Posix() is thread-safe; a fake must be too (reads run on several threads).
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>

namespace keel::embed {

class FileOps {
 public:
  virtual ~FileOps() = default;
  virtual int Open(const char* path, int flags, mode_t mode) = 0;
  virtual ssize_t Pwrite(int fd, const void* buf, size_t n, off_t offset) = 0;
  virtual ssize_t Preadv(int fd, const iovec* iov, int iovcnt, off_t offset) = 0;

  // The process-wide POSIX implementation (never destroyed).
  static FileOps& Posix();
};

// Closes its descriptor on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset();

 private:
  int fd_ = -1;
};

}  // namespace keel::embed

// The POSIX FileOps and UniqueFd.
#include "keel/embed/file_ops.h"

#include <fcntl.h>
#include <unistd.h>

namespace keel::embed {
namespace {

class PosixFileOps final : public FileOps {
 public:
  int Open(const char* path, int flags, mode_t mode) override {
    return ::open(path, flags | O_CLOEXEC, mode);
  }
  ssize_t Pwrite(int fd, const void* buf, size_t n, off_t offset) override {
    return ::pwrite(fd, buf, n, offset);
  }
  ssize_t Preadv(int fd, const iovec* iov, int iovcnt, off_t offset) override {
    return ::preadv(fd, iov, iovcnt, offset);
  }
};

}  // namespace

FileOps& FileOps::Posix() {
  static auto* ops = new PosixFileOps();  // never destroyed: usable from static destructors
  return *ops;
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    Reset();
    fd_ = other.Release();
  }
  return *this;
}

void UniqueFd::Reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

}  // namespace keel::embed

// Atomic small-file writes and the step commit protocol.
#include "keel/ckpt/commit.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <vector>

namespace keel::ckpt {

Status WriteAll(int fd, const void* data, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "writing '" + path + "'");
    p += n;
    size -= static_cast<size_t>(n);
  }
  return OkStatus();
}

Status WriteAtomically(const std::string& path,
                       const std::function<Status(int fd, const std::string& tmp)>& fill,
                       bool durable) {
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(errno, "creating '" + tmp + "'");
  Status s = fill(fd, tmp);
  if (s.ok() && durable && fsync(fd) != 0) s = ErrnoError(errno, "fsync of '" + tmp + "'");
  close(fd);
  if (s.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
    s = ErrnoError(errno, "renaming '" + tmp + "' to '" + path + "'");
  }
  if (!s.ok()) {
    unlink(tmp.c_str());
    return s;
  }
  if (!durable) return OkStatus();
  const std::string dir = std::filesystem::path(path).parent_path().string();
  int dfd = open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return ErrnoError(errno, "opening directory '" + dir + "'");
  int rc = fsync(dfd);
  int err = errno;
  close(dfd);
  if (rc != 0) return ErrnoError(err, "fsync of directory '" + dir + "'");
  return OkStatus();
}

Status WriteFileAtomically(const std::string& path, const std::string& bytes) {
  return WriteAtomically(path, [&bytes](int fd, const std::string& tmp) {
    return WriteAll(fd, bytes.data(), bytes.size(), tmp);
  });
}

Status CommitStep(const std::string& dir, int64_t step, int world_size, int keep_last) {
  if (step < 0 || world_size < 1 || keep_last < 0) {
    return InvalidArgumentError("commit: bad step " + std::to_string(step) + ", world size " +
                                std::to_string(world_size) + " or keep_last " +
                                std::to_string(keep_last));
  }
  const std::string step_dir = dir + "/step-" + std::to_string(step);
  KEEL_RETURN_IF_ERROR(WriteFileAtomically(
      step_dir + "/COMMITTED", "{\"step\": " + std::to_string(step) +
                                   ", \"world_size\": " + std::to_string(world_size) + "}\n"));
  KEEL_RETURN_IF_ERROR(WriteFileAtomically(dir + "/latest", std::to_string(step) + "\n"));
  std::vector<int64_t> steps;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) != 0 || name.size() == 5 ||
        name.find_first_not_of("0123456789", 5) != std::string::npos) {
      continue;
    }
    const int64_t n = std::stoll(name.substr(5));
    if (std::filesystem::exists(e.path() / "COMMITTED", ec)) {
      steps.push_back(n);
    } else if (n < step) {
      // Never committed (a rank's save was dropped, or an agent died while persisting) and
      // older than a committed step: it can never be loaded.
      std::filesystem::remove_all(e.path(), ec);
    }
  }
  if (keep_last == 0) return OkStatus();
  std::sort(steps.rbegin(), steps.rend());
  for (size_t i = static_cast<size_t>(keep_last); i < steps.size(); ++i) {
    std::filesystem::remove_all(dir + "/step-" + std::to_string(steps[i]), ec);
  }
  return OkStatus();
}

}  // namespace keel::ckpt

// CheckpointHost: shared-memory directory, newest-wins persister, per-node commit.
#include "keel/agent/ckpt_host.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <vector>

#include "keel/ckpt/commit.h"
#include "keel/ckpt/safetensors.h"
#include "keel/common/logging.h"

namespace keel::agent {
namespace {

constexpr char kShmRoot[] = "/dev/shm";

// Removes /dev/shm/keel-<host>-<pid>-<hex> directories whose agent process is gone (an agent
// killed with SIGKILL cannot clean up after itself).
void RemoveStaleDirectories(const std::string& host) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(kShmRoot, ec)) {
    const std::string name = entry.path().filename().string();
    const std::string prefix = "keel-" + host + "-";
    if (!entry.is_directory(ec) || name.rfind(prefix, 0) != 0) continue;
    const std::string rest = name.substr(prefix.size());
    const pid_t pid = static_cast<pid_t>(std::atol(rest.c_str()));
    if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) {
      std::filesystem::remove_all(entry.path(), ec);
      KEEL_LOG(Info, "removed stale checkpoint memory {} (its agent {} is gone)",
               entry.path().string(), pid);
    }
  }
}

}  // namespace

CheckpointHost::CheckpointHost(std::string shm_dir, int local_ranks)
    : shm_dir_(std::move(shm_dir)), local_ranks_(local_ranks) {
  thread_ = std::thread([this] { PersistLoop(); });
}

StatusOr<std::unique_ptr<CheckpointHost>> CheckpointHost::Create(const std::string& id,
                                                                 int local_ranks) {
  // id is "<host>-<pid>-<hex>" (the agent's node id).
  RemoveStaleDirectories(id.substr(0, id.rfind('-', id.rfind('-') - 1)));
  const std::string dir = std::string(kShmRoot) + "/keel-" + id;
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError(errno, "creating checkpoint memory '" + dir + "'");
  }
  return std::unique_ptr<CheckpointHost>(new CheckpointHost(dir, local_ranks));
}

CheckpointHost::~CheckpointHost() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
  thread_.join();
  std::error_code ec;
  std::filesystem::remove_all(shm_dir_, ec);
}

Status CheckpointHost::HandleMessage(const std::string& message) {
  std::istringstream in(message);
  std::string word, dir;
  int rank = -1, persist = -1, keep_last = -1;
  long long step = -1;
  in >> word >> rank >> step >> persist >> keep_last;
  std::getline(in >> std::ws, dir);
  if (word != "ckpt" || in.bad() || rank < 0 || rank >= local_ranks_ || step < 0 ||
      (persist != 0 && persist != 1) || keep_last < 0 || dir.empty() || dir.front() != '/') {
    return InvalidArgumentError("malformed checkpoint message '" + message + "'");
  }
  MutexLock lock(&mu_);
  Saved& s = latest_[rank];
  if (s.queued && s.step != step) {
    ++dropped_;
    KEEL_LOG(Warn,
             "checkpoint: persisting fell behind; step {} of rank {} is dropped for the "
             "newer step {}",
             s.step, rank, step);
  }
  s = Saved{.step = step,
            .persist = persist == 1,
            .keep_last = keep_last,
            .dir = dir,
            .queued = persist == 1};
  cv_.SignalAll();
  return OkStatus();
}

void CheckpointHost::FlushAsync() {
  MutexLock lock(&mu_);
  for (auto& [rank, s] : latest_) {
    if (!s.done && s.step >= 0) s.queued = true;  // memory-only saves too
  }
  cv_.SignalAll();
}

void CheckpointHost::Flush(Duration timeout) {
  FlushAsync();
  const TimePoint deadline = Clock::Real()->Now() + timeout;
  MutexLock lock(&mu_);
  while (in_flight_ > 0 || std::any_of(latest_.begin(), latest_.end(),
                                       [](const auto& e) { return e.second.queued; })) {
    const Duration left = deadline - Clock::Real()->Now();
    if (left <= Duration::zero()) {
      KEEL_LOG(Warn, "checkpoint: persisting did not finish within the flush timeout");
      return;
    }
    cv_.WaitFor(&mu_, std::min<Duration>(left, std::chrono::milliseconds(50)));
  }
}

void CheckpointHost::PersistLoop() {
  MutexLock lock(&mu_);
  while (true) {
    auto next =
        std::find_if(latest_.begin(), latest_.end(), [](const auto& e) { return e.second.queued; });
    if (next == latest_.end()) {
      if (stopping_) return;
      cv_.Wait(&mu_);
      continue;
    }
    const int rank = next->first;
    Saved job = next->second;
    next->second.queued = false;
    ++in_flight_;
    mu_.Unlock();
    Status s = Persist(rank, job);
    mu_.Lock();
    --in_flight_;
    if (s.ok()) {
      ++persisted_;
      Saved& cur = latest_[rank];
      if (cur.step == job.step) cur.done = true;
      if (++durable_[{job.dir, job.step}] == local_ranks_) {
        Status c = ckpt::CommitStep(job.dir, job.step, local_ranks_, job.keep_last);
        if (c.ok()) KEEL_LOG(Info, "checkpoint: step {} committed in {}", job.step, job.dir);
        if (!c.ok()) KEEL_LOG(Error, "checkpoint: {}", c.ToString());
      }
    } else {
      KEEL_LOG(Error, "checkpoint: persisting rank {} step {} failed: {}", rank, job.step,
               s.ToString());
    }
    cv_.SignalAll();
  }
}

Status CheckpointHost::Persist(int rank, const Saved& job) {
  const std::string src = shm_dir_ + "/rank-" + std::to_string(rank) + ".safetensors";
  KEEL_ASSIGN_OR_RETURN(auto file, ckpt::SafetensorsFile::Open(src));
  auto it = file->metadata().find("keel.step");
  if (it == file->metadata().end() || it->second != std::to_string(job.step)) {
    return AbortedError("the memory slot already holds another step");  // a newer save won
  }
  const std::string step_dir = job.dir + "/step-" + std::to_string(job.step);
  std::error_code ec;
  std::filesystem::create_directories(step_dir, ec);
  if (ec) return InternalError("creating '" + step_dir + "': " + ec.message());
  // Rewritten rather than copied: the memory copy carries no checksum (computing it would
  // lengthen the worker's save), so the CRC-32 is computed here, off the training path.
  std::vector<ckpt::NamedTensor> tensors;
  for (const std::string& name : file->names()) {
    KEEL_ASSIGN_OR_RETURN(TensorView view, file->Get(name));
    tensors.push_back({name, std::move(view)});
  }
  std::map<std::string, std::string> metadata = file->metadata();
  return ckpt::WriteSafetensors(step_dir + "/rank-" + std::to_string(rank) + ".safetensors",
                                tensors, metadata);
}

int64_t CheckpointHost::persisted_files() const {
  MutexLock lock(&mu_);
  return persisted_;
}

int64_t CheckpointHost::dropped_steps() const {
  MutexLock lock(&mu_);
  return dropped_;
}

}  // namespace keel::agent

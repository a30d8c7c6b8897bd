// CheckpointHost: slot assignment, newest-wins persister, commit through the master.
#include "keel/agent/ckpt_host.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "keel/ckpt/commit.h"
#include "keel/ckpt/memory_slot.h"
#include "keel/ckpt/safetensors.h"
#include "keel/common/logging.h"

namespace keel::agent {
namespace {

// Where the slots live: /dev/shm, or $KEEL_SHM_ROOT (another tmpfs, e.g. a bigger one).
std::string ShmRoot() {
  const char* root = std::getenv("KEEL_SHM_ROOT");
  return root != nullptr && *root == '/' ? root : "/dev/shm";
}

// Removes /dev/shm/keel-<host>-<pid>-<hex> directories whose agent process is gone (an agent
// killed with SIGKILL cannot clean up after itself).
void RemoveStaleDirectories(const std::string& host) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(ShmRoot(), ec)) {
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

std::string Error(const std::string& what) { return "error " + what; }

}  // namespace

CheckpointHost::CheckpointHost(std::string shm_dir, int local_ranks, Master master)
    : shm_dir_(std::move(shm_dir)), local_ranks_(local_ranks), master_(std::move(master)) {
  {
    MutexLock lock(&mu_);
    ranks_.resize(static_cast<size_t>(local_ranks));
  }
  thread_ = std::thread([this] { PersistLoop(); });
}

StatusOr<std::unique_ptr<CheckpointHost>> CheckpointHost::Create(const std::string& id,
                                                                 int local_ranks, Master master) {
  // id is "<host>-<pid>-<hex>" (the agent's node id).
  RemoveStaleDirectories(id.substr(0, id.rfind('-', id.rfind('-') - 1)));
  const std::string dir = ShmRoot() + "/keel-" + id;
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError(errno, "creating checkpoint memory '" + dir + "'");
  }
  return std::unique_ptr<CheckpointHost>(new CheckpointHost(dir, local_ranks, std::move(master)));
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

std::string CheckpointHost::HandleRequest(const std::string& message) {
  std::istringstream in(message);
  std::string word;
  int local = -1;
  in >> word >> local;
  if (in.fail() || local < 0 || local >= local_ranks_) {
    return Error("malformed checkpoint request '" + message + "' (local rank 0-" +
                 std::to_string(local_ranks_ - 1) + " expected)");
  }
  if (word == "ckpt-restore") return Restore(local);
  MutexLock lock(&mu_);
  if (word == "ckpt-begin") return Begin(local);
  if (word == "ckpt-saved") {
    int slot = -1, persist = -1;
    Slot s;
    long long step = -1;
    in >> slot >> step >> s.rank >> s.world_size >> persist >> s.keep_last;
    std::getline(in >> std::ws, s.dir);
    if (in.bad() || (slot != 0 && slot != 1) || step < 0 || s.world_size <= 0 || s.rank < 0 ||
        s.rank >= s.world_size || (persist != 0 && persist != 1) || s.keep_last < 0 ||
        s.dir.empty() || s.dir.front() != '/') {
      return Error("malformed checkpoint request '" + message + "'");
    }
    s.step = step;
    s.queued = persist == 1;
    return Saved(local, slot, s);
  }
  return Error("unknown checkpoint request '" + word + "'");
}

void CheckpointHost::Drop(int local, Slot* s, int64_t newer) {
  ++counters_.dropped_steps;
  KEEL_LOG(Warn,
           "checkpoint: persisting fell behind; step {} of local rank {} is dropped for {} "
           "(the newest step wins and will be persisted instead)",
           s->step, local, newer >= 0 ? "step " + std::to_string(newer) : "a newer save");
  s->queued = false;
}

std::string CheckpointHost::Begin(int local) {
  Rank& r = ranks_[local];
  // Prefer a slot that holds nothing complete, then the older step; never the pinned one.
  int pick = -1;
  for (int i = 0; i < 2; ++i) {
    if (i == r.pinned) continue;
    if (pick < 0) {
      pick = i;
      continue;
    }
    const Slot& a = r.slots[pick];
    const Slot& b = r.slots[i];
    if (a.complete && (!b.complete || b.step < a.step)) pick = i;
  }
  Slot& s = r.slots[pick];
  Slot next;
  next.writing = true;
  if (s.complete && s.queued) {
    Drop(local, &s, -1);
    next.queued = true;  // the coming save inherits the persist request
  }
  s = next;
  report_due_ = true;  // the slot's old step is gone
  cv_.SignalAll();
  return "ok " + std::to_string(pick);
}

std::string CheckpointHost::Saved(int local, int slot, const Slot& saved) {
  Rank& r = ranks_[local];
  Slot& s = r.slots[slot];
  if (!s.writing) {
    return Error("slot " + std::to_string(slot) + " of local rank " + std::to_string(local) +
                 " was not handed out for writing (ckpt-begin first)");
  }
  const bool inherited = s.queued;
  s = saved;
  s.queued = saved.queued || inherited;
  Slot& other = r.slots[1 - slot];
  if (other.complete && other.queued && other.step < s.step && r.pinned != 1 - slot) {
    Drop(local, &other, s.step);
    s.queued = true;
  }
  s.complete = true;
  ++counters_.saves;
  report_due_ = true;
  cv_.SignalAll();
  return "ok";
}

std::string CheckpointHost::Restore(int local) {
  int64_t step = -1;
  if (master_.restore_step) {
    StatusOr<int64_t> decided = master_.restore_step();
    if (!decided.ok()) return Error("asking the master: " + decided.status().ToString());
    step = *decided;
  }
  MutexLock lock(&mu_);
  const Rank& r = ranks_[local];
  for (int i = 0; step >= 0 && i < 2; ++i) {
    if (r.slots[i].complete && r.slots[i].step == step) {
      return "ok " + std::to_string(i) + " " + std::to_string(step);
    }
  }
  return "ok -1 -1";
}

void CheckpointHost::QueueNewest() {
  for (Rank& r : ranks_) {
    Slot* newest = nullptr;
    for (Slot& s : r.slots) {
      if (s.complete && (newest == nullptr || s.step > newest->step)) newest = &s;
    }
    // A slot the persister is writing right now (pinned) will be marked persisted when it
    // finishes; queueing it again would persist the same step twice.
    const bool in_flight = r.pinned >= 0 && newest == &r.slots[r.pinned];
    if (newest != nullptr && !newest->persisted && !in_flight) newest->queued = true;
  }
  cv_.SignalAll();
}

void CheckpointHost::FlushAsync() {
  MutexLock lock(&mu_);
  QueueNewest();
}

void CheckpointHost::Flush(Duration timeout) {
  const TimePoint deadline = Clock::Real()->Now() + timeout;
  MutexLock lock(&mu_);
  QueueNewest();
  auto busy = [this]() KEEL_REQUIRES(mu_) {
    if (in_flight_ > 0) return true;
    for (const Rank& r : ranks_) {
      for (const Slot& s : r.slots) {
        if (s.complete && s.queued) return true;
      }
    }
    return false;
  };
  while (busy()) {
    const Duration left = deadline - Clock::Real()->Now();
    if (left <= Duration::zero()) {
      KEEL_LOG(Warn, "checkpoint: persisting did not finish within the flush timeout");
      return;
    }
    cv_.WaitFor(&mu_, std::min<Duration>(left, std::chrono::milliseconds(50)));
  }
}

rpc::CheckpointReport CheckpointHost::BuildReport() const {
  rpc::CheckpointReport report;
  for (const Rank& r : ranks_) {
    for (const Slot& s : r.slots) {
      if (!s.complete) continue;
      rpc::MemoryCopy* c = report.add_memory();
      c->set_rank(s.rank);
      c->set_world_size(s.world_size);
      c->set_step(s.step);
    }
  }
  report.set_saves(counters_.saves);
  report.set_dropped_steps(counters_.dropped_steps);
  report.set_persisted_files(counters_.persisted_files);
  report.set_persisted_bytes(counters_.persisted_bytes);
  return report;
}

void CheckpointHost::ReportMemory() { (void)SendReport(nullptr, ""); }

StatusOr<bool> CheckpointHost::SendReport(const Slot* persisted, const std::string& dir) {
  // One report at a time, built and sent in order: the master never sees an older state
  // after a newer one.
  MutexLock order(&report_mu_);
  rpc::CheckpointReport report;
  {
    MutexLock lock(&mu_);
    report = BuildReport();
    report_due_ = false;
  }
  if (persisted != nullptr) {
    report.set_dir(dir);
    rpc::MemoryCopy* p = report.mutable_persisted();
    p->set_rank(persisted->rank);
    p->set_world_size(persisted->world_size);
    p->set_step(persisted->step);
  }
  if (!master_.report) return persisted != nullptr;  // no master: this node commits alone
  StatusOr<bool> s = master_.report(report);
  if (!s.ok()) KEEL_LOG(Warn, "checkpoint: reporting to the master: {}", s.status().ToString());
  return s;
}

void CheckpointHost::PersistLoop() {
  MutexLock lock(&mu_);
  while (true) {
    if (report_due_) {
      mu_.Unlock();
      (void)SendReport(nullptr, "");  // failures are logged
      mu_.Lock();
      continue;
    }
    int local = -1, slot = -1;
    for (int i = 0; local < 0 && i < local_ranks_; ++i) {
      for (int j = 0; j < 2; ++j) {
        if (ranks_[i].slots[j].complete && ranks_[i].slots[j].queued) {
          local = i;
          slot = j;
          break;
        }
      }
    }
    if (local < 0) {
      if (stopping_) return;
      cv_.Wait(&mu_);
      continue;
    }
    Rank& r = ranks_[local];
    const Slot job = r.slots[slot];
    r.slots[slot].queued = false;
    r.pinned = slot;
    ++in_flight_;
    mu_.Unlock();
    int64_t bytes = 0;
    Status s = Persist(local, slot, job, &bytes);
    mu_.Lock();
    r.pinned = -1;
    if (s.ok()) {
      ++counters_.persisted_files;
      counters_.persisted_bytes += bytes;
      Slot& cur = r.slots[slot];
      if (cur.complete && cur.step == job.step) cur.persisted = true;
      mu_.Unlock();
      StatusOr<bool> commit = SendReport(&job, job.dir);
      Status c = commit.ok() && *commit
                     ? ckpt::CommitStep(job.dir, job.step, job.world_size, job.keep_last)
                     : commit.status();
      if (commit.ok() && *commit && c.ok()) {
        KEEL_LOG(Debug, "checkpoint: step {} committed in {}", job.step, job.dir);
      }
      if (!c.ok()) KEEL_LOG(Error, "checkpoint: committing step {}: {}", job.step, c.ToString());
      mu_.Lock();
    } else {
      KEEL_LOG(Error, "checkpoint: persisting rank {} step {} failed: {}", job.rank, job.step,
               s.ToString());
    }
    --in_flight_;
    cv_.SignalAll();
  }
}

Status CheckpointHost::Persist(int local, int slot, const Slot& job, int64_t* bytes) {
  const std::string src = ckpt::SlotPath(shm_dir_, local, slot);
  KEEL_ASSIGN_OR_RETURN(auto file, ckpt::SafetensorsFile::Open(src));
  auto it = file->metadata().find("keel.step");
  if (it == file->metadata().end() || it->second != std::to_string(job.step)) {
    return InternalError("slot " + src + " does not hold step " + std::to_string(job.step));
  }
  const std::string step_dir = job.dir + "/step-" + std::to_string(job.step);
  std::error_code ec;
  std::filesystem::create_directories(step_dir, ec);
  if (ec) return InternalError("creating '" + step_dir + "': " + ec.message());
  // Rewritten rather than copied: the memory copy carries no checksum (computing it would
  // lengthen the worker's save), so the CRC-32 is computed here, off the training path.
  std::vector<ckpt::NamedTensor> tensors;
  tensors.reserve(file->names().size());
  for (const std::string& name : file->names()) {
    KEEL_ASSIGN_OR_RETURN(TensorView view, file->Get(name));
    tensors.push_back({name, std::move(view)});
  }
  *bytes = static_cast<int64_t>(file->file_size());
  return ckpt::WriteSafetensors(step_dir + "/rank-" + std::to_string(job.rank) + ".safetensors",
                                tensors, file->metadata());
}

CheckpointHost::Counters CheckpointHost::counters() const {
  MutexLock lock(&mu_);
  return counters_;
}

}  // namespace keel::agent

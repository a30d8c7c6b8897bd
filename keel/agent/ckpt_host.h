// CheckpointHost: the agent's side of keel.ckpt — the shared-memory slots and the
// asynchronous persister.
//
// The agent owns /dev/shm/keel-<node id>/ ($KEEL_SHM_ROOT instead of /dev/shm if set), so the
// slots outlive a worker crash. Each local rank
// has two slots (keel/ckpt/memory_slot.h). A worker saves in three steps over the agent's
// socket: "ckpt-begin" (the agent names the slot to write: never the one being persisted,
// never the newest complete one unless the other is being persisted), the copy into the slot,
// then "ckpt-saved" (the slot is complete). A save therefore never waits for a persist and is
// never skipped. The persister copies the newest complete step of each rank to
// DIR/step-<N>/rank-<R>.safetensors (with a CRC-32, fsynced) and reports it to the master,
// which answers "commit" to the node whose report completed the step; that node writes
// DIR/step-<N>/COMMITTED and DIR/latest (keel/ckpt/commit.h). When persisting falls behind,
// the newest step wins: an older unpersisted step is dropped (logged, counted) and the newer
// one inherits its persist request.
// "ckpt-restore" answers which slot holds the step the master chose for this round.
// Thread-safety: all public methods are thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "keel/common/clock.h"
#include "keel/common/mutex.h"
#include "keel/common/status.h"
#include "keel/rpc/keel.pb.h"

namespace keel::agent {

class CheckpointHost {
 public:
  struct Master {
    // Sends a report; returns true if this node must commit report.persisted.
    std::function<StatusOr<bool>(const rpc::CheckpointReport&)> report;
    // The step every rank of the running round restores from memory (-1: none).
    std::function<StatusOr<int64_t>()> restore_step;
  };

  // Creates the shared-memory directory for node `id` (removing directories left by dead
  // agents of this host) and starts the persister.
  static StatusOr<std::unique_ptr<CheckpointHost>> Create(const std::string& id, int local_ranks,
                                                          Master master);
  ~CheckpointHost();  // stops the persister and removes the shared-memory directory

  const std::string& shm_dir() const { return shm_dir_; }

  // Handles a worker's request (see above; docs/formats/checkpoint.md) and returns the reply:
  // "ok ..." or "error <what was wrong>".
  std::string HandleRequest(const std::string& message);
  // Breakpoint save: persists the newest complete step of every rank (memory-only saves too)
  // and waits for the persister, at most `timeout`. Called before the agent exits.
  void Flush(Duration timeout);
  // Queues the same without waiting (at a round change: the restart must not wait for disk).
  void FlushAsync();
  // Tells the master what the slots hold now (synchronously: before the node rejoins a round,
  // so the master's restore decision sees every node's final state).
  void ReportMemory();

  struct Counters {
    int64_t saves = 0, dropped_steps = 0, persisted_files = 0, persisted_bytes = 0;
  };
  Counters counters() const;

 private:
  struct Slot {
    bool writing = false;   // handed to a worker, not yet complete
    bool complete = false;  // holds `step`
    int64_t step = -1;
    int rank = -1;  // global rank that saved it
    int world_size = 0;
    bool queued = false;     // waiting for the persister
    bool persisted = false;  // on disk
    int keep_last = 3;
    std::string dir;
  };
  struct Rank {
    Slot slots[2];
    int pinned = -1;  // slot the persister is reading
  };

  CheckpointHost(std::string shm_dir, int local_ranks, Master master);
  std::string Begin(int local) KEEL_REQUIRES(mu_);
  std::string Saved(int local, int slot, const Slot& saved) KEEL_REQUIRES(mu_);
  std::string Restore(int local);
  void Drop(int local, Slot* s, int64_t newer) KEEL_REQUIRES(mu_);
  void QueueNewest() KEEL_REQUIRES(mu_);
  rpc::CheckpointReport BuildReport() const KEEL_REQUIRES(mu_);
  // Reports the slots (and `persisted`, a rank file now durable in `dir`) to the master;
  // returns whether this node must commit `persisted`.
  StatusOr<bool> SendReport(const Slot* persisted, const std::string& dir)
      KEEL_EXCLUDES(mu_, report_mu_);
  void PersistLoop();
  Status Persist(int local, int slot, const Slot& job, int64_t* bytes);

  const std::string shm_dir_;
  const int local_ranks_;
  const Master master_;
  Mutex report_mu_ KEEL_ACQUIRED_BEFORE(mu_);
  mutable Mutex mu_;
  CondVar cv_;
  std::vector<Rank> ranks_ KEEL_GUARDED_BY(mu_);
  bool report_due_ KEEL_GUARDED_BY(mu_) = false;
  int in_flight_ KEEL_GUARDED_BY(mu_) = 0;
  bool stopping_ KEEL_GUARDED_BY(mu_) = false;
  Counters counters_ KEEL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace keel::agent

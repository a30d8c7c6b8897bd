// CheckpointHost: the agent's side of keel.ckpt — the shared-memory tier and the
// asynchronous persister.
//
// Workers save each rank's state as a safetensors file in the agent-owned directory
// /dev/shm/keel-<node id>/ (rank-<R>.safetensors, replaced atomically), then tell the agent
// over its socket. The files outlive a worker crash, so restarted workers restore from memory.
// A persister thread copies the newest saved step of each rank to
// DIR/step-<N>/rank-<R>.safetensors and, once every local rank of step N is durable, commits
// it (DIR/step-<N>/COMMITTED, then DIR/latest, each written atomically) and applies
// keep_last. When persisting falls behind, the newest step wins: an older step not yet
// started is dropped and logged (dropped_steps()).
// Note: commits are per node; this tier serves single-node jobs (workers fall back to
// synchronous saves in multi-node jobs until the master coordinates commits).
// Thread-safety: all public methods are thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <thread>

#include "keel/common/clock.h"
#include "keel/common/mutex.h"
#include "keel/common/status.h"

namespace keel::agent {

class CheckpointHost {
 public:
  // Creates the shared-memory directory for node `id` (removing directories left by dead
  // agents of this host) and starts the persister. `local_ranks` ranks commit a step.
  static StatusOr<std::unique_ptr<CheckpointHost>> Create(const std::string& id, int local_ranks);
  ~CheckpointHost();  // stops the persister and removes the shared-memory directory

  const std::string& shm_dir() const { return shm_dir_; }

  // Handles a worker's message: "ckpt <rank> <step> <persist 0|1> <keep_last> <dir>".
  Status HandleMessage(const std::string& message);
  // Persists the newest saved step of every rank (memory-only saves too) and waits for the
  // persister, at most `timeout`. Called before workers are stopped or the agent exits.
  void Flush(Duration timeout);
  // Queues the same without waiting (at a round change: the restart must not wait for disk).
  void FlushAsync();

  int64_t persisted_files() const;
  int64_t dropped_steps() const;

 private:
  struct Saved {
    int64_t step = -1;
    bool persist = false;
    int keep_last = 3;
    std::string dir;
    bool queued = false;  // waiting for the persister
    bool done = false;    // persisted
  };
  CheckpointHost(std::string shm_dir, int local_ranks);
  void PersistLoop();
  Status Persist(int rank, const Saved& s);

  const std::string shm_dir_;
  const int local_ranks_;
  mutable Mutex mu_;
  CondVar cv_;
  std::map<int, Saved> latest_ KEEL_GUARDED_BY(mu_);                             // by rank
  std::map<std::pair<std::string, int64_t>, int> durable_ KEEL_GUARDED_BY(mu_);  // ranks done
  int in_flight_ KEEL_GUARDED_BY(mu_) = 0;
  bool stopping_ KEEL_GUARDED_BY(mu_) = false;
  int64_t persisted_ KEEL_GUARDED_BY(mu_) = 0;
  int64_t dropped_ KEEL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace keel::agent

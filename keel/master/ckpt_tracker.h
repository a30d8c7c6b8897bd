// CheckpointTracker: the master's view of keel.ckpt across the job — which steps each node
// holds in memory, which rank files are durable on disk — and the two decisions made from it:
// when a step is committed (every rank persisted it), and which step every rank restores from
// memory after a restart (the newest step each rank of the current world holds, on the node
// that runs that rank now). Every rank gets the same answer at a restart because the inputs
// do not change meanwhile: each agent reports its final slots before it rejoins the round,
// and workers save again only after they loaded.
// Thread-safety: not thread-safe; MasterService calls it under its mutex.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "keel/master/job_controller.h"

namespace keel::master {

struct MemoryCopy {
  int rank = 0;        // global rank that saved it
  int world_size = 0;  // world size when saved
  int64_t step = 0;
};

struct CheckpointCounters {
  int64_t saves = 0;
  int64_t dropped_steps = 0;
  int64_t persisted_files = 0;
  int64_t persisted_bytes = 0;
};

class CheckpointTracker {
 public:
  // Replaces what `node` holds in memory, and its running counters.
  void Update(const std::string& node, std::vector<MemoryCopy> memory,
              const CheckpointCounters& counters);
  // DIR/step-<file.step>/rank-<file.rank>.safetensors is durable. True exactly once per
  // (dir, step): for the report that completes ranks 0..world_size-1 (the caller commits).
  bool Persisted(const std::string& dir, const MemoryCopy& file);
  // The newest step every rank of `world` holds in memory (saved at world size `world_size`),
  // or -1.
  int64_t RestoreStep(const std::vector<Member>& world, int world_size) const;
  // Forgets nodes that are no longer part of the job.
  void Retain(const std::set<std::string>& nodes);

  CheckpointCounters Totals() const;
  int64_t committed_step() const { return committed_step_; }
  const std::string& committed_dir() const { return committed_dir_; }

 private:
  static constexpr size_t kMaxPending = 1024;  // steps persisted by some ranks only

  std::map<std::string, std::vector<MemoryCopy>> memory_;
  std::map<std::string, CheckpointCounters> counters_;
  std::map<std::pair<std::string, int64_t>, std::set<int>> pending_;  // (dir, step) -> ranks
  std::set<std::pair<std::string, int64_t>> committed_;
  int64_t committed_step_ = -1;
  std::string committed_dir_;
};

}  // namespace keel::master

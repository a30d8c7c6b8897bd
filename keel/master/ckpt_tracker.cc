// CheckpointTracker: commit and restore decisions for keel.ckpt.
#include "keel/master/ckpt_tracker.h"

#include <algorithm>

namespace keel::master {

void CheckpointTracker::Update(const std::string& node, std::vector<MemoryCopy> memory,
                               const CheckpointCounters& counters) {
  memory_[node] = std::move(memory);
  counters_[node] = counters;
}

bool CheckpointTracker::Persisted(const std::string& dir, const MemoryCopy& file) {
  if (file.world_size <= 0 || file.rank < 0 || file.rank >= file.world_size) return false;
  const auto key = std::make_pair(dir, file.step);
  if (committed_.count(key) > 0) return false;
  std::set<int>& ranks = pending_[key];
  ranks.insert(file.rank);
  if (static_cast<int>(ranks.size()) < file.world_size) {
    while (pending_.size() > kMaxPending) pending_.erase(pending_.begin());  // oldest dir/step
    return false;
  }
  pending_.erase(key);
  committed_.insert(key);
  while (committed_.size() > kMaxPending) committed_.erase(committed_.begin());
  if (file.step >= committed_step_) {
    committed_step_ = file.step;
    committed_dir_ = dir;
  }
  return true;
}

int64_t CheckpointTracker::RestoreStep(const std::vector<Member>& world, int world_size) const {
  std::set<int64_t> common;
  bool first = true;
  for (const Member& m : world) {
    auto it = memory_.find(m.node_id);
    for (int local = 0; local < m.nproc; ++local) {
      std::set<int64_t> held;
      if (it != memory_.end()) {
        for (const MemoryCopy& c : it->second) {
          if (c.rank == m.first_rank + local && c.world_size == world_size) held.insert(c.step);
        }
      }
      if (first) {
        common = std::move(held);
        first = false;
      } else {
        std::set<int64_t> both;
        std::set_intersection(common.begin(), common.end(), held.begin(), held.end(),
                              std::inserter(both, both.begin()));
        common = std::move(both);
      }
    }
  }
  return common.empty() ? -1 : *common.rbegin();
}

void CheckpointTracker::Retain(const std::set<std::string>& nodes) {
  for (auto it = memory_.begin(); it != memory_.end();) {
    it = nodes.count(it->first) > 0 ? std::next(it) : memory_.erase(it);
  }
}

CheckpointCounters CheckpointTracker::Totals() const {
  CheckpointCounters t;
  for (const auto& [node, c] : counters_) {
    t.saves += c.saves;
    t.dropped_steps += c.dropped_steps;
    t.persisted_files += c.persisted_files;
    t.persisted_bytes += c.persisted_bytes;
  }
  return t;
}

}  // namespace keel::master

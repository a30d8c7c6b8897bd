// The table's implementation class, shared by table.cc (lookups, updates, eviction, expiry)
// and table_checkpoint.cc (save, load). Internal to keel/embed.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "keel/common/mutex.h"
#include "keel/embed/admission.h"
#include "keel/embed/initializer.h"
#include "keel/embed/row_optimizer.h"
#include "keel/embed/shard.h"
#include "keel/embed/ssd_store.h"
#include "keel/embed/table.h"

namespace keel::embed {

// A batch's distinct ids, their multiplicity and where each input position went.
struct Dedup {
  std::vector<uint64_t> ids;
  std::vector<uint32_t> count;
  std::vector<int64_t> unique_of;  // input position -> index in ids

  explicit Dedup(std::span<const int64_t> in) {
    size_t cap = 16;
    while (cap < 2 * in.size()) cap <<= 1;
    std::vector<int64_t> table(cap, -1);
    unique_of.resize(in.size());
    for (size_t i = 0; i < in.size(); ++i) {
      const auto id = static_cast<uint64_t>(in[i]);
      size_t h = Mix64(id) & (cap - 1);
      while (table[h] >= 0 && ids[table[h]] != id) h = (h + 1) & (cap - 1);
      if (table[h] < 0) {
        table[h] = static_cast<int64_t>(ids.size());
        ids.push_back(id);
        count.push_back(0);
      }
      ++count[table[h]];
      unique_of[i] = table[h];
    }
  }
};

struct Counters {
  std::atomic<int64_t> lookups{0}, dram_hits{0}, ssd_hits{0}, admissions{0}, rejected{0},
      evictions{0}, dropped{0}, expired{0};
};

class TableImpl final : public Table {
 public:
  TableImpl(const TableOptions& o, Initializer init, std::unique_ptr<SsdStore> ssd)
      : Table(o.dim), o_(o), init_(init), ssd_(std::move(ssd)) {
    const int slots = NumSlots(o.optimizer.kind);
    record_bytes_ = Shard::RecordBytes(o.dim, slots);
    bytes_per_row_ = Shard::BytesPerRow(o.dim, slots);
    if (o.dram_budget_bytes > 0) {
      max_rows_ = std::max<int64_t>(1, o.dram_budget_bytes / bytes_per_row_ / o.shards);
    }
    shift_ = 64;
    for (int s = o.shards; s > 1; s >>= 1) --shift_;
    const int64_t sketch_width = o.admit_after > 1 ? std::max(1024, (1 << 22) / o.shards) : 1;
    for (int s = 0; s < o.shards; ++s) {
      shards_.push_back(
          std::make_unique<ShardState>(o.dim, slots, sketch_width, Mix64(o.seed + s + 1)));
    }
  }

  Status Lookup(std::span<const int64_t> ids, float* out, bool train) override;  // table_batch.cc
  Status ApplyGradients(std::span<const int64_t> ids,
                        const float* grads) override;  // table_batch.cc
  Status Expire() override;
  TableStats stats() const override;
  Status Save(const std::string& dir, bool incremental) override;  // table_checkpoint.cc
  Status Load(const std::string& dir) override;                    // table_checkpoint.cc

 private:
  struct ShardState {
    ShardState(int64_t dim, int slots, int64_t sketch_width, uint64_t seed)
        : shard(dim, slots), sketch(sketch_width), rng(seed) {}
    Mutex mu;
    Shard shard KEEL_GUARDED_BY(mu);
    CountMinSketch sketch KEEL_GUARDED_BY(mu);
    uint64_t rng KEEL_GUARDED_BY(mu);
  };

  int ShardOf(uint64_t id) const {
    return shift_ >= 64 ? 0 : static_cast<int>(Mix64(id) >> shift_);
  }
  // Positions in `ids` grouped by shard: order[begin[s], begin[s + 1]).
  void GroupByShard(const std::vector<uint64_t>& ids, std::vector<int64_t>* order,
                    std::vector<int64_t>* begin) const;
  // The second pass of Lookup / ApplyGradients over the batch's ids (unique indices `misses`,
  // grouped by shard in increasing order) that the first pass did not find in DRAM (Note
  // [Two passes] in table_batch.cc).
  Status LookupMisses(const Dedup& batch, const std::vector<int64_t>& misses, bool train,
                      int64_t step, float* unique_rows);
  Status UpdateMisses(const Dedup& batch, const std::vector<int64_t>& misses, const float* summed,
                      int64_t step);
  // Locks the shards of `misses` (in increasing order), brings them in (BringIn), runs
  // work(shard of each miss, its row or -1) and evicts those shards back to their budgets.
  using MissWork = std::function<Status(std::span<ShardState* const> shard_of,
                                        const std::vector<int64_t>& rows)>;
  Status WithMisses(const Dedup& batch, const std::vector<int64_t>& misses, const MissWork& work);
  // With the shards of `misses` locked: finds each miss in DRAM again (another call may have
  // brought it in), takes the rest from SSD in one call; rows[k] = row of misses[k] or -1.
  Status BringIn(const Dedup& batch, const std::vector<int64_t>& misses,
                 std::span<ShardState* const> shard_of,
                 std::vector<int64_t>* rows) KEEL_NO_THREAD_SAFETY_ANALYSIS;
  // Evicts the (locked) shards down to their row budgets with one SSD write (Note [Budget at
  // the end of a call]).
  Status EvictToBudget(std::span<ShardState* const> shards) KEEL_NO_THREAD_SAFETY_ANALYSIS;
  Status EvictToBudget(ShardState& s) KEEL_REQUIRES(s.mu) {
    ShardState* one = &s;
    return EvictToBudget({&one, 1});
  }
  // A row left the table (expiry, or dropped past the budget): remembered for incremental
  // saves.
  void NoteDeleted(uint64_t id);
  // Checkpoint helpers (table_checkpoint.cc).
  Status WriteRows(const std::string& path, bool incremental, int64_t since);

  const TableOptions o_;
  const Initializer init_;
  std::unique_ptr<SsdStore> ssd_;
  int64_t record_bytes_ = 0, bytes_per_row_ = 0, max_rows_ = 0;  // max_rows_ 0: unlimited
  int shift_ = 64;
  std::vector<std::unique_ptr<ShardState>> shards_;
  std::atomic<int64_t> step_{0};
  mutable Counters counters_;

  // Incremental saves (Note [Save epochs] in table_checkpoint.cc).
  std::atomic<int64_t> epoch_{1};
  Mutex save_mu_;                                           // one Save/Load at a time
  int64_t last_save_start_ KEEL_GUARDED_BY(save_mu_) = -1;  // -1: nothing saved yet
  std::string last_save_dir_ KEEL_GUARDED_BY(save_mu_);
  int64_t next_file_ KEEL_GUARDED_BY(save_mu_) = 1;
  std::vector<std::string> chain_ KEEL_GUARDED_BY(save_mu_);  // files of the last save's MANIFEST
  std::atomic<bool> track_deletions_{false};                  // after the first save or load
  Mutex deleted_mu_;
  std::vector<std::pair<uint64_t, int64_t>> deleted_ KEEL_GUARDED_BY(deleted_mu_);  // id, epoch
};

}  // namespace keel::embed

// The table's batch path (see table.h): Lookup and ApplyGradients over the sharded DRAM tier,
// admission, promotion from and eviction to the SSD tier.
//
// Note [Two passes]: a batch first visits its shards one at a time (each under its own lock)
// and serves every id already in DRAM: copies out the value, or applies the optimizer step.
// The ids it did not find ("misses") go to a second pass that locks all their shards at once,
// in increasing shard order (no other code holds two shard locks, so there is no cycle),
// finds them again, takes the rest from the SSD tier in one call, admits new ids, serves
// them, and evicts those shards down to the budget with one SSD write. One read and one write
// per batch instead of one per shard, and an all-DRAM batch never takes more than one lock
// at a time.
// Note [Rows are in exactly one tier]: a row promoted from SSD is taken (removed) from it,
// and evicted rows are written to it, while their shard is locked; so no other call can see
// an id in neither tier (and create a fresh row) or in both.
// Note [Budget at the end of a call]: a call first brings in every row it needs (promoted or
// admitted), works on them, and only then evicts down to the budget, so no row is evicted
// between being found and being used. Eviction prefers rows not seen at the running step
// (Shard::Victim): a row looked up for this step is about to get its gradient.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "keel/embed/table_impl.h"

namespace keel::embed {
namespace {

// Locks distinct shards in the order given (increasing shard number) for its lifetime.
template <typename ShardState>
class ShardLocks {
 public:
  explicit ShardLocks(std::span<ShardState* const> shards) KEEL_NO_THREAD_SAFETY_ANALYSIS
      : shards_(shards.begin(), shards.end()) {
    shards_.erase(std::unique(shards_.begin(), shards_.end()), shards_.end());
    for (ShardState* s : shards_) s->mu.Lock();
  }
  ~ShardLocks() KEEL_NO_THREAD_SAFETY_ANALYSIS {
    for (auto it = shards_.rbegin(); it != shards_.rend(); ++it) (*it)->mu.Unlock();
  }
  ShardLocks(const ShardLocks&) = delete;
  ShardLocks& operator=(const ShardLocks&) = delete;
  const std::vector<ShardState*>& shards() const { return shards_; }

 private:
  std::vector<ShardState*> shards_;
};

void Touch(RowMeta& m, uint32_t count, int64_t step, int64_t epoch) {
  m.sightings =
      static_cast<uint32_t>(std::min<uint64_t>(uint64_t{m.sightings} + count, UINT32_MAX));
  m.last_step = step;
  m.changed = epoch;
}

// rows[k] = the shard's row of batch id positions[k], or -1; the index buckets and then the
// rows found are prefetched a batch at a time, so their cache misses overlap.
void FindAll(const Shard& shard, const Dedup& batch, std::span<const int64_t> positions,
             std::vector<int64_t>* rows) {
  rows->resize(positions.size());
  for (int64_t u : positions) shard.PrefetchFind(batch.ids[u]);
  for (size_t k = 0; k < positions.size(); ++k) {
    (*rows)[k] = shard.Find(batch.ids[positions[k]]);
    if ((*rows)[k] >= 0) shard.PrefetchRow((*rows)[k]);
  }
}

}  // namespace

void TableImpl::GroupByShard(const std::vector<uint64_t>& ids, std::vector<int64_t>* order,
                             std::vector<int64_t>* begin) const {
  begin->assign(shards_.size() + 1, 0);
  std::vector<int> shard_of(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    shard_of[i] = ShardOf(ids[i]);
    ++(*begin)[shard_of[i] + 1];
  }
  for (size_t s = 0; s < shards_.size(); ++s) (*begin)[s + 1] += (*begin)[s];
  std::vector<int64_t> next(begin->begin(), begin->end() - 1);
  order->resize(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) (*order)[next[shard_of[i]]++] = static_cast<int64_t>(i);
}

Status TableImpl::BringIn(const Dedup& batch, const std::vector<int64_t>& misses,
                          std::span<ShardState* const> shard_of, std::vector<int64_t>* rows) {
  rows->resize(misses.size());
  std::vector<uint64_t> absent;
  std::vector<size_t> where;
  for (size_t k = 0; k < misses.size(); ++k) shard_of[k]->shard.PrefetchFind(batch.ids[misses[k]]);
  for (size_t k = 0; k < misses.size(); ++k) {
    (*rows)[k] = shard_of[k]->shard.Find(batch.ids[misses[k]]);
    if ((*rows)[k] < 0) {
      absent.push_back(batch.ids[misses[k]]);
      where.push_back(k);
    }
  }
  if (absent.empty() || ssd_ == nullptr) return OkStatus();
  std::vector<uint8_t> records(absent.size() * record_bytes_), found(absent.size());
  KEEL_RETURN_IF_ERROR(ssd_->Take(absent, records.data(), found.data()));
  int64_t promoted = 0;
  for (size_t j = 0; j < absent.size(); ++j) {
    if (!found[j]) continue;
    Shard& shard = shard_of[where[j]]->shard;
    const int64_t row = shard.Insert(absent[j]);
    shard.Unpack(records.data() + j * record_bytes_, row);
    (*rows)[where[j]] = row;
    ++promoted;
  }
  counters_.ssd_hits.fetch_add(promoted, std::memory_order_relaxed);
  return OkStatus();
}

Status TableImpl::EvictToBudget(std::span<ShardState* const> shards) {
  if (max_rows_ == 0) return OkStatus();
  const int64_t protect_step = step_.load(std::memory_order_relaxed);
  std::vector<uint64_t> ids;
  std::vector<std::pair<ShardState*, int64_t>> victims;
  std::vector<uint8_t> records;
  for (ShardState* s : shards) {
    for (int64_t k = s->shard.size() - max_rows_; k > 0; --k) {
      const int64_t row = s->shard.Victim(&s->rng, 8, protect_step);
      // Not live while chosen, so the next sample skips it.
      s->shard.meta(row).flags &= ~kLive;
      victims.emplace_back(s, row);
      ids.push_back(s->shard.id(row));
      if (ssd_ != nullptr) {
        records.resize(ids.size() * record_bytes_);
        s->shard.Pack(row, records.data() + (ids.size() - 1) * record_bytes_);
      }
    }
  }
  if (victims.empty()) return OkStatus();
  if (ssd_ != nullptr) {
    Status st = ssd_->Put(ids, records.data());
    if (!st.ok()) {  // keep the rows in DRAM: over budget beats losing them
      for (auto [s, row] : victims) s->shard.meta(row).flags |= kLive;
      return st;
    }
  }
  for (auto [s, row] : victims) {
    s->shard.meta(row).flags |= kLive;
    if (ssd_ == nullptr) NoteDeleted(s->shard.id(row));
    s->shard.Remove(row);
  }
  (ssd_ != nullptr ? counters_.evictions : counters_.dropped)
      .fetch_add(static_cast<int64_t>(victims.size()), std::memory_order_relaxed);
  return OkStatus();
}

Status TableImpl::WithMisses(const Dedup& batch, const std::vector<int64_t>& misses,
                             const MissWork& work) KEEL_NO_THREAD_SAFETY_ANALYSIS {
  std::vector<ShardState*> shard_of(misses.size());
  for (size_t k = 0; k < misses.size(); ++k) {
    shard_of[k] = shards_[ShardOf(batch.ids[misses[k]])].get();
  }
  const ShardLocks<ShardState> locks(shard_of);
  std::vector<int64_t> rows;
  KEEL_RETURN_IF_ERROR(BringIn(batch, misses, shard_of, &rows));
  KEEL_RETURN_IF_ERROR(work(shard_of, rows));
  return EvictToBudget(locks.shards());
}

Status TableImpl::Lookup(std::span<const int64_t> ids, float* out, bool train) {
  const Dedup batch(ids);
  std::vector<int64_t> order, begin;
  GroupByShard(batch.ids, &order, &begin);
  std::vector<float> unique_rows(batch.ids.size() * dim_);
  const int64_t step = step_.load(std::memory_order_relaxed);
  const int64_t epoch = epoch_.load(std::memory_order_relaxed);
  counters_.lookups.fetch_add(static_cast<int64_t>(ids.size()), std::memory_order_relaxed);
  std::vector<int64_t> misses, rows;
  int64_t hits = 0;
  for (size_t si = 0; si < shards_.size(); ++si) {
    if (begin[si] == begin[si + 1]) continue;
    ShardState& s = *shards_[si];
    MutexLock lock(&s.mu);
    FindAll(s.shard, batch, {order.data() + begin[si], order.data() + begin[si + 1]}, &rows);
    for (int64_t k = begin[si]; k < begin[si + 1]; ++k) {
      const int64_t u = order[k];
      const int64_t row = rows[k - begin[si]];
      if (row < 0) {
        misses.push_back(u);
        continue;
      }
      hits += batch.count[u];  // every occurrence was served from DRAM
      if (train) Touch(s.shard.meta(row), batch.count[u], step, epoch);
      std::memcpy(unique_rows.data() + u * dim_, s.shard.values() + row * dim_,
                  dim_ * sizeof(float));
    }
  }
  counters_.dram_hits.fetch_add(hits, std::memory_order_relaxed);
  if (!misses.empty()) {
    KEEL_RETURN_IF_ERROR(LookupMisses(batch, misses, train, step, unique_rows.data()));
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    std::memcpy(out + i * dim_, unique_rows.data() + batch.unique_of[i] * dim_,
                dim_ * sizeof(float));
  }
  return OkStatus();
}

Status TableImpl::LookupMisses(const Dedup& batch, const std::vector<int64_t>& misses, bool train,
                               int64_t step, float* unique_rows) KEEL_NO_THREAD_SAFETY_ANALYSIS {
  const int64_t epoch = epoch_.load(std::memory_order_relaxed);
  auto work = [&](std::span<ShardState* const> shard_of, const std::vector<int64_t>& rows)
                  KEEL_NO_THREAD_SAFETY_ANALYSIS -> Status {
    int64_t admitted = 0, rejected = 0;
    for (size_t k = 0; k < misses.size(); ++k) {
      const int64_t u = misses[k];
      const uint64_t id = batch.ids[u];
      ShardState& s = *shard_of[k];
      float* dst = unique_rows + u * dim_;
      int64_t row = rows[k];
      if (row < 0 && train) {  // admission
        // Without admission the sketch is not consulted (it is one shared
        // cell then).
        const uint32_t seen =
            o_.admit_after <= 1 ? batch.count[u] : s.sketch.Add(id, batch.count[u]);
        if (seen >= o_.admit_after) {
          row = s.shard.Insert(id);
          init_.Fill(id, s.shard.values() + row * dim_, dim_);
          InitSlots(o_.optimizer, s.shard, row);
          s.shard.meta(row).sightings = seen;
          s.shard.meta(row).last_step = step;
          s.shard.meta(row).changed = epoch;
          ++admitted;
        }
      } else if (row >= 0 && train) {
        Touch(s.shard.meta(row), batch.count[u], step, epoch);
      }
      if (row < 0) {
        std::fill(dst, dst + dim_, 0.0f);
        rejected += train ? 1 : 0;
        continue;
      }
      std::memcpy(dst, s.shard.values() + row * dim_, dim_ * sizeof(float));
    }
    counters_.admissions.fetch_add(admitted, std::memory_order_relaxed);
    counters_.rejected.fetch_add(rejected, std::memory_order_relaxed);
    return OkStatus();
  };
  return WithMisses(batch, misses, work);
}

Status TableImpl::ApplyGradients(std::span<const int64_t> ids, const float* grads) {
  const Dedup batch(ids);
  std::vector<float> summed(batch.ids.size() * dim_, 0.0f);
  for (size_t i = 0; i < ids.size(); ++i) {
    float* dst = summed.data() + batch.unique_of[i] * dim_;
    for (int64_t j = 0; j < dim_; ++j) dst[j] += grads[i * dim_ + j];
  }
  std::vector<int64_t> order, begin;
  GroupByShard(batch.ids, &order, &begin);
  const int64_t step = step_.fetch_add(1, std::memory_order_relaxed) + 1;
  const int64_t epoch = epoch_.load(std::memory_order_relaxed);
  std::vector<int64_t> misses, touched, rows;
  std::vector<float> g;
  for (size_t si = 0; si < shards_.size(); ++si) {
    if (begin[si] == begin[si + 1]) continue;
    ShardState& s = *shards_[si];
    MutexLock lock(&s.mu);
    touched.clear();
    g.clear();
    FindAll(s.shard, batch, {order.data() + begin[si], order.data() + begin[si + 1]}, &rows);
    for (int64_t k = begin[si]; k < begin[si + 1]; ++k) {
      const int64_t u = order[k];
      const int64_t row = rows[k - begin[si]];
      if (row < 0) {
        misses.push_back(u);
        continue;
      }
      touched.push_back(row);
      g.insert(g.end(), summed.data() + u * dim_, summed.data() + (u + 1) * dim_);
      s.shard.meta(row).changed = epoch;
      s.shard.meta(row).last_step = step;
    }
    if (!touched.empty()) {
      KEEL_RETURN_IF_ERROR(ApplyStep(o_.optimizer, s.shard, touched, g.data(), step));
    }
  }
  if (!misses.empty()) KEEL_RETURN_IF_ERROR(UpdateMisses(batch, misses, summed.data(), step));
  if (o_.ttl_steps > 0 && step % o_.ttl_steps == 0) return Expire();
  return OkStatus();
}

Status TableImpl::UpdateMisses(const Dedup& batch, const std::vector<int64_t>& misses,
                               const float* summed, int64_t step) KEEL_NO_THREAD_SAFETY_ANALYSIS {
  const int64_t epoch = epoch_.load(std::memory_order_relaxed);
  auto work = [&](std::span<ShardState* const> shard_of, const std::vector<int64_t>& rows)
                  KEEL_NO_THREAD_SAFETY_ANALYSIS -> Status {
    std::vector<int64_t> touched;
    std::vector<float> g;
    for (size_t k = 0; k < misses.size();) {  // misses are grouped by shard
      touched.clear();
      g.clear();
      size_t end = k;
      for (; end < misses.size() && shard_of[end] == shard_of[k]; ++end) {
        if (rows[end] < 0) continue;  // never admitted (or expired): the gradient is dropped
        touched.push_back(rows[end]);
        const float* src = summed + misses[end] * dim_;
        g.insert(g.end(), src, src + dim_);
        RowMeta& m = shard_of[k]->shard.meta(rows[end]);
        m.changed = epoch;
        m.last_step = step;
      }
      if (!touched.empty()) {
        KEEL_RETURN_IF_ERROR(ApplyStep(o_.optimizer, shard_of[k]->shard, touched, g.data(), step));
      }
      k = end;
    }
    return OkStatus();
  };
  return WithMisses(batch, misses, work);
}

}  // namespace keel::embed

// The embedding table (see table.h): sharded DRAM tier, admission, eviction to the SSD tier.
//
// Note [Rows are in exactly one tier]: a shard's lock is held from finding a row until every
// row the call evicted from that shard is in the SSD tier, and a row promoted from SSD is
// taken (removed) from it under the same lock. So no other call can see an id in neither tier
// (and create a fresh row) or in both.
// Note [Budget at the end of a call]: a call first brings in every row it needs (promoted or
// admitted), works on them, and only then evicts its shard down to the budget, so no row is
// evicted between being found and being used.
#include "keel/embed/table.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <vector>

#include "keel/embed/table_impl.h"

namespace keel::embed {

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

Status TableImpl::Promote(ShardState& s, const std::vector<uint64_t>& ids,
                          std::vector<int64_t>& rows) {
  std::vector<uint64_t> missing;
  std::vector<size_t> where;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (rows[i] < 0) {
      missing.push_back(ids[i]);
      where.push_back(i);
    }
  }
  if (missing.empty() || ssd_ == nullptr) return OkStatus();
  std::vector<uint8_t> records(missing.size() * record_bytes_), found(missing.size());
  KEEL_RETURN_IF_ERROR(ssd_->Take(missing, records.data(), found.data()));
  for (size_t k = 0; k < missing.size(); ++k) {
    if (!found[k]) continue;
    const int64_t row = s.shard.Insert(missing[k]);
    s.shard.Unpack(records.data() + k * record_bytes_, row);
    rows[where[k]] = row;
    counters_.ssd_hits.fetch_add(1, std::memory_order_relaxed);
  }
  return OkStatus();
}

Status TableImpl::FindRows(ShardState& s, const Dedup& batch, std::span<const int64_t> positions,
                           bool count_hits, std::vector<uint64_t>* ids,
                           std::vector<int64_t>* rows) {
  for (int64_t u : positions) {
    ids->push_back(batch.ids[u]);
    rows->push_back(s.shard.Find(ids->back()));
    if (count_hits && rows->back() >= 0) {  // every occurrence was served from DRAM
      counters_.dram_hits.fetch_add(batch.count[u], std::memory_order_relaxed);
    }
  }
  return Promote(s, *ids, *rows);
}

Status TableImpl::EvictToBudget(ShardState& s) {
  if (max_rows_ == 0 || s.shard.size() <= max_rows_) return OkStatus();
  const int64_t n = s.shard.size() - max_rows_;
  std::vector<uint64_t> ids(n);
  std::vector<uint8_t> records(ssd_ != nullptr ? n * record_bytes_ : 0);
  std::vector<int64_t> victims(n);
  for (int64_t k = 0; k < n; ++k) {
    // Mark chosen victims dead-in-waiting so the next sample skips them.
    victims[k] = s.shard.Victim(&s.rng, 8);
    ids[k] = s.shard.id(victims[k]);
    if (ssd_ != nullptr) s.shard.Pack(victims[k], records.data() + k * record_bytes_);
    s.shard.meta(victims[k]).flags &= ~kLive;
  }
  if (ssd_ != nullptr) {
    Status st = ssd_->Put(ids, records.data());
    if (!st.ok()) {  // keep the rows in DRAM: over budget beats losing them
      for (int64_t row : victims) s.shard.meta(row).flags |= kLive;
      return st;
    }
  }
  for (int64_t row : victims) {
    s.shard.meta(row).flags |= kLive;
    if (ssd_ == nullptr) NoteDeleted(s.shard.id(row));
    s.shard.Remove(row);
  }
  (ssd_ != nullptr ? counters_.evictions : counters_.dropped)
      .fetch_add(n, std::memory_order_relaxed);
  return OkStatus();
}

Status TableImpl::Lookup(std::span<const int64_t> ids, float* out, bool train) {
  const Dedup batch(ids);
  std::vector<int64_t> order, begin;
  GroupByShard(batch.ids, &order, &begin);
  std::vector<float> unique_rows(batch.ids.size() * dim_);
  const int64_t step = step_.load(std::memory_order_relaxed);
  counters_.lookups.fetch_add(static_cast<int64_t>(ids.size()), std::memory_order_relaxed);
  for (size_t si = 0; si < shards_.size(); ++si) {
    if (begin[si] == begin[si + 1]) continue;
    ShardState& s = *shards_[si];
    MutexLock lock(&s.mu);
    std::vector<uint64_t> sids;
    std::vector<int64_t> rows;
    KEEL_RETURN_IF_ERROR(FindRows(
        s, batch, std::span<const int64_t>(order).subspan(begin[si], begin[si + 1] - begin[si]),
        /*count_hits=*/true, &sids, &rows));
    for (size_t k = 0; k < sids.size(); ++k) {
      const int64_t u = order[begin[si] + k];
      float* dst = unique_rows.data() + u * dim_;
      int64_t row = rows[k];
      if (row < 0 && train) {  // admission
        // Without admission the sketch is not consulted (it is one shared cell then).
        const uint32_t seen =
            o_.admit_after <= 1 ? batch.count[u] : s.sketch.Add(sids[k], batch.count[u]);
        if (seen >= o_.admit_after) {
          row = s.shard.Insert(sids[k]);
          init_.Fill(sids[k], s.shard.values() + row * dim_, dim_);
          InitSlots(o_.optimizer, s.shard, row);
          s.shard.meta(row).sightings = seen;
          s.shard.meta(row).changed = epoch_.load(std::memory_order_relaxed);
          counters_.admissions.fetch_add(1, std::memory_order_relaxed);
        }
      } else if (row >= 0 && train) {
        RowMeta& m = s.shard.meta(row);
        m.sightings = static_cast<uint32_t>(
            std::min<uint64_t>(uint64_t{m.sightings} + batch.count[u], UINT32_MAX));
      }
      if (row < 0) {
        std::fill(dst, dst + dim_, 0.0f);
        if (train) counters_.rejected.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (train) {
        s.shard.meta(row).last_step = step;
        s.shard.meta(row).changed = epoch_.load(std::memory_order_relaxed);
      }
      std::memcpy(dst, s.shard.values() + row * dim_, dim_ * sizeof(float));
    }
    KEEL_RETURN_IF_ERROR(EvictToBudget(s));
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    std::memcpy(out + i * dim_, unique_rows.data() + batch.unique_of[i] * dim_,
                dim_ * sizeof(float));
  }
  return OkStatus();
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
  for (size_t si = 0; si < shards_.size(); ++si) {
    if (begin[si] == begin[si + 1]) continue;
    ShardState& s = *shards_[si];
    MutexLock lock(&s.mu);
    std::vector<uint64_t> sids;
    std::vector<int64_t> rows;
    KEEL_RETURN_IF_ERROR(FindRows(
        s, batch, std::span<const int64_t>(order).subspan(begin[si], begin[si + 1] - begin[si]),
        /*count_hits=*/false, &sids, &rows));
    std::vector<int64_t> touched;
    std::vector<float> g;
    for (size_t k = 0; k < sids.size(); ++k) {
      if (rows[k] < 0) continue;  // never admitted (or expired): the gradient is dropped
      touched.push_back(rows[k]);
      const float* src = summed.data() + order[begin[si] + k] * dim_;
      g.insert(g.end(), src, src + dim_);
      RowMeta& m = s.shard.meta(rows[k]);
      m.changed = epoch_.load(std::memory_order_relaxed);
      m.last_step = step;
    }
    if (!touched.empty()) {
      KEEL_RETURN_IF_ERROR(ApplyStep(o_.optimizer, s.shard, touched, g.data(), step));
    }
    KEEL_RETURN_IF_ERROR(EvictToBudget(s));
  }
  if (o_.ttl_steps > 0 && step % o_.ttl_steps == 0) return Expire();
  return OkStatus();
}

void TableImpl::NoteDeleted(uint64_t id) {
  if (!track_deletions_.load(std::memory_order_relaxed)) return;  // the next save is full
  MutexLock lock(&deleted_mu_);
  deleted_.emplace_back(id, epoch_.load(std::memory_order_relaxed));
}

Status TableImpl::Expire() {
  if (o_.ttl_steps <= 0) return OkStatus();
  const int64_t cutoff = step_.load(std::memory_order_relaxed) - o_.ttl_steps;
  for (auto& sp : shards_) {
    ShardState& s = *sp;
    MutexLock lock(&s.mu);
    for (int64_t row = 0; row < s.shard.rows_allocated(); ++row) {
      if ((s.shard.meta(row).flags & kLive) && s.shard.meta(row).last_step < cutoff) {
        NoteDeleted(s.shard.id(row));
        s.shard.Remove(row);
        counters_.expired.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  if (ssd_ == nullptr) return OkStatus();
  std::vector<uint64_t> old;
  KEEL_RETURN_IF_ERROR(ssd_->ForEach([&](uint64_t id, const uint8_t* record) {
    RowMeta m;
    std::memcpy(&m, record + record_bytes_ - 8 - sizeof(RowMeta), sizeof(m));
    if (m.last_step < cutoff) old.push_back(id);
    return OkStatus();
  }));
  counters_.expired.fetch_add(static_cast<int64_t>(old.size()), std::memory_order_relaxed);
  for (uint64_t id : old) NoteDeleted(id);
  return ssd_->Erase(old);
}

TableStats TableImpl::stats() const {
  TableStats t;
  t.step = step_.load();
  for (const auto& sp : shards_) {
    MutexLock lock(&sp->mu);
    t.dram_rows += sp->shard.size();
  }
  t.dram_bytes = t.dram_rows * bytes_per_row_;
  if (ssd_ != nullptr) {
    const SsdStore::Stats ss = ssd_->stats();
    t.ssd_rows = ss.rows;
    t.ssd_bytes = ss.file_bytes;
    t.ssd_index_bytes = ss.index_bytes;
  }
  t.lookups = counters_.lookups.load();
  t.dram_hits = counters_.dram_hits.load();
  t.ssd_hits = counters_.ssd_hits.load();
  t.admissions = counters_.admissions.load();
  t.rejected = counters_.rejected.load();
  t.evictions = counters_.evictions.load();
  t.dropped = counters_.dropped.load();
  t.expired = counters_.expired.load();
  return t;
}

StatusOr<std::unique_ptr<Table>> Table::Create(const TableOptions& o) {
  auto bad = [](const std::string& what) {
    return InvalidArgumentError("embedding table: " + what);
  };
  if (o.dim <= 0 || o.dim > (1 << 16)) return bad(fmt::format("dim {} must be 1..65536", o.dim));
  if (o.dram_budget_bytes < 0) {
    return bad(fmt::format("dram_budget {} must be >= 0 (0: no limit)", o.dram_budget_bytes));
  }
  if (o.admit_after < 0 || o.admit_after > UINT16_MAX) {
    return bad(fmt::format("admit_after {} must be 0..65535", o.admit_after));
  }
  if (o.ttl_steps < 0) return bad(fmt::format("ttl {} must be >= 0 (0: never)", o.ttl_steps));
  if (o.shards < 1 || o.shards > 4096 || (o.shards & (o.shards - 1)) != 0) {
    return bad(fmt::format("shards {} must be a power of two in 1..4096", o.shards));
  }
  KEEL_RETURN_IF_ERROR(ValidateOptimizer(o.optimizer));
  KEEL_ASSIGN_OR_RETURN(Initializer init, Initializer::Parse(o.init, o.seed));
  if (o.dram_budget_bytes > 0 &&
      o.dram_budget_bytes < o.shards * Shard::BytesPerRow(o.dim, NumSlots(o.optimizer.kind))) {
    return bad(fmt::format(
        "dram_budget {} bytes holds less than one row per shard ({} bytes "
        "per row x {} shards)",
        o.dram_budget_bytes, Shard::BytesPerRow(o.dim, NumSlots(o.optimizer.kind)), o.shards));
  }
  std::unique_ptr<SsdStore> ssd;
  if (!o.ssd_path.empty()) {
    KEEL_ASSIGN_OR_RETURN(
        ssd,
        SsdStore::Open({.dir = o.ssd_path,
                        .record_bytes = Shard::RecordBytes(o.dim, NumSlots(o.optimizer.kind))}));
  }
  return std::unique_ptr<Table>(new TableImpl(o, init, std::move(ssd)));
}

StatusOr<int64_t> ParseBytes(const std::string& text) {
  double value = 0;
  int used = 0;
  const Status bad =
      InvalidArgumentError("size '" + text +
                           "' is not a size like 2GiB, 512M or 1048576 (units B, K, M, G, T: "
                           "powers of 1024)");
  if (std::sscanf(text.c_str(), "%lf%n", &value, &used) != 1 || !(value >= 0)) return bad;
  std::string unit = text.substr(used);
  if (unit.size() == 3 && unit.substr(1) == "iB") unit = unit.substr(0, 1);
  if (unit.size() == 2 && unit[1] == 'B' && unit[0] != 'B') unit = unit.substr(0, 1);
  double scale = 1;
  if (!unit.empty() && unit != "B") {
    const size_t at = std::string("KMGT").find(static_cast<char>(std::toupper(unit[0])));
    if (unit.size() != 1 || at == std::string::npos) return bad;
    scale = static_cast<double>(int64_t{1} << (10 * (at + 1)));
  }
  if (value * scale > 9.2e18) return bad;
  return static_cast<int64_t>(value * scale);
}

}  // namespace keel::embed

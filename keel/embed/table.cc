// The embedding table (see table.h): expiry, stats, creation and option checks. The batch
// path (lookups, updates, admission, tier moves) is in table_batch.cc.
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
        ssd, SsdStore::Open({.dir = o.ssd_path,
                             .record_bytes = Shard::RecordBytes(o.dim, NumSlots(o.optimizer.kind)),
                             // Every promotion leaves a garbage record behind: at half garbage,
                             // compaction copies one live record per garbage one (vs two at 1/3),
                             // for at most twice the live bytes on disk.
                             .compact_garbage_ratio = 0.5}));
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

// One shard of the table's DRAM tier: an open-addressing index (id -> row number; linear
// probing, backward-shift deletion, 16 bytes per bucket, load factor <= 3/4) over row arrays —
// values [rows][dim], each optimizer slot [rows][dim], per-row metadata — that grow by doubling.
// Rows are numbered densely; freed numbers are reused. The arrays are what keel::optim's
// sparse-row kernels take (a [rows][dim] parameter plus row numbers).
// Not thread-safe: the table holds the shard's lock around every call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace keel::embed {

struct RowMeta {
  uint32_t sightings = 0;  // training lookups (saturating)
  uint32_t flags = 0;      // kLive
  int64_t last_step = 0;   // the table step it was last seen at
  int64_t changed = 0;     // the table's save epoch when it last changed (incremental saves)
};
inline constexpr uint32_t kLive = 1;

class Shard {
 public:
  Shard(int64_t dim, int num_slots);

  int64_t Find(uint64_t id) const;  // row number, or -1
  // Hints for batches: start loading the index bucket `id` hashes to / a row's metadata,
  // value and slots, so the Find / use that follows does not wait for memory.
  void PrefetchFind(uint64_t id) const { __builtin_prefetch(&index_[Home(id)]); }
  void PrefetchRow(int64_t row) const {
    __builtin_prefetch(&meta_[row]);
    __builtin_prefetch(values_.data() + row * dim_);
    for (const auto& s : slots_) __builtin_prefetch(s.data() + row * dim_);
  }
  // A row for `id` (absent), metadata zeroed but live, value and slots unspecified.
  int64_t Insert(uint64_t id);
  void Remove(int64_t row);
  int64_t size() const { return live_; }
  // Among `samples` live rows drawn with `rng`: rows last seen before `protect_step` first
  // (a row of the running step is about to be used again), then the fewest sightings, then
  // the oldest.
  int64_t Victim(uint64_t* rng, int samples, int64_t protect_step) const;

  uint64_t id(int64_t row) const { return ids_[row]; }
  RowMeta& meta(int64_t row) { return meta_[row]; }
  const RowMeta& meta(int64_t row) const { return meta_[row]; }
  float* values() { return values_.data(); }
  float* slot(int s) { return slots_[s].data(); }
  uint8_t* row_flags() { return row_flags_.data(); }
  int64_t rows_allocated() const { return static_cast<int64_t>(ids_.size()); }
  int64_t dim() const { return dim_; }
  int num_slots() const { return static_cast<int>(slots_.size()); }

  // A row as one record (value, slots, row flag, metadata): what the SSD tier and checkpoints
  // store. RecordBytes(dim, slots) bytes.
  static int64_t RecordBytes(int64_t dim, int num_slots);
  void Pack(int64_t row, uint8_t* record) const;
  void Unpack(const uint8_t* record, int64_t row);

  // DRAM bytes per row as budgeted: value, slots, metadata and the index share at the
  // maximum load factor.
  static int64_t BytesPerRow(int64_t dim, int num_slots);

 private:
  struct Bucket {
    uint64_t id;
    uint32_t row;  // kEmpty when free
    uint32_t pad;
  };
  static constexpr uint32_t kEmpty = 0xFFFFFFFFu;
  size_t Home(uint64_t id) const;
  void Grow();

  int64_t dim_;
  std::vector<Bucket> index_;
  std::vector<uint64_t> ids_;
  std::vector<RowMeta> meta_;
  std::vector<uint8_t> row_flags_;
  std::vector<float> values_;
  std::vector<std::vector<float>> slots_;
  std::vector<uint32_t> free_;
  int64_t live_ = 0;
};

}  // namespace keel::embed

// DRAM-tier shard (see shard.h).
#include "keel/embed/shard.h"

#include <cstring>

#include "keel/embed/initializer.h"

namespace keel::embed {

Shard::Shard(int64_t dim, int num_slots)
    : dim_(dim), index_(16, Bucket{0, kEmpty, 0}), slots_(num_slots) {}

size_t Shard::Home(uint64_t id) const { return Mix64(id) & (index_.size() - 1); }

int64_t Shard::Find(uint64_t id) const {
  for (size_t i = Home(id);; i = (i + 1) & (index_.size() - 1)) {
    const Bucket& b = index_[i];
    if (b.row == kEmpty) return -1;
    if (b.id == id) return b.row;
  }
}

void Shard::Grow() {
  std::vector<Bucket> old = std::move(index_);
  index_.assign(old.size() * 2, Bucket{0, kEmpty, 0});
  for (const Bucket& b : old) {
    if (b.row == kEmpty) continue;
    size_t i = Home(b.id);
    while (index_[i].row != kEmpty) i = (i + 1) & (index_.size() - 1);
    index_[i] = b;
  }
}

int64_t Shard::Insert(uint64_t id) {
  if ((live_ + 1) * 4 > static_cast<int64_t>(index_.size()) * 3) Grow();
  int64_t row;
  if (!free_.empty()) {
    row = free_.back();
    free_.pop_back();
  } else {
    row = static_cast<int64_t>(ids_.size());
    const size_t rows = ids_.size() + 1;
    if (rows > ids_.capacity()) {  // double every array together
      const size_t cap = std::max<size_t>(16, ids_.capacity() * 2);
      ids_.reserve(cap);
      meta_.reserve(cap);
      row_flags_.reserve(cap);
      values_.reserve(cap * dim_);
      for (auto& s : slots_) s.reserve(cap * dim_);
    }
    ids_.resize(rows);
    meta_.resize(rows);
    row_flags_.resize(rows);
    values_.resize(rows * dim_);
    for (auto& s : slots_) s.resize(rows * dim_);
  }
  size_t i = Home(id);
  while (index_[i].row != kEmpty) i = (i + 1) & (index_.size() - 1);
  index_[i] = Bucket{id, static_cast<uint32_t>(row), 0};
  ids_[row] = id;
  meta_[row] = RowMeta{0, kLive, 0, 0};
  row_flags_[row] = 0;
  ++live_;
  return row;
}

void Shard::Remove(int64_t row) {
  const uint64_t id = ids_[row];
  const size_t mask = index_.size() - 1;
  size_t i = Home(id);
  while (index_[i].row != static_cast<uint32_t>(row)) i = (i + 1) & mask;
  // Backward-shift deletion: pull later entries of the probe run into the hole.
  for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
    if (index_[j].row == kEmpty) break;
    const size_t home = Home(index_[j].id);
    // Move j to i if its home is not in (i, j] (cyclically).
    const bool stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      index_[i] = index_[j];
      i = j;
    }
  }
  index_[i].row = kEmpty;
  meta_[row].flags = 0;
  free_.push_back(static_cast<uint32_t>(row));
  --live_;
}

int64_t Shard::Victim(uint64_t* rng, int samples, int64_t protect_step) const {
  int64_t best = -1;
  const auto n = static_cast<uint64_t>(ids_.size());
  auto before = [&](const RowMeta& a, const RowMeta& b) {
    const bool a_protected = a.last_step >= protect_step, b_protected = b.last_step >= protect_step;
    if (a_protected != b_protected) return b_protected;
    if (a.sightings != b.sightings) return a.sightings < b.sightings;
    return a.last_step < b.last_step;
  };
  // Draw a round of candidates and prefetch them all, so their cache misses overlap.
  constexpr int kRound = 8;
  int64_t drawn[kRound];
  for (int tries = 0; tries < 8 * samples && samples > 0; tries += kRound) {
    for (int64_t& row : drawn) {
      *rng = Mix64(*rng);
      row = static_cast<int64_t>(*rng % n);
      __builtin_prefetch(&meta_[row]);
    }
    for (int64_t row : drawn) {
      if (samples == 0) break;
      if ((meta_[row].flags & kLive) == 0) continue;
      --samples;
      if (best < 0 || before(meta_[row], meta_[best])) best = row;
    }
  }
  if (best >= 0) return best;
  for (int64_t row = 0; row < static_cast<int64_t>(n); ++row) {  // sparse shard: scan
    if (meta_[row].flags & kLive) return row;
  }
  return -1;
}

int64_t Shard::RecordBytes(int64_t dim, int num_slots) {
  return 4 * dim * (1 + num_slots) + static_cast<int64_t>(sizeof(RowMeta)) + 8;
}

int64_t Shard::BytesPerRow(int64_t dim, int num_slots) {
  return 4 * dim * (1 + num_slots) + static_cast<int64_t>(sizeof(RowMeta) + sizeof(uint64_t) + 1) +
         static_cast<int64_t>(sizeof(Bucket)) * 4 / 3;
}

void Shard::Pack(int64_t row, uint8_t* record) const {
  const size_t bytes = 4 * dim_;
  std::memcpy(record, values_.data() + row * dim_, bytes);
  record += bytes;
  for (const auto& s : slots_) {
    std::memcpy(record, s.data() + row * dim_, bytes);
    record += bytes;
  }
  std::memcpy(record, &meta_[row], sizeof(RowMeta));
  record += sizeof(RowMeta);
  const uint64_t flag = row_flags_[row];
  std::memcpy(record, &flag, 8);
}

void Shard::Unpack(const uint8_t* record, int64_t row) {
  const size_t bytes = 4 * dim_;
  std::memcpy(values_.data() + row * dim_, record, bytes);
  record += bytes;
  for (auto& s : slots_) {
    std::memcpy(s.data() + row * dim_, record, bytes);
    record += bytes;
  }
  std::memcpy(&meta_[row], record, sizeof(RowMeta));
  meta_[row].flags |= kLive;
  record += sizeof(RowMeta);
  uint64_t flag;
  std::memcpy(&flag, record, 8);
  row_flags_[row] = static_cast<uint8_t>(flag);
}

}  // namespace keel::embed

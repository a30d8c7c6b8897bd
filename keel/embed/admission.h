// Admission counting: a count-min sketch of sightings per id (depth 4, 16-bit saturating
// cells, conservative update), so ids seen fewer than `admit_after` times cost no row. It
// over-counts only (an id may be admitted early when it collides with frequent ones, never
// late).
// Not thread-safe: each table shard owns one, under the shard's lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace keel::embed {

class CountMinSketch {
 public:
  explicit CountMinSketch(int64_t width);  // cells per row, rounded up to a power of two
  // Adds `count` sightings of `id`; returns its estimated total.
  uint32_t Add(uint64_t id, uint32_t count);
  uint32_t Estimate(uint64_t id) const;
  int64_t bytes() const { return static_cast<int64_t>(cells_.size() * sizeof(uint16_t)); }

 private:
  static constexpr int kDepth = 4;
  size_t Cell(uint64_t id, int d) const;
  std::vector<uint16_t> cells_;
  uint64_t mask_ = 0;
};

}  // namespace keel::embed

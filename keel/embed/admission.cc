// Count-min sketch (see admission.h).
#include "keel/embed/admission.h"

#include <algorithm>

#include "keel/embed/initializer.h"

namespace keel::embed {

CountMinSketch::CountMinSketch(int64_t width) {
  uint64_t w = 1;
  while (w < static_cast<uint64_t>(std::max<int64_t>(width, 1))) w <<= 1;
  mask_ = w - 1;
  cells_.assign(kDepth * w, 0);
}

size_t CountMinSketch::Cell(uint64_t id, int d) const {
  return d * (mask_ + 1) + (Mix64(id ^ (0xA24BAED4963EE407ULL * (d + 1))) & mask_);
}

uint32_t CountMinSketch::Estimate(uint64_t id) const {
  uint32_t m = UINT16_MAX;
  for (int d = 0; d < kDepth; ++d) m = std::min<uint32_t>(m, cells_[Cell(id, d)]);
  return m;
}

uint32_t CountMinSketch::Add(uint64_t id, uint32_t count) {
  const uint32_t target = std::min<uint32_t>(Estimate(id) + count, UINT16_MAX);
  for (int d = 0; d < kDepth; ++d) {  // conservative update: raise only cells below the target
    uint16_t& c = cells_[Cell(id, d)];
    c = static_cast<uint16_t>(std::max<uint32_t>(c, target));
  }
  return target;
}

}  // namespace keel::embed

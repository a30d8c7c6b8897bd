// Splitting a matrix product's rows across the pool (internal to the kernels).
#pragma once

#include <cstdint>
#include <functional>

#include "keel/infer/kernels/compute_pool.h"

namespace keel::infer {

// Products below ~1M multiply-adds run on the calling thread: handing them to the pool costs
// more than the second core saves (measured with the earlier condition-variable pool on the
// small model: 2-thread decode 224 -> 306 tok/s; the spinning ComputePool made the hand-off
// cheaper but kept the threshold).
inline void ForRows(int64_t rows, int64_t cost_per_row, ComputePool* pool,
                    const std::function<void(int64_t, int64_t)>& fn) {
  if (pool == nullptr || rows * cost_per_row < (1 << 20)) {
    fn(0, rows);
  } else {
    pool->ParallelFor(rows, fn);
  }
}

}  // namespace keel::infer

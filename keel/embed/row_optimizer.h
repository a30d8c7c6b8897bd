// The table's optimizers on a shard's rows, through keel::optim's sparse-row kernels (SGD is a
// plain loop): how many slots each keeps, their initial values, and one step.
// Thread-safety: pure functions; the caller holds the shard's lock.
#pragma once

#include <cstdint>
#include <span>

#include "keel/common/status.h"
#include "keel/embed/shard.h"
#include "keel/embed/table.h"

namespace keel::embed {

// INVALID_ARGUMENT naming the bad hyperparameter.
Status ValidateOptimizer(const OptimizerOptions& o);
int NumSlots(OptimizerKind kind);
// Slots of a row whose value is set: Adagrad's accumulator, FTRL's n and z, zeros elsewhere.
void InitSlots(const OptimizerOptions& o, Shard& shard, int64_t row);
// rows (distinct) get grads[i * dim, (i + 1) * dim); `step` counts from 1.
Status ApplyStep(const OptimizerOptions& o, Shard& shard, std::span<const int64_t> rows,
                 const float* grads, int64_t step);

}  // namespace keel::embed

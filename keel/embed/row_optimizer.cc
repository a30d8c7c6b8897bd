// Optimizers on shard rows (see row_optimizer.h).
#include "keel/embed/row_optimizer.h"

#include <cmath>

#include "keel/optim/optimizers.h"

namespace keel::embed {
namespace {

optim::AdagradOptions Adagrad(const OptimizerOptions& o) { return {.lr = o.lr}; }
optim::AdamWOptions Adam(const OptimizerOptions& o) {
  return {.lr = o.lr, .beta1 = o.beta1, .beta2 = o.beta2, .eps = o.eps, .weight_decay = 0.0f};
}
optim::GroupAdamOptions GroupAdam(const OptimizerOptions& o) {
  return {.lr = o.lr,
          .beta1 = o.beta1,
          .beta2 = o.beta2,
          .eps = o.eps,
          .l1 = o.l1,
          .l2 = o.l2,
          .l21 = o.l21};
}
optim::GroupFtrlOptions GroupFtrl(const OptimizerOptions& o) {
  return {.lr = o.lr, .lr_power = o.lr_power, .l1 = o.l1, .l2 = o.l2, .l21 = o.l21};
}

}  // namespace

Status ValidateOptimizer(const OptimizerOptions& o) {
  switch (o.kind) {
    case OptimizerKind::kSgd:
      if (!(o.lr >= 0) || !std::isfinite(o.lr)) {
        return InvalidArgumentError("optimizer: lr must be finite and >= 0");
      }
      return OkStatus();
    case OptimizerKind::kAdagrad:
      if (!(o.initial_accumulator_value >= 0)) {
        return InvalidArgumentError("optimizer: initial_accumulator_value must be >= 0");
      }
      return optim::Validate(Adagrad(o));
    case OptimizerKind::kAdam:
      return optim::Validate(Adam(o));
    case OptimizerKind::kGroupAdam:
      return optim::Validate(GroupAdam(o));
    case OptimizerKind::kGroupFtrl:
      if (!(o.initial_accumulator_value > 0)) {
        return InvalidArgumentError("optimizer: initial_accumulator_value must be > 0 for FTRL");
      }
      return optim::Validate(GroupFtrl(o));
  }
  return InvalidArgumentError("optimizer: unknown kind");
}

int NumSlots(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd:
      return 0;
    case OptimizerKind::kAdagrad:
      return 1;
    case OptimizerKind::kAdam:
    case OptimizerKind::kGroupFtrl:
      return 2;
    case OptimizerKind::kGroupAdam:
      return 3;
  }
  return 0;
}

void InitSlots(const OptimizerOptions& o, Shard& shard, int64_t row) {
  const int64_t dim = shard.dim();
  for (int s = 0; s < shard.num_slots(); ++s) {
    float* slot = shard.slot(s) + row * dim;
    const bool accumulator = (o.kind == OptimizerKind::kAdagrad && s == 0) ||
                             (o.kind == OptimizerKind::kGroupFtrl && s == 0);
    for (int64_t j = 0; j < dim; ++j) slot[j] = accumulator ? o.initial_accumulator_value : 0.0f;
  }
  shard.row_flags()[row] = 0;
  if (o.kind == OptimizerKind::kGroupFtrl) {  // z = -n^(-lr_power) / lr * w: w survives step 1
    const float* w = shard.values() + row * dim;
    float* z = shard.slot(1) + row * dim;
    const float scale = -std::pow(o.initial_accumulator_value, -o.lr_power) / o.lr;
    for (int64_t j = 0; j < dim; ++j) z[j] = scale * w[j];
  }
}

Status ApplyStep(const OptimizerOptions& o, Shard& shard, std::span<const int64_t> rows,
                 const float* grads, int64_t step) {
  const int64_t dim = shard.dim();
  if (o.kind == OptimizerKind::kSgd) {
    for (size_t i = 0; i < rows.size(); ++i) {
      float* w = shard.values() + rows[i] * dim;
      for (int64_t j = 0; j < dim; ++j) w[j] -= o.lr * grads[i * dim + j];
    }
    return OkStatus();
  }
  optim::SparseRows t{.param = shard.values(),
                      .grad = grads,
                      .row_flags = shard.row_flags(),
                      .num_rows = shard.rows_allocated(),
                      .dim = dim,
                      .rows = rows.data(),
                      .num_touched = static_cast<int64_t>(rows.size()),
                      .step = step};
  for (int s = 0; s < shard.num_slots(); ++s) t.slots[s] = shard.slot(s);
  const std::span<const optim::SparseRows> one(&t, 1);
  switch (o.kind) {
    case OptimizerKind::kAdagrad:
      t.row_flags = nullptr;
      return optim::AdagradSparseStep(Adagrad(o), one, nullptr);
    case OptimizerKind::kAdam:
      t.row_flags = nullptr;
      t.slots[2] = nullptr;
      return optim::AdamWSparseStep(Adam(o), one, nullptr);
    case OptimizerKind::kGroupAdam:
      return optim::GroupAdamStep(GroupAdam(o), one, nullptr);
    case OptimizerKind::kGroupFtrl:
      t.row_flags = nullptr;
      return optim::GroupFtrlStep(GroupFtrl(o), one, nullptr);
    case OptimizerKind::kSgd:
      break;
  }
  return OkStatus();
}

}  // namespace keel::embed

// keel::optim: optimizer update kernels for CPU tensors — AdamW, AGD, Adagrad (elementwise) and
// Group Adam / Group FTRL (sparse-group-lasso, one group per row). The math, defaults and the
// reference implementations' bugs we avoid are in docs/optim.md.
//
//   optim::AdamWOptions opt{.lr = 1e-3f};
//   std::vector<optim::DenseTensor> tensors = {{.param = w, .grad = g, .slots = {m, v}, .n = n,
//                                               .step = 1}};
//   KEEL_RETURN_IF_ERROR(optim::AdamWStep(opt, tensors, pool));
//
// Every step function updates parameters and state in place, over all tensors in one call,
// split across `pool` (may be null: run on the calling thread). Parameters are float32 or
// bfloat16 (math in float32, rounded to nearest even on store); gradients float32 or the
// parameter's dtype; state is always float32. Inner loops run the best SIMD variant the CPU
// supports (Highway runtime dispatch); keel/optim/reference_kernels.h is the scalar reference
// they are tested against.
//
// Sparse-row variants (SparseRows) update only the listed rows ("lazy" updates, as for
// embedding tables): untouched rows keep their parameter and state; the step count is the
// tensor's. Rows must be unique and in range.
//
// Errors: INVALID_ARGUMENT for bad hyperparameters, missing buffers, unsupported dtypes,
// out-of-range or repeated rows — checked before anything is written.
// Thread-safety: calls on disjoint tensors may run concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "keel/common/status.h"
#include "keel/common/tensor_view.h"

namespace keel {
class ThreadPool;
}

namespace keel::optim {

// One parameter tensor with `n` contiguous elements, its gradient and its state slots (each n
// float32, in the order the optimizer's options document; unused slots null).
struct DenseTensor {
  void* param = nullptr;
  DType param_dtype = DType::kFloat32;  // kFloat32 or kBFloat16
  const void* grad = nullptr;
  DType grad_dtype = DType::kFloat32;  // kFloat32 or param_dtype
  std::array<float*, 4> slots{};
  int64_t n = 0;
  int64_t step = 1;  // this update's step number, counted from 1
};

// Rows `rows[0..num_touched)` of a [num_rows, dim] parameter; `grad` is [num_touched, dim]
// (row i of grad belongs to rows[i]); slots are [num_rows, dim]; `row_flags` is [num_rows]
// bytes for the optimizers that track per-row state (Group Adam), else null. `rows` null means
// every row, in order (the dense form of the group optimizers).
struct SparseRows {
  void* param = nullptr;
  DType param_dtype = DType::kFloat32;
  const void* grad = nullptr;
  DType grad_dtype = DType::kFloat32;
  std::array<float*, 4> slots{};
  uint8_t* row_flags = nullptr;
  int64_t num_rows = 0;
  int64_t dim = 0;
  const int64_t* rows = nullptr;
  int64_t num_touched = 0;
  int64_t step = 1;
};

// Slots are positional: slots[i] is the i-th buffer each optimizer lists below; buffers an
// option turns off stay null.

// PyTorch's AdamW. Slots: exp_avg, exp_avg_sq, max_exp_avg_sq (amsgrad).
struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 1e-2f;  // decoupled: p *= 1 - lr * weight_decay
  bool amsgrad = false;
};

// AGD (Yue et al., NeurIPS 2023): preconditioned by the EMA of the squared difference of
// bias-corrected momenta, switching per element to SGD with momentum where that is below
// delta. Slots: exp_avg (m), exp_avg_diff_sq (b), max_exp_avg_diff_sq (amsgrad), z (win; it
// must hold the parameter's initial value before the first step).
struct AGDOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float delta = 1e-5f;
  float weight_decay = 0.0f;
  bool weight_decouple = true;  // p *= 1 - lr*wd (or 1 - wd with fixed_decay); else g += wd*p
  bool fixed_decay = false;
  bool amsgrad = false;
  bool win = false;   // Win-style Nesterov acceleration (replaces the decay above)
  float clip = 0.0f;  // > 0: clamp m / D to [-clip, clip]
};

// PyTorch's Adagrad. Slot: sum (initialise it to initial_accumulator_value).
struct AdagradOptions {
  float lr = 1e-2f;
  float lr_decay = 0.0f;
  float weight_decay = 0.0f;  // coupled: g += wd * p
  float eps = 1e-10f;
};

// Group Adam (tfplus kernel v4): Adam in dual-averaging form with the sparse-group-lasso
// penalty l1*|w|_1 + l21*sqrt(dim)*sum_rows |w_r|_2 + l2*|w|_2^2; thresholds scale with lr.
// A row whose group test fails becomes exactly zero. Slots: m, v, z; row_flags: 1 once a row
// had its first update (keeps the first-update term per row, not per global step).
struct GroupAdamOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float l1 = 0.0f;
  float l2 = 0.0f;
  float l21 = 0.0f;
};

// Sparse group FTRL (tfplus; with lr_power = -0.5 it is what tfplus ships as Group Adagrad).
// Slots: n (accumulator, initialise to initial_accumulator_value), z (linear term; initialise
// to -n^(-lr_power)/lr * w so the initial weights survive the first update).
struct GroupFtrlOptions {
  float lr = 1e-2f;
  float lr_power = -0.5f;  // <= 0
  float l1 = 0.0f;
  float l2 = 0.0f;
  float l21 = 0.0f;
  float l2_shrinkage = 0.0f;
};

Status Validate(const AdamWOptions& o);
Status Validate(const AGDOptions& o);
Status Validate(const AdagradOptions& o);
Status Validate(const GroupAdamOptions& o);
Status Validate(const GroupFtrlOptions& o);

Status AdamWStep(const AdamWOptions& o, std::span<const DenseTensor> tensors, ThreadPool* pool);
Status AGDStep(const AGDOptions& o, std::span<const DenseTensor> tensors, ThreadPool* pool);
Status AdagradStep(const AdagradOptions& o, std::span<const DenseTensor> tensors, ThreadPool* pool);
// Group optimizers: each row of a [num_rows, dim] tensor is one group.
Status GroupAdamStep(const GroupAdamOptions& o, std::span<const SparseRows> tensors,
                     ThreadPool* pool);
Status GroupFtrlStep(const GroupFtrlOptions& o, std::span<const SparseRows> tensors,
                     ThreadPool* pool);

Status AdamWSparseStep(const AdamWOptions& o, std::span<const SparseRows> tensors,
                       ThreadPool* pool);
Status AGDSparseStep(const AGDOptions& o, std::span<const SparseRows> tensors, ThreadPool* pool);
Status AdagradSparseStep(const AdagradOptions& o, std::span<const SparseRows> tensors,
                         ThreadPool* pool);

// The SIMD target the kernels dispatch to on this CPU (e.g. "AVX3", "AVX2").
const char* SimdTarget();

}  // namespace keel::optim

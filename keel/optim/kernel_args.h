// Arguments of the optimizer inner loops, shared by the scalar reference
// (reference_kernels.h) and the SIMD variants (simd_kernels.h). Per-step scalars (bias
// corrections, decays) are precomputed once per tensor by MakeArgs, so the loops do no pow()
// and the reference and SIMD variants apply the same float32 operations in the same order:
// their elementwise results are bit-identical (see Note [Bit-identical variants]).
//
// Pointers address element 0 of a range; kernels process elements [begin, end).
// Thread-safety: plain values.
#pragma once

#include <cstdint>

#include "keel/optim/optimizers.h"

namespace keel::optim::internal {

// Parameter/gradient element storage.
enum class Storage : uint8_t { kF32, kBF16 };

struct Buffers {
  void* param = nullptr;
  Storage param_type = Storage::kF32;
  const void* grad = nullptr;
  Storage grad_type = Storage::kF32;
  float* s0 = nullptr;
  float* s1 = nullptr;
  float* s2 = nullptr;
  float* s3 = nullptr;
};

struct AdamWArgs {
  Buffers buf;  // s0 exp_avg, s1 exp_avg_sq, s2 max_exp_avg_sq (amsgrad)
  float decay, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, bc2_sqrt, eps;
  bool amsgrad;
};

struct AGDArgs {
  Buffers buf;          // s0 m, s1 b, s2 b_max (amsgrad), s3 z (win)
  float decay;          // multiplies p (1 when coupled or win)
  float coupled_decay;  // added to g as coupled_decay * p (0 when decoupled)
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float inv_bc1, inv_bc1_prev;  // 1/bc1_t, 1/bc1_{t-1}
  bool first;                   // t == 1: s = m / bc1
  float delta_floor;            // delta * sqrt(bc2)
  float clip;                   // 0: none
  float step_size;              // lr * sqrt(bc2) / bc1
  bool amsgrad, win;
  float win_z_scale, win_tau;  // 1/(1 + wd*eta), 1/(3 + 2*eta*wd)
};

struct AdagradArgs {
  Buffers buf;  // s0 sum
  float clr, eps, weight_decay;
};

// Group kernels work on one row of `dim` elements.
struct GroupAdamArgs {
  Buffers buf;  // s0 m, s1 v, s2 z
  int64_t dim;
  float beta1, one_minus_beta1, beta2, one_minus_beta2, alpha, eps;
  float l1, l2_twice, threshold;  // lr*l1, 2*lr*l2, lr*l21*sqrt(dim)
};

struct GroupFtrlArgs {
  Buffers buf;  // s0 n, s1 z
  int64_t dim;
  float inv_lr, neg_power;  // 1/lr, -lr_power
  bool sqrt_power;          // -lr_power == 0.5: n^0.5 by sqrt (exact in every variant)
  float l1, l2_twice, threshold, shrinkage_twice;  // l1, 2*l2, l21*sqrt(dim), 2*l2_shrinkage
};

AdamWArgs MakeArgs(const AdamWOptions& o, int64_t step);
AGDArgs MakeArgs(const AGDOptions& o, int64_t step);
AdagradArgs MakeArgs(const AdagradOptions& o, int64_t step);
GroupAdamArgs MakeArgs(const GroupAdamOptions& o, int64_t step, int64_t dim);
GroupFtrlArgs MakeArgs(const GroupFtrlOptions& o, int64_t dim);

// Shifts param and slots by `offset` elements and the gradient by `grad_offset` (a row of a
// sparse update: rows of the gradient are packed).
Buffers Offset(const Buffers& b, int64_t offset, int64_t grad_offset);

}  // namespace keel::optim::internal

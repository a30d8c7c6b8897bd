// Scalar reference implementations of the optimizer inner loops: one element (or one row) at
// a time, written to read like the math in docs/optim.md. The SIMD variants
// (simd_kernels.h) are tested against these, and use them for their tails.
//
// Note [Bit-identical variants]: the elementwise kernels (AdamW, AGD, Adagrad, and the
// m/v/z/n updates of the group kernels) apply the same float32 operations in the same order as
// the SIMD variants, with no fused multiply-add, so results match bit for bit. Only the group
// kernels' row norm is a reduction whose order differs (results within float rounding).
// Thread-safety: pure functions of their arguments; callers give disjoint ranges to threads.
#pragma once

#include <cstdint>

#include "keel/optim/kernel_args.h"

namespace keel::optim::reference {

void AdamW(const internal::AdamWArgs& a, int64_t begin, int64_t end);
void AGD(const internal::AGDArgs& a, int64_t begin, int64_t end);
void Adagrad(const internal::AdagradArgs& a, int64_t begin, int64_t end);
// One row (a.dim elements); `first` is the row's first update. Returns true if the row is
// nonzero after the update.
bool GroupAdamRow(const internal::GroupAdamArgs& a, bool first);
bool GroupFtrlRow(const internal::GroupFtrlArgs& a);

}  // namespace keel::optim::reference

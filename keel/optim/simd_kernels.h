// SIMD variants of the optimizer inner loops (Highway, one per target compiled in; runtime
// dispatch to the best the CPU supports). Same contracts as reference_kernels.h; tested
// against it for every target (simd_kernels_test.cc).
// Thread-safety: pure functions of their arguments; callers give disjoint ranges to threads.
#pragma once

#include <cstdint>

#include "keel/optim/kernel_args.h"

namespace keel::optim::simd {

void AdamW(const internal::AdamWArgs& a, int64_t begin, int64_t end);
void AGD(const internal::AGDArgs& a, int64_t begin, int64_t end);
void Adagrad(const internal::AdagradArgs& a, int64_t begin, int64_t end);
bool GroupAdamRow(const internal::GroupAdamArgs& a, bool first);
// lr_power other than -0.5 (needs pow) runs the reference.
bool GroupFtrlRow(const internal::GroupFtrlArgs& a);

// Name of the target the calls above dispatch to now ("AVX3", "AVX2", "SSE4", ...).
const char* TargetName();

}  // namespace keel::optim::simd

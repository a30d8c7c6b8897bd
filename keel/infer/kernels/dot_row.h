// The inner loop of every weight matrix product: the dot product of one weight row, in its
// GGUF type, with a float32 vector. `reference::DotRow` is the scalar definition;
// `simd::DotRow` the Highway variants (runtime dispatch), tested against it for every target
// (dot_row_test.cc). Rows of quantized types are whole blocks.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>

#include "keel/infer/gguf/ggml_types.h"

namespace keel::infer {
namespace reference {
float DotRow(GgmlType type, const uint8_t* row, const float* x, int64_t n);
}  // namespace reference
namespace simd {
float DotRow(GgmlType type, const uint8_t* row, const float* x, int64_t n);
// Dots of one row with k (1..4) activation rows x[0..k): out[i] = DotRow(type, row, x[i], n)
// up to float rounding; the weights are widened once for all k.
void DotRow4(GgmlType type, const uint8_t* row, const float* const* x, int64_t k, int64_t n,
             float* out);
// The target the calls dispatch to now ("AVX3", "AVX2", ...).
const char* TargetName();
}  // namespace simd
}  // namespace keel::infer

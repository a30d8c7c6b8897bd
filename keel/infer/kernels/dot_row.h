// The inner loop of every weight matrix product: the dot product of one weight row, in its
// GGUF type, with a float32 vector. `reference::DotRow` is the scalar definition;
// `simd::DotRow` the Highway variants (runtime dispatch), tested against it for every target
// (dot_row_test.cc). Rows of quantized types are whole blocks.
//
// Q8_0 and Q4_0 rows also multiply with activations quantized to 8 bits per block of 32
// (`ActBlock`, as llama.cpp does): the block products are exact integer sums (VNNI's dpbusd on
// AVX-512 machines that have it, 16-bit multiply-adds elsewhere) scaled once per block.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>

#include "keel/infer/gguf/ggml_types.h"

namespace keel::infer {

// 32 activations x[j] ~= d * q[j], with sum = the sum of q (for the weights' zero points).
struct ActBlock {
  float d;
  int32_t sum;
  int8_t q[32];
};
static_assert(sizeof(ActBlock) == 40);

// n / 32 blocks of x (n a multiple of 32): d = max|x| / 127, q = round(x / d), half away from
// zero.
void QuantizeActivations(const float* x, int64_t n, ActBlock* out);
// Whether rows of `type` have an integer path (Q8_0, Q4_0).
bool HasActivationPath(GgmlType type);

namespace reference {
float DotRow(GgmlType type, const uint8_t* row, const float* x, int64_t n);
// A Q8_0 or Q4_0 row with quantized activations: sum over blocks of d_w * d_x * (integer dot).
float DotRowQ(GgmlType type, const uint8_t* row, const ActBlock* x, int64_t n);
}  // namespace reference
namespace simd {
float DotRow(GgmlType type, const uint8_t* row, const float* x, int64_t n);
// Dots of one row with k (1..4) activation rows x[0..k): out[i] = DotRow(type, row, x[i], n)
// up to float rounding; the weights are widened once for all k.
void DotRow4(GgmlType type, const uint8_t* row, const float* const* x, int64_t k, int64_t n,
             float* out);
// A tile of integer-path dots: out[r * k_x + c] = DotRowQ(type, rows + r * row_bytes, x[c], n)
// for r < k_rows, c < k_x, each 1..4 (decode: 4 rows x 1 vector; prefill: 4 x 4).
// Equal to the reference up to float rounding of the per-block sums.
void DotRowsQ(GgmlType type, const uint8_t* rows, int64_t row_bytes, int64_t k_rows,
              const ActBlock* const* x, int64_t k_x, int64_t n, float* out);
// y[j] += a * x[j] (attention's weighted sum of V rows).
void Axpy(float a, const float* x, float* y, int64_t n);
// The target the calls dispatch to now ("AVX3", "AVX2", ...).
const char* TargetName();
}  // namespace simd
}  // namespace keel::infer

// CPU kernels of the LLaMA forward pass (reference implementations; SIMD variants are the next
// step of issue #7). Weights are read in their GGUF type and dequantized on the fly, so a
// Q4_0 matrix costs 4.5 bits per weight of memory traffic.
//
// Attention is written for part 2 from the start: `n_q` query rows (a prefill chunk, or a
// Lookahead draft tree) attend over a KV cache held in fixed-size blocks (a block table), with
// an optional explicit mask, by an online softmax over one block at a time (FlashAttention's
// recurrence, float32 accumulation); a single query row over a long cache is split into KV
// chunks merged by log-sum-exp (FlashDecoding).
// Thread-safety: pure functions of their arguments; `pool` may be null.
#pragma once

#include <cstdint>
#include <span>

#include "keel/common/status.h"
#include "keel/infer/gguf/ggml_types.h"

namespace keel::infer {

class ComputePool;  // compute_pool.h

struct ActBlock;     // dot_row.h
class PackedMatrix;  // packed.h

// A weight matrix as GGUF stores it: `rows` rows of `cols` elements (ne0 = cols), each row
// RowBytes(type, cols) bytes.
struct Matrix {
  GgmlType type = GgmlType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const uint8_t* data = nullptr;
  int64_t row_bytes = 0;
  // The same weights repacked for the VNNI kernels (MatMulQ uses them when set), or null.
  const PackedMatrix* packed = nullptr;
};

// y[r] = dot(W[r], x) for r in [0, rows). x has cols elements.
void MatVec(const Matrix& w, const float* x, float* y, ComputePool* pool);
// Y[i] = W X[i] for n rows of X (row-major [n][cols] -> [n][rows]).
void MatMul(const Matrix& w, const float* x, int64_t n, float* y, ComputePool* pool);
// The same with activations quantized to 8 bits (QuantizeActivations, cols / 32 blocks per row
// of X) for Q8_0 and Q4_0 weights (HasActivationPath): integer block products, as llama.cpp
// computes them; adds the activations' rounding (~0.2% of a dot's magnitude).
void MatMulQ(const Matrix& w, const ActBlock* xq, int64_t n, float* y, ComputePool* pool);
// Row `r` of W as float32 (embedding lookup).
void DequantizeRowOf(const Matrix& w, int64_t r, float* out);

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);
// Rotates adjacent pairs (x[2i], x[2i+1]) of each of `heads` heads of `head_dim` by
// pos * base^(-2i/head_dim) (ggml's "normal" RoPE, used by LLaMA GGUF files).
void Rope(float* x, int64_t heads, int64_t head_dim, int64_t pos, float base);
void SwiGlu(const float* gate, const float* up, int64_t n, float* out);  // silu(gate) * up

// KV cache in blocks of `block_size` positions; block b holds, for each position, n_kv_heads
// rows of head_dim floats: k_blocks[b][(p % block_size) * n_kv_heads * head_dim + h * head_dim].
struct KvView {
  const float* const* k_blocks = nullptr;
  const float* const* v_blocks = nullptr;
  int64_t block_size = 0;
  int64_t length = 0;  // positions in the cache
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
};

struct AttentionArgs {
  const float* q = nullptr;  // [n_q][n_heads][head_dim]
  int64_t n_q = 0;
  int64_t n_heads = 0;
  KvView kv;
  // Row i may see cache positions [0, visible[i]) (causal prefill: position of row i + 1);
  // with `mask` ([n_q][kv.length] bytes, 1 = visible) instead, any pattern (draft trees).
  const int64_t* visible = nullptr;
  const uint8_t* mask = nullptr;
  float scale = 0;
  float* out = nullptr;  // [n_q][n_heads][head_dim]
};

Status Attention(const AttentionArgs& a, ComputePool* pool);

}  // namespace keel::infer

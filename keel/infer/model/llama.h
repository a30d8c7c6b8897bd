// LLaMA-family models from GGUF files: RMSNorm, RoPE (base from the file), grouped-query
// attention, SwiGLU, tied or separate output; weights F32, F16, BF16, Q8_0, Q4_0 (norms F32).
//
//   KEEL_ASSIGN_OR_RETURN(auto model, LlamaModel::Load("tiny.gguf"));
//   LlamaSession session(*model, pool);
//   KEEL_ASSIGN_OR_RETURN(std::vector<float> logits, session.Forward(prompt_ids));
//   // logits of the last token; call Forward again with the next token(s) to continue.
//
// Load validates the file against the architecture (every key, tensor name, shape and type) and
// fails with INVALID_ARGUMENT naming what is wrong. The model maps the file; sessions borrow it.
// Thread-safety: a LlamaModel is immutable (share it); a LlamaSession is single-threaded.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "keel/common/status.h"
#include "keel/infer/gguf/gguf_file.h"
#include "keel/infer/kernels/dot_row.h"
#include "keel/infer/kernels/kernels.h"
#include "keel/infer/kernels/packed.h"

namespace keel::infer {

class ComputePool;  // compute_pool.h

struct LlamaConfig {
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_ff = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  int64_t n_ctx = 0;  // llama.context_length
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  bool tied_output = false;
};

struct LlamaLayer {
  std::vector<float> attn_norm, ffn_norm;
  Matrix wq, wk, wv, wo, w_gate, w_up, w_down;
};

class LlamaModel {
 public:
  static StatusOr<std::unique_ptr<LlamaModel>> Load(const std::string& path);

  const LlamaConfig& config() const { return config_; }
  const GgufFile& file() const { return *file_; }
  const Matrix& token_embd() const { return token_embd_; }
  const Matrix& output() const { return output_; }
  const std::vector<float>& output_norm() const { return output_norm_; }
  const std::vector<LlamaLayer>& layers() const { return layers_; }

 private:
  LlamaModel() = default;
  std::unique_ptr<GgufFile> file_;
  LlamaConfig config_;
  Matrix token_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<LlamaLayer> layers_;
  std::vector<std::unique_ptr<PackedMatrix>> packed_;  // what the matrices' `packed` point to
};

// One sequence: its KV cache (blocks of 16 positions) and position.
class LlamaSession {
 public:
  // With `quantize_activations`, products with Q8_0 / Q4_0 weights take 8-bit activations and
  // integer dot products (as llama.cpp does; faster, adds ~0.2% rounding per dot); without,
  // float32 activations (exact to the dequantized weights).
  LlamaSession(const LlamaModel& model, ComputePool* pool, bool quantize_activations = true);

  // Runs `tokens` (appended after what came before) and returns the logits of the last one;
  // with `all_logits`, of every one ([tokens.size()][n_vocab]). INVALID_ARGUMENT for an id out
  // of the vocabulary or past the context length.
  StatusOr<std::vector<float>> Forward(std::span<const int32_t> tokens, bool all_logits = false);
  int64_t position() const { return pos_; }

 private:
  static constexpr int64_t kBlock = 16;
  // The block of `blocks` (one layer's K or V) holding `pos`, allocated on first use.
  float* Block(std::vector<std::unique_ptr<float[]>>& blocks, int64_t pos) const;

  // y = W x for n rows of x; `xq` holds x quantized (filled on first use for this x).
  void Mul(const Matrix& w, const float* x, int64_t n, std::vector<ActBlock>& xq, float* y);

  const LlamaModel& model_;
  ComputePool* pool_;
  bool quantize_activations_;
  int64_t pos_ = 0;
  // Per layer, blocks of kBlock positions x n_head_kv x head_dim, allocated as needed.
  std::vector<std::vector<std::unique_ptr<float[]>>> k_blocks_, v_blocks_;
};

}  // namespace keel::infer

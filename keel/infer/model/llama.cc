// LLaMA model loading (GGUF keys and tensors checked against the architecture) and the forward
// pass over a block-paged KV cache.
#include "keel/infer/model/llama.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "keel/infer/quant/quant.h"

namespace keel::infer {
namespace {

Status Bad(const std::string& what) {
  return InvalidArgumentError("not a usable LLaMA GGUF file: " + what);
}

StatusOr<int64_t> PositiveKey(const GgufFile& f, const std::string& key) {
  KEEL_ASSIGN_OR_RETURN(uint64_t v, f.GetUInt(key));
  if (v == 0 || v > (uint64_t{1} << 24)) {
    return Bad(fmt::format("{} = {} (must be 1..2^24)", key, v));
  }
  return static_cast<int64_t>(v);
}

StatusOr<Matrix> GetMatrix(const GgufFile& f, const std::string& name, int64_t cols, int64_t rows) {
  const GgufTensor* t = f.FindTensor(name);
  if (t == nullptr) return Bad("tensor '" + name + "' is missing");
  if (t->ne.size() != 2 || t->ne[0] != cols || t->ne[1] != rows) {
    std::string shape;
    for (int64_t d : t->ne) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    return Bad(
        fmt::format("tensor '{}' has shape [{}], expected [{}, {}]", name, shape, cols, rows));
  }
  StatusOr<int64_t> row_bytes = RowBytes(t->type, cols);
  if (!row_bytes.ok()) return Bad("tensor '" + name + "': " + row_bytes.status().message());
  return Matrix{t->type, rows, cols, t->data, *row_bytes};
}

StatusOr<std::vector<float>> GetVector(const GgufFile& f, const std::string& name, int64_t n) {
  const GgufTensor* t = f.FindTensor(name);
  if (t == nullptr) return Bad("tensor '" + name + "' is missing");
  if (t->ne.size() != 1 || t->ne[0] != n) {
    return Bad(fmt::format("tensor '{}' must have shape [{}]", name, n));
  }
  StatusOr<int64_t> row_bytes = RowBytes(t->type, n);
  if (!row_bytes.ok()) return Bad("tensor '" + name + "': " + row_bytes.status().message());
  std::vector<float> v(n);
  DequantizeRowOf(Matrix{t->type, 1, n, t->data, *row_bytes}, 0, v.data());
  return v;
}

}  // namespace

StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(const std::string& path) {
  std::unique_ptr<LlamaModel> m(new LlamaModel());
  KEEL_ASSIGN_OR_RETURN(m->file_, GgufFile::Open(path));
  const GgufFile& f = *m->file_;
  KEEL_ASSIGN_OR_RETURN(std::string arch, f.GetString("general.architecture"));
  if (arch != "llama") return Bad("general.architecture is '" + arch + "', not 'llama'");
  LlamaConfig& c = m->config_;
  KEEL_ASSIGN_OR_RETURN(c.n_ctx, PositiveKey(f, "llama.context_length"));
  KEEL_ASSIGN_OR_RETURN(c.n_embd, PositiveKey(f, "llama.embedding_length"));
  KEEL_ASSIGN_OR_RETURN(c.n_layer, PositiveKey(f, "llama.block_count"));
  KEEL_ASSIGN_OR_RETURN(c.n_ff, PositiveKey(f, "llama.feed_forward_length"));
  KEEL_ASSIGN_OR_RETURN(c.n_head, PositiveKey(f, "llama.attention.head_count"));
  c.n_head_kv = c.n_head;
  if (f.Find("llama.attention.head_count_kv") != nullptr) {
    KEEL_ASSIGN_OR_RETURN(c.n_head_kv, PositiveKey(f, "llama.attention.head_count_kv"));
  }
  if (c.n_embd % c.n_head != 0 || c.n_head % c.n_head_kv != 0) {
    return Bad(fmt::format("{} heads of {} KV heads do not divide the width {}", c.n_head,
                           c.n_head_kv, c.n_embd));
  }
  c.head_dim = c.n_embd / c.n_head;
  if (c.head_dim % 2 != 0) return Bad(fmt::format("head dimension {} is odd", c.head_dim));
  if (f.Find("llama.rope.dimension_count") != nullptr) {
    KEEL_ASSIGN_OR_RETURN(uint64_t rope_dims, f.GetUInt("llama.rope.dimension_count"));
    if (static_cast<int64_t>(rope_dims) != c.head_dim) {
      return Bad(
          fmt::format("llama.rope.dimension_count {} != head dimension {} (partial "
                      "rotary embeddings are not supported)",
                      rope_dims, c.head_dim));
    }
  }
  KEEL_ASSIGN_OR_RETURN(double eps, f.GetFloat("llama.attention.layer_norm_rms_epsilon"));
  if (!(eps > 0 && eps < 1)) return Bad(fmt::format("rms epsilon {} (must be in (0, 1))", eps));
  c.rms_eps = static_cast<float>(eps);
  if (f.Find("llama.rope.freq_base") != nullptr) {
    KEEL_ASSIGN_OR_RETURN(double base, f.GetFloat("llama.rope.freq_base"));
    if (!(base > 1)) return Bad(fmt::format("llama.rope.freq_base {} (must be > 1)", base));
    c.rope_base = static_cast<float>(base);
  }
  const GgufTensor* embd = f.FindTensor("token_embd.weight");
  if (embd == nullptr || embd->ne.size() != 2) {
    return Bad("tensor 'token_embd.weight' is missing or not 2-D");
  }
  c.n_vocab = embd->ne[1];
  KEEL_ASSIGN_OR_RETURN(m->token_embd_, GetMatrix(f, "token_embd.weight", c.n_embd, c.n_vocab));
  KEEL_ASSIGN_OR_RETURN(m->output_norm_, GetVector(f, "output_norm.weight", c.n_embd));
  c.tied_output = f.FindTensor("output.weight") == nullptr;
  if (c.tied_output) {
    m->output_ = m->token_embd_;
  } else {
    KEEL_ASSIGN_OR_RETURN(m->output_, GetMatrix(f, "output.weight", c.n_embd, c.n_vocab));
  }
  const int64_t kv_width = c.head_dim * c.n_head_kv;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LlamaLayer layer;
    KEEL_ASSIGN_OR_RETURN(layer.attn_norm, GetVector(f, p + "attn_norm.weight", c.n_embd));
    KEEL_ASSIGN_OR_RETURN(layer.ffn_norm, GetVector(f, p + "ffn_norm.weight", c.n_embd));
    KEEL_ASSIGN_OR_RETURN(layer.wq, GetMatrix(f, p + "attn_q.weight", c.n_embd, c.n_embd));
    KEEL_ASSIGN_OR_RETURN(layer.wk, GetMatrix(f, p + "attn_k.weight", c.n_embd, kv_width));
    KEEL_ASSIGN_OR_RETURN(layer.wv, GetMatrix(f, p + "attn_v.weight", c.n_embd, kv_width));
    KEEL_ASSIGN_OR_RETURN(layer.wo, GetMatrix(f, p + "attn_output.weight", c.n_embd, c.n_embd));
    KEEL_ASSIGN_OR_RETURN(layer.w_gate, GetMatrix(f, p + "ffn_gate.weight", c.n_embd, c.n_ff));
    KEEL_ASSIGN_OR_RETURN(layer.w_up, GetMatrix(f, p + "ffn_up.weight", c.n_embd, c.n_ff));
    KEEL_ASSIGN_OR_RETURN(layer.w_down, GetMatrix(f, p + "ffn_down.weight", c.n_ff, c.n_embd));
    m->layers_.push_back(std::move(layer));
  }
  // Q8_0 / Q4_0 products get repacked copies for the VNNI kernels where the CPU has them
  // (packed.h); the mapped file still serves the float32-activation path and the embedding.
  std::vector<Matrix*> all = {&m->output_};
  for (LlamaLayer& L : m->layers_) {
    for (Matrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) all.push_back(w);
  }
  for (Matrix* w : all) {
    auto packed = std::make_unique<PackedMatrix>(PackedMatrix::Pack(*w));
    if (packed->empty()) continue;
    w->packed = packed.get();
    m->packed_.push_back(std::move(packed));
  }
  return m;
}

LlamaSession::LlamaSession(const LlamaModel& model, ComputePool* pool, bool quantize_activations)
    : model_(model),
      pool_(pool),
      quantize_activations_(quantize_activations),
      k_blocks_(model.config().n_layer),
      v_blocks_(model.config().n_layer) {}

void LlamaSession::Mul(const Matrix& w, const float* x, int64_t n, std::vector<ActBlock>& xq,
                       float* y) {
  if (!quantize_activations_ || !HasActivationPath(w.type)) {
    MatMul(w, x, n, y, pool_);
    return;
  }
  if (xq.empty()) {
    xq.resize(n * w.cols / 32);
    QuantizeActivations(x, n * w.cols, xq.data());
  }
  MatMulQ(w, xq.data(), n, y, pool_);
}

float* LlamaSession::Block(std::vector<std::unique_ptr<float[]>>& blocks, int64_t pos) const {
  const LlamaConfig& c = model_.config();
  while (static_cast<int64_t>(blocks.size()) <= pos / kBlock) {
    blocks.push_back(std::make_unique<float[]>(kBlock * c.n_head_kv * c.head_dim));
  }
  return blocks[pos / kBlock].get();
}

StatusOr<std::vector<float>> LlamaSession::Forward(std::span<const int32_t> tokens,
                                                   bool all_logits) {
  const LlamaConfig& c = model_.config();
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return InvalidArgumentError("Forward: no tokens");
  for (int32_t t : tokens) {
    if (t < 0 || t >= c.n_vocab) {
      return InvalidArgumentError(
          fmt::format("token id {} is outside the vocabulary [0, {})", t, c.n_vocab));
    }
  }
  if (pos_ + n > c.n_ctx) {
    return InvalidArgumentError(
        fmt::format("{} tokens after {} exceed the context length {}", n, pos_, c.n_ctx));
  }
  const int64_t E = c.n_embd, kv_width = c.n_head_kv * c.head_dim;
  std::vector<float> x(n * E), h(n * E), q(n * E), k(n * kv_width), v(n * kv_width);
  std::vector<float> attn(n * E), proj(n * E), gate(n * c.n_ff), up(n * c.n_ff);
  for (int64_t i = 0; i < n; ++i) DequantizeRowOf(model_.token_embd(), tokens[i], &x[i * E]);
  std::vector<int64_t> visible(n);
  for (int64_t i = 0; i < n; ++i) visible[i] = pos_ + i + 1;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));

  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LlamaLayer& L = model_.layers()[l];
    for (int64_t i = 0; i < n; ++i) {
      RmsNorm(&x[i * E], L.attn_norm.data(), E, c.rms_eps, &h[i * E]);
    }
    std::vector<ActBlock> hq;  // h quantized, shared by the products that read h
    Mul(L.wq, h.data(), n, hq, q.data());
    Mul(L.wk, h.data(), n, hq, k.data());
    Mul(L.wv, h.data(), n, hq, v.data());
    for (int64_t i = 0; i < n; ++i) {
      const int64_t p = pos_ + i;
      Rope(&q[i * E], c.n_head, c.head_dim, p, c.rope_base);
      Rope(&k[i * kv_width], c.n_head_kv, c.head_dim, p, c.rope_base);
      std::memcpy(Block(k_blocks_[l], p) + (p % kBlock) * kv_width, &k[i * kv_width], kv_width * 4);
      std::memcpy(Block(v_blocks_[l], p) + (p % kBlock) * kv_width, &v[i * kv_width], kv_width * 4);
    }
    std::vector<const float*> kb, vb;
    for (const auto& b : k_blocks_[l]) kb.push_back(b.get());
    for (const auto& b : v_blocks_[l]) vb.push_back(b.get());
    AttentionArgs args{.q = q.data(),
                       .n_q = n,
                       .n_heads = c.n_head,
                       .kv = {.k_blocks = kb.data(),
                              .v_blocks = vb.data(),
                              .block_size = kBlock,
                              .length = pos_ + n,
                              .n_kv_heads = c.n_head_kv,
                              .head_dim = c.head_dim},
                       .visible = visible.data(),
                       .scale = scale,
                       .out = attn.data()};
    KEEL_RETURN_IF_ERROR(Attention(args, pool_));
    std::vector<ActBlock> attn_q;
    Mul(L.wo, attn.data(), n, attn_q, proj.data());
    for (int64_t j = 0; j < n * E; ++j) x[j] += proj[j];
    for (int64_t i = 0; i < n; ++i) {
      RmsNorm(&x[i * E], L.ffn_norm.data(), E, c.rms_eps, &h[i * E]);
    }
    hq.clear();
    Mul(L.w_gate, h.data(), n, hq, gate.data());
    Mul(L.w_up, h.data(), n, hq, up.data());
    SwiGlu(gate.data(), up.data(), n * c.n_ff, gate.data());
    std::vector<ActBlock> gate_q;
    Mul(L.w_down, gate.data(), n, gate_q, proj.data());
    for (int64_t j = 0; j < n * E; ++j) x[j] += proj[j];
  }
  pos_ += n;
  const int64_t first = all_logits ? 0 : n - 1;
  const int64_t rows = n - first;
  for (int64_t i = first; i < n; ++i) {
    RmsNorm(&x[i * E], model_.output_norm().data(), E, c.rms_eps, &h[(i - first) * E]);
  }
  std::vector<float> logits(rows * c.n_vocab);
  std::vector<ActBlock> hq;
  Mul(model_.output(), h.data(), rows, hq, logits.data());
  return logits;
}

}  // namespace keel::infer

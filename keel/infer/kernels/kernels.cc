// Reference CPU kernels (see kernels.h). Rows of a matrix are split across the pool.
#include "keel/infer/kernels/kernels.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "keel/common/bfloat16.h"
#include "keel/common/float16.h"
#include "keel/infer/kernels/compute_pool.h"
#include "keel/infer/kernels/dot_row.h"
#include "keel/infer/kernels/for_rows.h"
#include "keel/infer/kernels/packed.h"
#include "keel/infer/quant/quant.h"

namespace keel::infer {

void MatVec(const Matrix& w, const float* x, float* y, ComputePool* pool) {
  ForRows(w.rows, w.cols, pool, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      y[r] = simd::DotRow(w.type, w.data + r * w.row_bytes, x, w.cols);
  });
}

void MatMul(const Matrix& w, const float* x, int64_t n, float* y, ComputePool* pool) {
  // Rows of W outside, tokens inside, four at a time: each weight row is read and widened
  // once per four tokens.
  ForRows(w.rows, w.cols * n, pool, [&](int64_t begin, int64_t end) {
    float out[4];
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* row = w.data + r * w.row_bytes;
      for (int64_t i = 0; i < n; i += 4) {
        const int64_t k = std::min<int64_t>(4, n - i);
        const float* xs[4] = {x + i * w.cols, x + std::min(i + 1, n - 1) * w.cols,
                              x + std::min(i + 2, n - 1) * w.cols,
                              x + std::min(i + 3, n - 1) * w.cols};
        simd::DotRow4(w.type, row, xs, k, w.cols, out);
        for (int64_t j = 0; j < k; ++j) y[(i + j) * w.rows + r] = out[j];
      }
    }
  });
}

void MatMulQ(const Matrix& w, const ActBlock* xq, int64_t n, float* y, ComputePool* pool) {
  if (w.packed != nullptr) {
    MatMulPacked(*w.packed, xq, n, y, pool);
    return;
  }
  const int64_t blocks = w.cols / 32;
  if (n == 1) {  // decode: four weight rows per pass over the activations
    ForRows((w.rows + 3) / 4, 4 * w.cols, pool, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g) {
        const int64_t r = 4 * g, k = std::min<int64_t>(4, w.rows - r);
        simd::DotRowsQ(w.type, w.data + r * w.row_bytes, w.row_bytes, k, &xq, 1, w.cols, y + r);
      }
    });
    return;
  }
  // Prefill: tiles of 4 weight rows x 4 tokens; each weight block is unpacked once per four
  // tokens and each activation block loaded once per four rows.
  ForRows((w.rows + 3) / 4, 4 * w.cols * n, pool, [&](int64_t begin, int64_t end) {
    float out[16];
    for (int64_t g = begin; g < end; ++g) {
      const int64_t r = 4 * g, k_rows = std::min<int64_t>(4, w.rows - r);
      for (int64_t i = 0; i < n; i += 4) {
        const int64_t k = std::min<int64_t>(4, n - i);
        const ActBlock* xs[4];
        for (int64_t j = 0; j < k; ++j) xs[j] = xq + (i + j) * blocks;
        simd::DotRowsQ(w.type, w.data + r * w.row_bytes, w.row_bytes, k_rows, xs, k, w.cols, out);
        for (int64_t a = 0; a < k_rows; ++a) {
          for (int64_t j = 0; j < k; ++j) y[(i + j) * w.rows + r + a] = out[a * k + j];
        }
      }
    }
  });
}

void DequantizeRowOf(const Matrix& w, int64_t r, float* out) {
  (void)DequantizeRow(w.type, {w.data + r * w.row_bytes, static_cast<size_t>(w.row_bytes)},
                      {out, static_cast<size_t>(w.cols)});
}

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

void Rope(float* x, int64_t heads, int64_t head_dim, int64_t pos, float base) {
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const double theta = pos * std::pow(double(base), -2.0 * i / head_dim);
    const float c = static_cast<float>(std::cos(theta)), s = static_cast<float>(std::sin(theta));
    for (int64_t h = 0; h < heads; ++h) {
      float* p = x + h * head_dim + 2 * i;
      const float a = p[0], b = p[1];
      p[0] = a * c - b * s;
      p[1] = a * s + b * c;
    }
  }
}

void SwiGlu(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

namespace {

// Online-softmax state of one (query row, head) over part of the cache.
struct Partial {
  float m = -std::numeric_limits<float>::infinity();
  float l = 0;
  std::vector<float> o;
};

// Attends query row `i`, head `h` over cache positions [begin, end) (visibility applied).
void Attend(const AttentionArgs& a, int64_t i, int64_t h, int64_t begin, int64_t end, Partial* st) {
  const KvView& kv = a.kv;
  const int64_t hd = kv.head_dim;
  const int64_t kvh = h / (a.n_heads / kv.n_kv_heads);
  const float* q = a.q + (i * a.n_heads + h) * hd;
  st->o.assign(hd, 0.0f);
  const int64_t limit = a.visible != nullptr ? std::min(end, a.visible[i]) : end;
  std::vector<float> scores;
  for (int64_t block_start = begin - begin % kv.block_size; block_start < limit;
       block_start += kv.block_size) {
    const int64_t b = block_start / kv.block_size;
    const int64_t lo = std::max(begin, block_start);
    const int64_t hi = std::min(limit, block_start + kv.block_size);
    scores.assign(hi - lo, -std::numeric_limits<float>::infinity());
    float block_max = -std::numeric_limits<float>::infinity();
    for (int64_t p = lo; p < hi; ++p) {
      if (a.mask != nullptr && a.mask[i * kv.length + p] == 0) continue;
      const float* k = kv.k_blocks[b] + ((p - block_start) * kv.n_kv_heads + kvh) * hd;
      scores[p - lo] =
          simd::DotRow(GgmlType::kF32, reinterpret_cast<const uint8_t*>(k), q, hd) * a.scale;
      block_max = std::max(block_max, scores[p - lo]);
    }
    if (block_max == -std::numeric_limits<float>::infinity()) continue;  // all masked
    const float m_new = std::max(st->m, block_max);
    const float correction = std::exp(st->m - m_new);
    st->l *= correction;
    for (float& o : st->o) o *= correction;
    for (int64_t p = lo; p < hi; ++p) {
      if (scores[p - lo] == -std::numeric_limits<float>::infinity()) continue;
      const float w = std::exp(scores[p - lo] - m_new);
      st->l += w;
      const float* v = kv.v_blocks[b] + ((p - block_start) * kv.n_kv_heads + kvh) * hd;
      simd::Axpy(w, v, st->o.data(), hd);
    }
    st->m = m_new;
  }
}

}  // namespace

Status Attention(const AttentionArgs& a, ComputePool* pool) {
  const KvView& kv = a.kv;
  if (a.n_q < 0 || a.n_heads <= 0 || kv.n_kv_heads <= 0 || a.n_heads % kv.n_kv_heads != 0 ||
      kv.head_dim <= 0 || kv.block_size <= 0 || kv.length < 0) {
    return InvalidArgumentError(fmt::format(
        "attention: bad shape (n_q {}, heads {}, kv heads {}, head_dim {}, block {}, length {})",
        a.n_q, a.n_heads, kv.n_kv_heads, kv.head_dim, kv.block_size, kv.length));
  }
  const int64_t hd = kv.head_dim;
  // FlashDecoding: one query row over a long cache is split into chunks of the cache.
  const int64_t chunks = (a.n_q == 1 && pool != nullptr && kv.length >= 512)
                             ? std::min<int64_t>(pool->size() + 1, kv.length / 256)
                             : 1;
  const int64_t tasks = a.n_q * a.n_heads * chunks;
  std::vector<Partial> partials(tasks);
  auto run = [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      const int64_t c = t % chunks, ih = t / chunks;
      const int64_t begin = kv.length * c / chunks, end = kv.length * (c + 1) / chunks;
      Attend(a, ih / a.n_heads, ih % a.n_heads, begin, end, &partials[t]);
    }
  };
  // Like ForRows: little work (short caches) stays on the calling thread.
  if (pool == nullptr || tasks < 2 || a.n_q * a.n_heads * kv.length * hd < (1 << 18)) {
    run(0, tasks);
  } else {
    pool->ParallelFor(tasks, run);
  }
  // Merge the chunks of each (row, head) by log-sum-exp and normalise.
  for (int64_t ih = 0; ih < a.n_q * a.n_heads; ++ih) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t c = 0; c < chunks; ++c) m = std::max(m, partials[ih * chunks + c].m);
    float* out = a.out + ih * hd;
    std::fill(out, out + hd, 0.0f);
    if (m == -std::numeric_limits<float>::infinity()) continue;  // sees nothing: zeros
    float l = 0;
    for (int64_t c = 0; c < chunks; ++c) {
      const Partial& p = partials[ih * chunks + c];
      if (p.l == 0) continue;
      const float w = std::exp(p.m - m);
      l += w * p.l;
      for (int64_t d = 0; d < hd; ++d) out[d] += w * p.o[d];
    }
    for (int64_t d = 0; d < hd; ++d) out[d] /= l;
  }
  return OkStatus();
}

}  // namespace keel::infer

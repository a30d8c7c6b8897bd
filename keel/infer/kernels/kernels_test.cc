// Kernels against naive float64 references: paged online-softmax attention (block sizes that
// do not divide the length, GQA, causal rows, arbitrary tree masks, FlashDecoding's split-KV
// merge on a pool) and matrix-vector products for every weight type.
#include "keel/infer/kernels/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "keel/infer/kernels/compute_pool.h"
#include "keel/infer/kernels/dot_row.h"
#include "keel/infer/kernels/packed.h"
#include "keel/infer/quant/quant.h"

namespace keel::infer {
namespace {

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

struct Case {
  int64_t n_q, n_heads, n_kv_heads, head_dim, length, block;
};

// Contiguous K/V [length][n_kv][hd], copied into blocks.
void CheckAttention(const Case& c, bool tree_mask, ComputePool* pool) {
  const int64_t hd = c.head_dim, kvw = c.n_kv_heads * hd;
  std::vector<float> q = Random(c.n_q * c.n_heads * hd, 1), k = Random(c.length * kvw, 2),
                     v = Random(c.length * kvw, 3);
  std::vector<std::vector<float>> kb, vb;
  for (int64_t p0 = 0; p0 < c.length; p0 += c.block) {
    kb.emplace_back(c.block * kvw, NAN);  // unused tail positions must never be read
    vb.emplace_back(c.block * kvw, NAN);
    for (int64_t p = p0; p < std::min(c.length, p0 + c.block); ++p) {
      std::copy(&k[p * kvw], &k[(p + 1) * kvw], &kb.back()[(p - p0) * kvw]);
      std::copy(&v[p * kvw], &v[(p + 1) * kvw], &vb.back()[(p - p0) * kvw]);
    }
  }
  std::vector<const float*> kp, vp;
  for (auto& b : kb) kp.push_back(b.data());
  for (auto& b : vb) vp.push_back(b.data());
  std::vector<int64_t> visible(c.n_q);
  std::vector<uint8_t> mask(c.n_q * c.length, 0);
  std::mt19937 rng(4);
  for (int64_t i = 0; i < c.n_q; ++i) {
    visible[i] = c.length - c.n_q + i + 1;  // causal: the last n_q positions are the queries
    for (int64_t p = 0; p < c.length; ++p) mask[i * c.length + p] = rng() % 3 != 0;
  }
  std::vector<float> out(c.n_q * c.n_heads * hd);
  AttentionArgs a{.q = q.data(),
                  .n_q = c.n_q,
                  .n_heads = c.n_heads,
                  .kv = {kp.data(), vp.data(), c.block, c.length, c.n_kv_heads, hd},
                  .visible = tree_mask ? nullptr : visible.data(),
                  .mask = tree_mask ? mask.data() : nullptr,
                  .scale = 1.0f / std::sqrt(float(hd)),
                  .out = out.data()};
  ASSERT_TRUE(Attention(a, pool).ok());
  for (int64_t i = 0; i < c.n_q; ++i) {
    for (int64_t h = 0; h < c.n_heads; ++h) {
      const int64_t kvh = h / (c.n_heads / c.n_kv_heads);
      std::vector<double> s(c.length, -INFINITY);
      double m = -INFINITY;
      for (int64_t p = 0; p < c.length; ++p) {
        const bool see = tree_mask ? mask[i * c.length + p] != 0 : p < visible[i];
        if (!see) continue;
        double dot = 0;
        for (int64_t d = 0; d < hd; ++d)
          dot += double(q[(i * c.n_heads + h) * hd + d]) * k[p * kvw + kvh * hd + d];
        s[p] = dot * a.scale;
        m = std::max(m, s[p]);
      }
      double l = 0;
      std::vector<double> o(hd, 0);
      for (int64_t p = 0; p < c.length; ++p) {
        if (s[p] == -INFINITY) continue;
        const double w = std::exp(s[p] - m);
        l += w;
        for (int64_t d = 0; d < hd; ++d) o[d] += w * v[p * kvw + kvh * hd + d];
      }
      for (int64_t d = 0; d < hd; ++d) {
        const double want = l > 0 ? o[d] / l : 0.0;
        ASSERT_NEAR(out[(i * c.n_heads + h) * hd + d], want, 1e-4)
            << "row " << i << " head " << h << " d " << d << " len " << c.length;
      }
    }
  }
}

TEST(Attention, PagedOnlineSoftmaxMatchesNaive) {
  ComputePool pool(3, "attn-test");
  const Case cases[] = {{1, 4, 2, 16, 1, 16},   {1, 4, 2, 16, 37, 16},   {5, 4, 4, 8, 40, 7},
                        {7, 8, 1, 32, 100, 16}, {1, 8, 2, 64, 1000, 16}, {1, 2, 2, 16, 2049, 32},
                        {16, 4, 2, 16, 300, 16}};
  for (const Case& c : cases) {
    for (ComputePool* p : {static_cast<ComputePool*>(nullptr), &pool}) {
      CheckAttention(c, /*tree_mask=*/false, p);
      CheckAttention(c, /*tree_mask=*/true, p);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(Attention, RejectsBadShapes) {
  AttentionArgs a{.n_q = 1, .n_heads = 3, .kv = {.block_size = 16, .n_kv_heads = 2, .head_dim = 8}};
  EXPECT_NE(Attention(a, nullptr).message().find("bad shape"), std::string::npos);
}

void CheckMatVec(int64_t rows, int64_t cols) {
  ComputePool pool(2, "matvec-test");
  std::vector<float> w = Random(rows * cols, 7), x = Random(cols, 8);
  for (GgmlType t :
       {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0, GgmlType::kQ4_0}) {
    const int64_t rb = *RowBytes(t, cols);
    std::vector<uint8_t> bytes(rows * rb);
    for (int64_t r = 0; r < rows; ++r) {
      ASSERT_TRUE(QuantizeRow(t, {&w[r * cols], size_t(cols)}, {&bytes[r * rb], size_t(rb)}).ok());
    }
    Matrix m{t, rows, cols, bytes.data(), rb};
    std::vector<float> y(rows), yy(3 * rows), row(cols);
    MatVec(m, x.data(), y.data(), &pool);
    std::vector<float> x3 = Random(3 * cols, 9);
    MatMul(m, x3.data(), 3, yy.data(), &pool);
    for (int64_t r = 0; r < rows; ++r) {
      DequantizeRowOf(m, r, row.data());
      double want = 0;
      for (int64_t j = 0; j < cols; ++j) want += double(row[j]) * x[j];
      ASSERT_NEAR(y[r], want, 1e-3 * std::sqrt(cols / 256.0))
          << static_cast<int>(t) << " row " << r;
      for (int64_t i = 0; i < 3; ++i) {
        double w3 = 0;
        for (int64_t j = 0; j < cols; ++j) w3 += double(row[j]) * x3[i * cols + j];
        ASSERT_NEAR(yy[i * rows + r], w3, 1e-3 * std::sqrt(cols / 256.0));
      }
    }
  }
}

// MatMulQ on the file's layout (the path of CPUs without VNNI) and on packed rows, against the
// integer-path definition, for row counts and token counts that leave partial tiles.
TEST(MatMulQ, FileLayoutAndPackedMatchTheReference) {
  ComputePool pool(2, "matmulq-test");
  for (GgmlType t : {GgmlType::kQ8_0, GgmlType::kQ4_0}) {
    for (int64_t rows : {13, 600}) {
      const int64_t cols = 2048, rb = *RowBytes(t, cols);
      std::vector<float> w = Random(rows * cols, 11);
      std::vector<uint8_t> bytes(rows * rb);
      for (int64_t r = 0; r < rows; ++r) {
        ASSERT_TRUE(
            QuantizeRow(t, {&w[r * cols], size_t(cols)}, {&bytes[r * rb], size_t(rb)}).ok());
      }
      const Matrix m{t, rows, cols, bytes.data(), rb};
      const PackedMatrix packed = PackedMatrix::Pack(m);
      Matrix mp = m;
      mp.packed = packed.empty() ? nullptr : &packed;
      for (int64_t n : {1, 3, 6}) {
        std::vector<float> x = Random(n * cols, 12);
        std::vector<ActBlock> xq(n * cols / 32);
        QuantizeActivations(x.data(), n * cols, xq.data());
        for (const Matrix* which : {&m, static_cast<const Matrix*>(&mp)}) {
          std::vector<float> y(n * rows, NAN);
          MatMulQ(*which, xq.data(), n, y.data(), &pool);
          for (int64_t i = 0; i < n; ++i) {
            for (int64_t r = 0; r < rows; ++r) {
              const float want = reference::DotRowQ(t, &bytes[r * rb], &xq[i * cols / 32], cols);
              ASSERT_NEAR(y[i * rows + r], want, 1e-4 * std::fabs(want) + 1e-3)
                  << static_cast<int>(t) << " rows " << rows << " n " << n << " at " << i << ","
                  << r << (which == &m ? " file layout" : " packed");
            }
          }
        }
      }
    }
  }
}

TEST(MatVec, EveryWeightTypeMatchesDequantizeThenDot) {
  CheckMatVec(70, 256);    // small: runs on the calling thread
  CheckMatVec(600, 2048);  // > 1M multiply-adds: split across the pool
}

}  // namespace
}  // namespace keel::infer

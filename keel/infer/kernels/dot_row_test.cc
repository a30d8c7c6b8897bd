// Every SIMD target compiled in against the scalar reference dot product, for every weight
// type, on random, zero, huge and tiny values and row lengths that are and are not multiples of
// the vector width.
#include "keel/infer/kernels/dot_row.h"

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "keel/infer/quant/quant.h"

namespace keel::infer {
namespace {

TEST(DotRow, EverySimdTargetMatchesTheReference) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0, 1);
  const float scales[] = {1.0f, 0.0f, 1e10f, 1e-20f};
  int checked = 0;
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    ASSERT_EQ(std::string(hwy::TargetName(target)), simd::TargetName());
    for (GgmlType t :
         {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0, GgmlType::kQ4_0}) {
      const bool plain = t == GgmlType::kF32 || t == GgmlType::kF16 || t == GgmlType::kBF16;
      for (int64_t n : {32, 64, 96, 256, 4096}) {
        for (int64_t extra : {0, 1, 7, 13}) {
          if (!plain && extra != 0) continue;  // quantized rows are whole blocks
          const int64_t len = n + extra;
          for (float scale : scales) {
            // F16, and the fp16 scale d of Q8_0/Q4_0 blocks, cannot hold huge values.
            if (t != GgmlType::kF32 && t != GgmlType::kBF16 && scale > 6e4f) scale = 1e3f;
            std::vector<float> w(len), x(len);
            for (float& v : w) v = normal(rng) * scale;
            for (float& v : x) v = normal(rng);
            std::vector<uint8_t> row(*RowBytes(t, len));
            ASSERT_TRUE(QuantizeRow(t, w, row).ok());
            std::vector<float> deq(len);
            ASSERT_TRUE(DequantizeRow(t, row, deq).ok());
            double magnitude = 0;
            for (int64_t j = 0; j < len; ++j) magnitude += std::fabs(double(deq[j]) * x[j]);
            const float want = reference::DotRow(t, row.data(), x.data(), len);
            const float got = simd::DotRow(t, row.data(), x.data(), len);
            ASSERT_NEAR(got, want, 1e-5 * magnitude + 1e-30)
                << hwy::TargetName(target) << " type " << static_cast<int>(t) << " n " << len
                << " scale " << scale;
            // The 4-row variant, with 1..4 rows, against the same reference.
            std::vector<std::vector<float>> xs(4, std::vector<float>(len));
            for (auto& xv : xs) {
              for (float& v : xv) v = normal(rng);
            }
            const float* ptrs[4] = {xs[0].data(), xs[1].data(), xs[2].data(), xs[3].data()};
            for (int64_t k = 1; k <= 4; ++k) {
              float out[4];
              simd::DotRow4(t, row.data(), ptrs, k, len, out);
              for (int64_t i = 0; i < k; ++i) {
                double mag = 0;
                for (int64_t j = 0; j < len; ++j) mag += std::fabs(double(deq[j]) * xs[i][j]);
                ASSERT_NEAR(out[i], reference::DotRow(t, row.data(), ptrs[i], len),
                            1e-5 * mag + 1e-30)
                    << "DotRow4 " << hwy::TargetName(target) << " type " << static_cast<int>(t)
                    << " k " << k << " i " << i;
              }
            }
            ++checked;
          }
        }
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
  EXPECT_GT(checked, 300);
}

// The integer path: quantized activations against Q8_0 / Q4_0 rows, every target, every tile
// shape, against the scalar definition; and the definition against float math on the
// dequantized values (the integer sums must be exact).
TEST(DotRowQ, EverySimdTargetMatchesTheReference) {
  std::mt19937 rng(12);
  std::normal_distribution<float> normal(0, 1);
  int checked = 0;
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    std::printf("integer path on %s\n", hwy::TargetName(target));
    for (GgmlType t : {GgmlType::kQ8_0, GgmlType::kQ4_0}) {
      for (int64_t n : {32, 64, 256, 4096}) {
        for (float scale : {1.0f, 0.0f, 1e3f, 1e-20f}) {
          const int64_t row_bytes = *RowBytes(t, n);
          std::vector<uint8_t> rows(4 * row_bytes);
          std::vector<std::vector<ActBlock>> acts(4, std::vector<ActBlock>(n / 32));
          for (int64_t r = 0; r < 4; ++r) {
            std::vector<float> w(n), x(n);
            for (float& v : w) v = normal(rng) * scale;
            for (float& v : x) v = normal(rng) * (r == 3 ? 1e4f : 1.0f);
            ASSERT_TRUE(QuantizeRow(t, w, {rows.data() + r * row_bytes, size_t(row_bytes)}).ok());
            QuantizeActivations(x.data(), n, acts[r].data());
          }
          const ActBlock* xs[4] = {acts[0].data(), acts[1].data(), acts[2].data(), acts[3].data()};
          for (auto [k_rows, k_x] : {std::pair{1, 1},
                                     {2, 1},
                                     {4, 1},
                                     {3, 1},
                                     {1, 2},
                                     {1, 4},
                                     {1, 3},
                                     {2, 3},
                                     {4, 4},
                                     {3, 2}}) {
            float out[16];
            simd::DotRowsQ(t, rows.data(), row_bytes, k_rows, xs, k_x, n, out);
            for (int64_t r = 0; r < k_rows; ++r) {
              for (int64_t c = 0; c < k_x; ++c) {
                const uint8_t* row = rows.data() + r * row_bytes;
                std::vector<float> deq(n);
                ASSERT_TRUE(DequantizeRow(t, {row, size_t(row_bytes)}, deq).ok());
                double magnitude = 0, exact = 0;
                for (int64_t j = 0; j < n; ++j) {
                  const ActBlock& block = xs[c][j / 32];
                  const double xv = double(block.d) * block.q[j % 32];
                  magnitude += std::fabs(deq[j] * xv);
                  exact += deq[j] * xv;
                }
                const float want = reference::DotRowQ(t, row, xs[c], n);
                ASSERT_NEAR(want, exact, 1e-5 * magnitude + 1e-30) << "reference n " << n;
                ASSERT_NEAR(out[r * k_x + c], want, 1e-5 * magnitude + 1e-30)
                    << hwy::TargetName(target) << " type " << static_cast<int>(t) << " n " << n
                    << " tile " << k_rows << "x" << k_x << " at " << r << "," << c;
                ++checked;
              }
            }
          }
        }
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
  EXPECT_GT(checked, 1000);
}

TEST(DotRowQ, ActivationsRoundTripWithinHalfAStep) {
  std::mt19937 rng(13);
  std::normal_distribution<float> normal(0, 3);
  std::vector<float> x(256);
  for (float& v : x) v = normal(rng);
  x[5] = 0;
  std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // an all-zero block: d = 0, q = 0
  std::vector<ActBlock> q(8);
  QuantizeActivations(x.data(), 256, q.data());
  for (int64_t j = 0; j < 256; ++j) {
    const ActBlock& b = q[j / 32];
    EXPECT_LE(std::fabs(b.d * b.q[j % 32] - x[j]), 0.5f * b.d * (1 + 1e-6f)) << j;
  }
  for (const ActBlock& b : q) {
    int32_t sum = 0;
    for (int8_t v : b.q) sum += v;
    EXPECT_EQ(b.sum, sum);
  }
  EXPECT_EQ(q[1].d, 0.0f);
}

}  // namespace
}  // namespace keel::infer

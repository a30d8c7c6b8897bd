// Every SIMD target compiled in against the scalar reference dot product, for every weight
// type, on random, zero, huge and tiny values and row lengths that are and are not multiples of
// the vector width.
#include "keel/infer/kernels/dot_row.h"

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
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

}  // namespace
}  // namespace keel::infer

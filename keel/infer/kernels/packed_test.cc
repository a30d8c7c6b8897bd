// The row-interleaved VNNI kernels against the scalar integer-path definition: Q8_0 and Q4_0,
// row counts that are and are not whole groups of 8, 1..9 activation rows, with and without a
// pool.
#include "keel/infer/kernels/packed.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "keel/infer/kernels/compute_pool.h"
#include "keel/infer/kernels/dot_row.h"
#include "keel/infer/quant/quant.h"

namespace keel::infer {
namespace {

TEST(PackedMatrix, MatchesTheIntegerReference) {
  if (!PackedMatrix::Supported()) GTEST_SKIP() << "this CPU has no AVX-512 VNNI";
  std::mt19937 rng(21);
  std::normal_distribution<float> normal(0, 1);
  ComputePool pool(2, "packed-test");
  int checked = 0;
  for (GgmlType t : {GgmlType::kQ8_0, GgmlType::kQ4_0}) {
    for (auto [rows, cols] :
         {std::pair<int64_t, int64_t>{8, 32}, {13, 64}, {1, 256}, {37, 512}, {1024, 1024}}) {
      const int64_t row_bytes = *RowBytes(t, cols);
      std::vector<uint8_t> data(rows * row_bytes);
      std::vector<float> w(cols);
      for (int64_t r = 0; r < rows; ++r) {
        for (float& v : w) v = normal(rng) * (r % 5 == 4 ? 0.0f : 1.0f);  // some zero rows
        ASSERT_TRUE(QuantizeRow(t, w, {data.data() + r * row_bytes, size_t(row_bytes)}).ok());
      }
      const Matrix m{t, rows, cols, data.data(), row_bytes};
      const PackedMatrix p = PackedMatrix::Pack(m);
      ASSERT_FALSE(p.empty());
      for (int64_t n : {1, 2, 4, 5, 9}) {
        std::vector<float> x(n * cols);
        for (float& v : x) v = normal(rng) * 10;
        std::vector<ActBlock> xq(n * cols / 32);
        QuantizeActivations(x.data(), n * cols, xq.data());
        for (ComputePool* tp : {static_cast<ComputePool*>(nullptr), &pool}) {
          std::vector<float> y(n * rows, NAN);
          MatMulPacked(p, xq.data(), n, y.data(), tp);
          std::vector<float> deq(cols);
          for (int64_t i = 0; i < n; ++i) {
            for (int64_t r = 0; r < rows; ++r) {
              const uint8_t* row = data.data() + r * row_bytes;
              ASSERT_TRUE(DequantizeRow(t, {row, size_t(row_bytes)}, deq).ok());
              double magnitude = 0;
              for (int64_t j = 0; j < cols; ++j) magnitude += std::fabs(deq[j] * x[i * cols + j]);
              const float want = reference::DotRowQ(t, row, xq.data() + i * cols / 32, cols);
              ASSERT_NEAR(y[i * rows + r], want, 1e-5 * magnitude + 1e-30)
                  << "type " << static_cast<int>(t) << " " << rows << "x" << cols << " n " << n
                  << " at " << i << "," << r;
              ++checked;
            }
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 10000);
}

TEST(PackedMatrix, OtherTypesAreNotPacked) {
  std::vector<float> w(64, 1.0f);
  const Matrix m{GgmlType::kF32, 2, 32, reinterpret_cast<const uint8_t*>(w.data()), 128};
  EXPECT_TRUE(PackedMatrix::Pack(m).empty());
}

}  // namespace
}  // namespace keel::infer

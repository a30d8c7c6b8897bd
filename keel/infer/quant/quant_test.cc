// Weight formats against their definitions: the exact bytes llama.cpp's reference quantizers
// produce for hand-checked blocks, dequantization = the format's formula, and error bounds.
#include "keel/infer/quant/quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "keel/common/float16.h"

namespace keel::infer {
namespace {

TEST(Quant, Q8_0BlockBytesFollowTheDefinition) {
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i - 16) * 0.5f;  // amax 8 at i=0
  std::vector<uint8_t> bytes(34);
  ASSERT_TRUE(QuantizeRow(GgmlType::kQ8_0, x, bytes).ok());
  BlockQ8_0 b;
  std::memcpy(&b, bytes.data(), 34);
  EXPECT_EQ(b.d, FloatToFloat16(8.0f / 127.0f));
  for (int i = 0; i < 32; ++i) {
    // round-half-away-from-zero of x * (127 / 8)
    EXPECT_EQ(b.qs[i], static_cast<int8_t>(std::round(x[i] * (1.0f / (8.0f / 127.0f))))) << i;
  }
  EXPECT_EQ(b.qs[0], -127);
  std::vector<float> back(32);
  ASSERT_TRUE(DequantizeRow(GgmlType::kQ8_0, bytes, back).ok());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(back[i], Float16ToFloat(b.d) * b.qs[i]);
}

TEST(Quant, Q4_0BlockBytesFollowTheDefinition) {
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i) - 10.0f;  // max |v| = 21 at i=31
  std::vector<uint8_t> bytes(18);
  ASSERT_TRUE(QuantizeRow(GgmlType::kQ4_0, x, bytes).ok());
  BlockQ4_0 b;
  std::memcpy(&b, bytes.data(), 18);
  const float d = 21.0f / -8.0f;  // the signed value of largest magnitude / -8
  EXPECT_EQ(b.d, FloatToFloat16(d));
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] / d + 8.5f)));
    const int hi = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] / d + 8.5f)));
    EXPECT_EQ(b.qs[j] & 0x0F, lo) << j;  // weight j: low nibble
    EXPECT_EQ(b.qs[j] >> 4, hi) << j;    // weight j+16: high nibble
  }
  EXPECT_EQ(b.qs[15] >> 4, 0);  // x[31] = 21 = -8 * d -> q = 0
  std::vector<float> back(32);
  ASSERT_TRUE(DequantizeRow(GgmlType::kQ4_0, bytes, back).ok());
  const float dd = Float16ToFloat(b.d);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(back[j], static_cast<float>((b.qs[j] & 0x0F) - 8) * dd);
    EXPECT_EQ(back[j + 16], static_cast<float>((b.qs[j] >> 4) - 8) * dd);
  }
}

TEST(Quant, ErrorsStayWithinHalfAStep) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> x(4096);
  for (float& v : x) v = normal(rng);
  for (GgmlType t :
       {GgmlType::kQ8_0, GgmlType::kQ4_0, GgmlType::kF16, GgmlType::kBF16, GgmlType::kF32}) {
    std::vector<uint8_t> q(*RowBytes(t, 4096));
    std::vector<float> back(4096);
    ASSERT_TRUE(QuantizeRow(t, x, q).ok());
    ASSERT_TRUE(DequantizeRow(t, q, back).ok());
    for (int b = 0; b < 4096 / 32; ++b) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
      for (int j = 0; j < 32; ++j) {
        const float v = x[b * 32 + j], r = back[b * 32 + j];
        float bound = 0;
        if (t == GgmlType::kQ8_0) bound = 0.5f * amax / 127 * 1.01f + 1e-3f * amax;
        if (t == GgmlType::kQ4_0) bound = 0.5f * amax / 8 * 1.01f + 1e-3f * amax + amax / 8;
        if (t == GgmlType::kF16) bound = std::fabs(v) * 1e-3f;
        if (t == GgmlType::kBF16) bound = std::fabs(v) * 4e-3f;
        ASSERT_LE(std::fabs(v - r), bound) << static_cast<int>(t) << " block " << b;
      }
    }
  }
}

TEST(Quant, ZerosAndBadSizes) {
  std::vector<float> zeros(64, 0.0f), back(64, 1.0f);
  std::vector<uint8_t> q(36);
  ASSERT_TRUE(QuantizeRow(GgmlType::kQ4_0, zeros, q).ok());
  ASSERT_TRUE(DequantizeRow(GgmlType::kQ4_0, q, back).ok());
  for (float v : back) EXPECT_EQ(v, 0.0f);
  EXPECT_NE(RowBytes(GgmlType::kQ8_0, 33).status().message().find("not whole q8_0 blocks"),
            std::string::npos);
  EXPECT_NE(RowBytes(GgmlType::kQ4_K, 256).status().message().find("q4_k is not supported"),
            std::string::npos);
  std::vector<uint8_t> short_buf(10);
  EXPECT_FALSE(QuantizeRow(GgmlType::kQ8_0, zeros, short_buf).ok());
  EXPECT_FALSE(DequantizeRow(GgmlType::kQ8_0, short_buf, back).ok());
}

}  // namespace
}  // namespace keel::infer

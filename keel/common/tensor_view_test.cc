#include "keel/common/tensor_view.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "keel/common/bfloat16.h"

namespace keel {
namespace {

TEST(TensorViewTest, DTypeTablesAndParsing) {
  EXPECT_EQ(DTypeSize(DType::kBFloat16), 2u);
  EXPECT_EQ(DTypeSize(DType::kInt64), 8u);
  EXPECT_EQ(DTypeName(DType::kBFloat16), "bfloat16");
  EXPECT_EQ(*ParseDType("int64"), DType::kInt64);
  EXPECT_EQ(ParseDType("float128").status().code(), StatusCode::kInvalidArgument);
}

TEST(TensorViewTest, ContiguityFollowsStrides) {
  TensorView t;
  t.dtype = DType::kFloat32;
  t.shape = {2, 3};
  t.strides = TensorView::ContiguousStrides(t.shape);
  EXPECT_EQ(t.strides, (std::vector<int64_t>{3, 1}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24u);
  t.strides = {1, 2};  // a transpose
  EXPECT_FALSE(t.is_contiguous());
  t.shape = {1, 3};
  t.strides = {99, 1};  // size-1 dimensions may have any stride
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.DebugString(), "float32[1, 3] cpu");
}

TEST(BFloat16Test, RoundTripsAndRoundsToNearestEven) {
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(1.0f)), 1.0f);
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(-2.5f)), -2.5f);
  // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to the even one (1).
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(1.0f + 1.0f / 256)), 1.0f);
  // 1 + 3*2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6.
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(1.0f + 3.0f / 256)), 1.0f + 1.0f / 64);
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(FloatToBFloat16(std::nanf("")))));
  EXPECT_TRUE(std::isinf(BFloat16ToFloat(FloatToBFloat16(std::numeric_limits<float>::infinity()))));
  EXPECT_EQ(FloatToBFloat16(3.0f), 0x4040);
}

}  // namespace
}  // namespace keel

#include "keel/common/tensor_view.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace keel

// TensorView helpers: dtype tables and layout checks.
#include "keel/common/tensor_view.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace keel {
namespace {
struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::kFloat32, "float32", 4}, {DType::kFloat64, "float64", 8},
    {DType::kFloat16, "float16", 2}, {DType::kBFloat16, "bfloat16", 2},
    {DType::kInt8, "int8", 1},       {DType::kInt16, "int16", 2},
    {DType::kInt32, "int32", 4},     {DType::kInt64, "int64", 8},
    {DType::kUInt8, "uint8", 1},     {DType::kBool, "bool", 1},
};
}  // namespace

size_t DTypeSize(DType dtype) { return kDTypes[static_cast<int>(dtype)].size; }
std::string_view DTypeName(DType dtype) { return kDTypes[static_cast<int>(dtype)].name; }

StatusOr<DType> ParseDType(std::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.name == name) return info.dtype;
  }
  return InvalidArgumentError("unknown dtype '" + std::string(name) +
                              "' (expected float32, float64, float16, bfloat16, int8, int16, "
                              "int32, int64, uint8 or bool)");
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

bool TensorView::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

TensorView TensorView::Contiguous(void* data, DType dtype, std::vector<int64_t> shape) {
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.strides = ContiguousStrides(shape);
  v.shape = std::move(shape);
  return v;
}

std::vector<int64_t> TensorView::ContiguousStrides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

std::string TensorView::DebugString() const {
  return fmt::format("{}[{}] {}", DTypeName(dtype), fmt::join(shape, ", "),
                     device == DeviceType::kCpu ? "cpu" : fmt::format("cuda:{}", device_index));
}

}  // namespace keel

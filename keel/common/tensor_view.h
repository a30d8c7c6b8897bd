// TensorView: a non-owning view of an n-dimensional array (data pointer, dtype, shape,
// strides), the one currency for tensors crossing from PyTorch (via DLPack, see
// docs/python-tensors.md) or any other owner into keel's C++ code.
//
// A view never owns or frees memory; whoever made it keeps the memory alive while it is used.
// Strides are in elements, as in PyTorch. Thread-safety: a plain value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "keel/common/status.h"

namespace keel {

enum class DType : uint8_t {
  kFloat32,
  kFloat64,
  kFloat16,
  kBFloat16,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kUInt8,
  kBool,
};

// Bytes per element.
size_t DTypeSize(DType dtype);
// PyTorch's spelling: "float32", "bfloat16", "int64", "bool", ...
std::string_view DTypeName(DType dtype);
StatusOr<DType> ParseDType(std::string_view name);

enum class DeviceType : uint8_t { kCpu, kCuda };

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  DeviceType device = DeviceType::kCpu;
  int device_index = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements, one per dimension

  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype); }
  // Row-major with no gaps (dimensions of size 1 may have any stride).
  bool is_contiguous() const;
  // Contiguous row-major strides for `shape`.
  static std::vector<int64_t> ContiguousStrides(const std::vector<int64_t>& shape);
  // A contiguous CPU view of `data`.
  static TensorView Contiguous(void* data, DType dtype, std::vector<int64_t> shape);
  // e.g. "bfloat16[2, 3] cpu"
  std::string DebugString() const;
};

}  // namespace keel

// keel._C tensor functions that prove the zero-copy convention: they report what C++ sees
// of a torch tensor, read it in place (any strides), write it in place, and hand C++-owned
// memory to torch.
#include "tensor_functions.h"

#include <pybind11/stl.h>

#include <cstring>

#include "dlpack_tensor.h"
#include "keel/common/bfloat16.h"
#include "keel/common/float16.h"
#include "status_exception.h"

namespace keel::python {
namespace py = pybind11;
namespace {

// Reads element `offset` (in elements) of a CPU tensor as double.
double Load(const TensorView& v, int64_t offset) {
  const char* p = static_cast<const char*>(v.data) + offset * int64_t(DTypeSize(v.dtype));
  switch (v.dtype) {
    case DType::kFloat32: {
      float x;
      std::memcpy(&x, p, 4);
      return x;
    }
    case DType::kFloat64: {
      double x;
      std::memcpy(&x, p, 8);
      return x;
    }
    case DType::kFloat16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return Float16ToFloat(h);
    }
    case DType::kBFloat16: {
      uint16_t b;
      std::memcpy(&b, p, 2);
      return BFloat16ToFloat(b);
    }
    case DType::kInt8:
      return *reinterpret_cast<const int8_t*>(p);
    case DType::kInt16: {
      int16_t x;
      std::memcpy(&x, p, 2);
      return x;
    }
    case DType::kInt32: {
      int32_t x;
      std::memcpy(&x, p, 4);
      return x;
    }
    case DType::kInt64: {
      int64_t x;
      std::memcpy(&x, p, 8);
      return static_cast<double>(x);
    }
    case DType::kUInt8:
      return *reinterpret_cast<const uint8_t*>(p);
    case DType::kBool:
      return *reinterpret_cast<const uint8_t*>(p) != 0;
  }
  return 0;
}

void Store(const TensorView& v, int64_t index, double value) {
  char* p = static_cast<char*>(v.data) + index * int64_t(DTypeSize(v.dtype));
  switch (v.dtype) {
    case DType::kFloat32: {
      float x = float(value);
      std::memcpy(p, &x, 4);
      break;
    }
    case DType::kFloat64:
      std::memcpy(p, &value, 8);
      break;
    case DType::kFloat16: {
      uint16_t h = FloatToFloat16(float(value));
      std::memcpy(p, &h, 2);
      break;
    }
    case DType::kBFloat16: {
      uint16_t b = FloatToBFloat16(float(value));
      std::memcpy(p, &b, 2);
      break;
    }
    case DType::kInt8:
      *reinterpret_cast<int8_t*>(p) = int8_t(value);
      break;
    case DType::kInt16: {
      int16_t x = int16_t(value);
      std::memcpy(p, &x, 2);
      break;
    }
    case DType::kInt32: {
      int32_t x = int32_t(value);
      std::memcpy(p, &x, 4);
      break;
    }
    case DType::kInt64: {
      int64_t x = int64_t(value);
      std::memcpy(p, &x, 8);
      break;
    }
    case DType::kUInt8:
      *reinterpret_cast<uint8_t*>(p) = uint8_t(value);
      break;
    case DType::kBool:
      *reinterpret_cast<uint8_t*>(p) = value != 0;
      break;
  }
}

Status RequireCpu(const TensorView& v, const char* fn) {
  if (v.device != DeviceType::kCpu) {
    return InvalidArgumentError(std::string(fn) + ": expected a CPU tensor, got " +
                                v.DebugString());
  }
  return OkStatus();
}

py::dict TensorInfo(py::handle obj) {
  BorrowedTensor t = ValueOrThrow(BorrowedTensor::From(obj));
  const TensorView& v = t.view();
  py::dict d;
  d["dtype"] = std::string(DTypeName(v.dtype));
  d["shape"] = v.shape;
  d["strides"] = v.strides;
  d["data_ptr"] = reinterpret_cast<uintptr_t>(v.data);
  d["device"] =
      v.device == DeviceType::kCpu ? std::string("cpu") : "cuda:" + std::to_string(v.device_index);
  d["contiguous"] = v.is_contiguous();
  return d;
}

double TensorSum(py::handle obj) {
  BorrowedTensor t = ValueOrThrow(BorrowedTensor::From(obj));
  const TensorView& v = t.view();
  ThrowIfError(RequireCpu(v, "tensor_sum"));
  // Walk every index with the tensor's own strides: non-contiguous views are read in place.
  double sum = 0;
  const int64_t n = v.numel();
  std::vector<int64_t> index(v.shape.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t offset = 0;
    for (size_t d = 0; d < index.size(); ++d) offset += index[d] * v.strides[d];
    sum += Load(v, offset);
    for (size_t d = index.size(); d-- > 0;) {
      if (++index[d] < v.shape[d]) break;
      index[d] = 0;
    }
  }
  return sum;
}

void Fill(py::handle obj, double value) {
  BorrowedTensor t = ValueOrThrow(BorrowedTensor::From(obj));
  const TensorView& v = t.view();
  ThrowIfError(RequireCpu(v, "fill_"));
  if (!v.is_contiguous()) {
    ThrowIfError(InvalidArgumentError("fill_: tensor must be contiguous, got strides for " +
                                      v.DebugString()));
  }
  for (int64_t i = 0; i < v.numel(); ++i) Store(v, i, value);
}

py::capsule Arange(int64_t n, const std::string& dtype_name) {
  if (n < 0) ThrowIfError(InvalidArgumentError("arange: n must be >= 0, got " + std::to_string(n)));
  DType dtype = ValueOrThrow(ParseDType(dtype_name));
  TensorView view;
  py::capsule capsule = NewTensorCapsule(dtype, {n}, &view);
  for (int64_t i = 0; i < n; ++i) Store(view, i, static_cast<double>(i));
  return capsule;
}

}  // namespace

void BindTensorFunctions(py::module_& m) {
  m.def("tensor_info", &TensorInfo, py::arg("tensor"),
        "What C++ sees of a tensor, borrowed through DLPack without a copy: dtype, shape, "
        "strides (in elements), data_ptr, device, contiguous.");
  m.def("tensor_sum", &TensorSum, py::arg("tensor"),
        "Sum of all elements as a float, read in place with the tensor's strides.");
  m.def("fill_", &Fill, py::arg("tensor"), py::arg("value"),
        "Writes `value` into every element of a contiguous CPU tensor, in place.");
  m.def("arange", &Arange, py::arg("n"), py::arg("dtype"),
        "0..n-1 in a new C++-owned buffer, returned as a DLPack capsule for torch.from_dlpack.");
}

}  // namespace keel::python

// DLPack import (borrowing) and export (C++-owned buffers) for keel._C.
#include "dlpack_tensor.h"

#include <dlpack/dlpack.h>

#include <cstdlib>
#include <cstring>
#include <memory>

namespace keel::python {
namespace py = pybind11;
namespace {

constexpr const char* kCapsuleName = "dltensor";
constexpr const char* kUsedCapsuleName = "used_dltensor";

StatusOr<DType> FromDLDataType(DLDataType t) {
  if (t.lanes != 1) return InvalidArgumentError("vector dtypes (lanes > 1) are not supported");
  switch (t.code) {
    case kDLFloat:
      if (t.bits == 32) return DType::kFloat32;
      if (t.bits == 64) return DType::kFloat64;
      if (t.bits == 16) return DType::kFloat16;
      break;
    case kDLBfloat:
      if (t.bits == 16) return DType::kBFloat16;
      break;
    case kDLInt:
      if (t.bits == 8) return DType::kInt8;
      if (t.bits == 16) return DType::kInt16;
      if (t.bits == 32) return DType::kInt32;
      if (t.bits == 64) return DType::kInt64;
      break;
    case kDLUInt:
      if (t.bits == 8) return DType::kUInt8;
      break;
    case 6:  // kDLBool, added in DLPack 0.8 (Debian ships 0.6 headers)
      if (t.bits == 8) return DType::kBool;
      break;
    default:
      break;
  }
  return InvalidArgumentError("unsupported DLPack dtype (code " + std::to_string(t.code) + ", " +
                              std::to_string(t.bits) + " bits)");
}

DLDataType ToDLDataType(DType d) {
  DLDataType t{kDLFloat, static_cast<uint8_t>(DTypeSize(d) * 8), 1};
  switch (d) {
    case DType::kFloat32:
    case DType::kFloat64:
    case DType::kFloat16:
      t.code = kDLFloat;
      break;
    case DType::kBFloat16:
      t.code = kDLBfloat;
      break;
    case DType::kInt8:
    case DType::kInt16:
    case DType::kInt32:
    case DType::kInt64:
      t.code = kDLInt;
      break;
    case DType::kUInt8:
      t.code = kDLUInt;
      break;
    case DType::kBool:
      t.code = 6;
      break;  // kDLBool
  }
  return t;
}

// Owns everything an exported DLManagedTensor points to.
struct ExportedTensor {
  DLManagedTensor managed{};
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;
  void* data = nullptr;               // freed with the tensor, unless `owner` is set
  std::shared_ptr<const void> owner;  // keeps borrowed memory alive instead
  ~ExportedTensor() {
    if (!owner) std::free(data);
  }
};

void DeleteExported(DLManagedTensor* managed) {
  delete static_cast<ExportedTensor*>(managed->manager_ctx);
}

// Capsule destructor: frees the tensor only if no consumer took it (renamed it "used_dltensor").
void CapsuleDestructor(PyObject* capsule) {
  if (!PyCapsule_IsValid(capsule, kCapsuleName)) return;  // consumed: the consumer owns it
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, kCapsuleName));
  if (managed != nullptr && managed->deleter != nullptr) managed->deleter(managed);
}

}  // namespace

StatusOr<BorrowedTensor> BorrowedTensor::From(py::handle obj) {
  BorrowedTensor out;
  if (PyCapsule_CheckExact(obj.ptr())) {
    out.capsule_ = py::reinterpret_borrow<py::object>(obj);
  } else if (py::hasattr(obj, "__dlpack__")) {
    try {
      out.capsule_ = obj.attr("__dlpack__")();
    } catch (py::error_already_set& e) {
      return InvalidArgumentError(std::string("cannot export the tensor through DLPack: ") +
                                  e.what());
    }
  } else {
    return InvalidArgumentError(
        "expected a tensor (an object with __dlpack__) or a DLPack capsule, got " +
        std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  }
  if (PyCapsule_IsValid(out.capsule_.ptr(), kUsedCapsuleName)) {
    return InvalidArgumentError("this DLPack capsule was already consumed");
  }
  if (!PyCapsule_IsValid(out.capsule_.ptr(), kCapsuleName)) {
    return InvalidArgumentError("__dlpack__ did not return a 'dltensor' capsule");
  }
  auto* managed =
      static_cast<DLManagedTensor*>(PyCapsule_GetPointer(out.capsule_.ptr(), kCapsuleName));
  const DLTensor& t = managed->dl_tensor;
  TensorView& v = out.view_;
  KEEL_ASSIGN_OR_RETURN(v.dtype, FromDLDataType(t.dtype));
  if (t.device.device_type == kDLCPU) {
    v.device = DeviceType::kCpu;
  } else if (t.device.device_type == kDLCUDA) {
    v.device = DeviceType::kCuda;
  } else {
    return InvalidArgumentError("unsupported DLPack device type " +
                                std::to_string(t.device.device_type) + " (expected CPU or CUDA)");
  }
  v.device_index = t.device.device_id;
  v.data = static_cast<char*>(t.data) + t.byte_offset;
  v.shape.assign(t.shape, t.shape + t.ndim);
  v.strides = t.strides != nullptr ? std::vector<int64_t>(t.strides, t.strides + t.ndim)
                                   : TensorView::ContiguousStrides(v.shape);
  return out;
}

py::capsule NewTensorCapsule(DType dtype, const std::vector<int64_t>& shape, TensorView* view,
                             bool zero) {
  auto owned = std::make_unique<ExportedTensor>();
  owned->shape = shape;
  owned->strides = TensorView::ContiguousStrides(shape);
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  size_t bytes = static_cast<size_t>(numel) * DTypeSize(dtype);
  // 64-byte alignment suits every SIMD width keel uses; never a null pointer, even when empty.
  size_t rounded = (bytes + 63) / 64 * 64;
  owned->data = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (owned->data == nullptr) throw std::bad_alloc();
  if (zero) std::memset(owned->data, 0, rounded == 0 ? 64 : rounded);

  DLTensor& t = owned->managed.dl_tensor;
  t.data = owned->data;
  t.device = {kDLCPU, 0};
  t.ndim = static_cast<int>(shape.size());
  t.dtype = ToDLDataType(dtype);
  t.shape = owned->shape.data();
  t.strides = owned->strides.data();
  t.byte_offset = 0;
  owned->managed.manager_ctx = owned.get();
  owned->managed.deleter = &DeleteExported;

  view->data = owned->data;
  view->dtype = dtype;
  view->device = DeviceType::kCpu;
  view->shape = owned->shape;
  view->strides = owned->strides;
  DLManagedTensor* managed = &owned.release()->managed;
  return py::capsule(managed, kCapsuleName, &CapsuleDestructor);
}

py::capsule SharedTensorCapsule(const TensorView& view, std::shared_ptr<const void> owner) {
  auto owned = std::make_unique<ExportedTensor>();
  owned->shape = view.shape;
  owned->strides = TensorView::ContiguousStrides(view.shape);
  owned->data = view.data;
  owned->owner = std::move(owner);
  DLTensor& t = owned->managed.dl_tensor;
  t.data = owned->data;
  t.device = {kDLCPU, 0};
  t.ndim = static_cast<int>(view.shape.size());
  t.dtype = ToDLDataType(view.dtype);
  t.shape = owned->shape.data();
  t.strides = owned->strides.data();
  t.byte_offset = 0;
  owned->managed.manager_ctx = owned.get();
  owned->managed.deleter = &DeleteExported;
  DLManagedTensor* managed = &owned.release()->managed;
  return py::capsule(managed, kCapsuleName, &CapsuleDestructor);
}

}  // namespace keel::python

// DLPack <-> keel::TensorView, the one convention for tensors crossing into and out of keel._C
// (docs/python-tensors.md).
//
// In: any object with __dlpack__ (torch, numpy >= 1.22, ...) or a "dltensor" capsule. The
// capsule is borrowed, not consumed: the BorrowedTensor keeps it alive, and the producer's
// memory with it, for as long as the view is used. No copy is made.
// Out: a C++-owned buffer wrapped in a "dltensor" capsule; torch.from_dlpack(capsule) takes
// ownership without a copy, and the buffer is freed when the last torch tensor using it goes.
// Thread-safety: call with the GIL held.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <vector>

#include "keel/common/status.h"
#include "keel/common/tensor_view.h"

namespace keel::python {

class BorrowedTensor {
 public:
  // Views `obj` without copying. INVALID_ARGUMENT (with what was wrong) for anything that is
  // not a DLPack tensor, or whose dtype keel does not handle.
  static StatusOr<BorrowedTensor> From(pybind11::handle obj);
  const TensorView& view() const { return view_; }

 private:
  pybind11::object capsule_;  // keeps the producer's memory alive
  TensorView view_;
};

// A new contiguous CPU tensor owned by C++ (zero-filled unless `zero` is false, for callers
// that overwrite every byte), returned as a DLPack capsule along with a view to fill it.
pybind11::capsule NewTensorCapsule(DType dtype, const std::vector<int64_t>& shape, TensorView* view,
                                   bool zero = true);

// A contiguous CPU `view` of memory kept alive by `owner` (e.g. a file mapping), as a DLPack
// capsule: no copy; `owner` is released when the last tensor using the memory goes.
pybind11::capsule SharedTensorCapsule(const TensorView& view, std::shared_ptr<const void> owner);

}  // namespace keel::python

// keel._C bindings over keel/ckpt/safetensors: tensors go in through DLPack without a copy and
// come back as C++-owned DLPack capsules (one copy out of the file mapping).
#include "ckpt_functions.h"

#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>

#include "dlpack_tensor.h"
#include "keel/ckpt/commit.h"
#include "keel/ckpt/safetensors.h"
#include "status_exception.h"

namespace keel::python {
namespace py = pybind11;
namespace {

// entries: [(name, tensor, dtype_name)]; dtype_name overrides the DLPack dtype of the same
// width (torch 1.13 cannot export bool, so bool tensors arrive as uint8 views named "bool").
void WriteFile(const std::string& path, const py::list& entries,
               const std::map<std::string, std::string>& metadata, bool checksum, bool durable,
               int threads) {
  std::vector<BorrowedTensor> borrowed;
  std::vector<ckpt::NamedTensor> tensors;
  borrowed.reserve(entries.size());
  for (const py::handle& item : entries) {
    auto tuple = item.cast<py::tuple>();
    if (tuple.size() != 3) ThrowIfError(InvalidArgumentError("entries are (name, tensor, dtype)"));
    borrowed.push_back(ValueOrThrow(BorrowedTensor::From(tuple[1])));
    TensorView view = borrowed.back().view();
    DType dtype = ValueOrThrow(ParseDType(tuple[2].cast<std::string>()));
    if (DTypeSize(dtype) != DTypeSize(view.dtype)) {
      ThrowIfError(InvalidArgumentError("dtype '" + tuple[2].cast<std::string>() +
                                        "' does not match the tensor's " +
                                        std::string(DTypeName(view.dtype))));
    }
    view.dtype = dtype;
    tensors.push_back({tuple[0].cast<std::string>(), view});
  }
  Status s;
  {
    py::gil_scoped_release release;  // the copy to disk does not need Python
    s = ckpt::WriteSafetensors(
        path, tensors, metadata,
        {.checksum = checksum, .durable = durable, .threads = std::clamp(threads, 1, 64)});
  }
  ThrowIfError(s);
}

// Returns ([(name, dtype_name, capsule)], metadata). `verify` checks keel's CRC-32 first.
py::tuple ReadFile(const std::string& path, bool verify) {
  auto file = ValueOrThrow(ckpt::SafetensorsFile::Open(path));
  if (verify) ThrowIfError(file->VerifyChecksum());
  py::list out;
  for (const std::string& name : file->names()) {
    TensorView src = ValueOrThrow(file->Get(name));
    // bool leaves as uint8 (torch 1.13 cannot import bool through DLPack); the name says bool.
    const DType export_dtype = src.dtype == DType::kBool ? DType::kUInt8 : src.dtype;
    TensorView dst;
    py::capsule capsule = NewTensorCapsule(export_dtype, src.shape, &dst, /*zero=*/false);
    std::memcpy(dst.data, src.data, src.nbytes());
    out.append(py::make_tuple(name, std::string(DTypeName(src.dtype)), capsule));
  }
  return py::make_tuple(out, file->metadata());
}

}  // namespace

void BindCkptFunctions(py::module_& m) {
  m.def(
      "commit_checkpoint_step",
      [](const std::string& dir, int64_t step, int world_size, int keep_last) {
        ThrowIfError(ckpt::CommitStep(dir, step, world_size, keep_last));
      },
      py::arg("dir"), py::arg("step"), py::arg("world_size"), py::arg("keep_last"),
      "Commits a step (COMMITTED, latest, retention) exactly as the agent does.");
  m.def("write_safetensors", &WriteFile, py::arg("path"), py::arg("entries"), py::arg("metadata"),
        py::arg("checksum") = true, py::arg("durable") = true, py::arg("threads") = 1,
        "Writes [(name, tensor, dtype_name)] and string metadata to `path` atomically "
        "(contiguous CPU tensors); `checksum` records the CRC-32, `durable` fsyncs, `threads` "
        "copy in parallel.");
  m.def("read_safetensors", &ReadFile, py::arg("path"), py::arg("verify") = true,
        "Reads a safetensors file: ([(name, dtype_name, dlpack_capsule)], metadata). "
        "Raises ValueError for malformed files and RuntimeError (DATA_LOSS) for corrupt ones.");
}

}  // namespace keel::python

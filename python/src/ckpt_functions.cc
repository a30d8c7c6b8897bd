// keel._C bindings over keel/ckpt: safetensors files and the Checkpointer. Tensors go in
// through DLPack without a copy; they come back as DLPack capsules, copied out of files on
// disk, or pointing into a memory slot's copy-on-write mapping (restore from memory).
#include "ckpt_functions.h"

#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>

#include "dlpack_tensor.h"
#include "keel/ckpt/checkpointer.h"
#include "keel/ckpt/commit.h"
#include "keel/ckpt/safetensors.h"
#include "status_exception.h"

namespace keel::python {
namespace py = pybind11;
namespace {

// entries: [(name, tensor, dtype_name)]; dtype_name overrides the DLPack dtype of the same
// width (torch 1.13 cannot export bool, so bool tensors arrive as uint8 views named "bool").
// `borrowed` keeps the producers' memory alive while the views are used.
std::vector<ckpt::NamedTensor> Entries(const py::list& entries,
                                       std::vector<BorrowedTensor>* borrowed) {
  std::vector<ckpt::NamedTensor> tensors;
  borrowed->reserve(entries.size());
  tensors.reserve(entries.size());
  for (const py::handle& item : entries) {
    auto tuple = item.cast<py::tuple>();
    if (tuple.size() != 3) ThrowIfError(InvalidArgumentError("entries are (name, tensor, dtype)"));
    borrowed->push_back(ValueOrThrow(BorrowedTensor::From(tuple[1])));
    TensorView view = borrowed->back().view();
    DType dtype = ValueOrThrow(ParseDType(tuple[2].cast<std::string>()));
    if (DTypeSize(dtype) != DTypeSize(view.dtype)) {
      ThrowIfError(InvalidArgumentError("dtype '" + tuple[2].cast<std::string>() +
                                        "' does not match the tensor's " +
                                        std::string(DTypeName(view.dtype))));
    }
    view.dtype = dtype;
    tensors.push_back({tuple[0].cast<std::string>(), view});
  }
  return tensors;
}

void WriteFile(const std::string& path, const py::list& entries,
               const std::map<std::string, std::string>& metadata, bool checksum, bool durable,
               int threads) {
  std::vector<BorrowedTensor> borrowed;
  std::vector<ckpt::NamedTensor> tensors = Entries(entries, &borrowed);
  Status s;
  {
    py::gil_scoped_release release;  // the copy to disk does not need Python
    s = ckpt::WriteSafetensors(
        path, tensors, metadata,
        {.checksum = checksum, .durable = durable, .threads = std::clamp(threads, 1, 64)});
  }
  ThrowIfError(s);
}

// [(name, dtype_name, capsule)] pointing into `file` (kept alive by the capsules): no copy.
py::list SharedEntries(const std::shared_ptr<const ckpt::SafetensorsFile>& file) {
  py::list out;
  for (const std::string& name : file->names()) {
    TensorView v = ValueOrThrow(file->Get(name));
    const std::string dtype_name(DTypeName(v.dtype));
    if (v.dtype == DType::kBool) v.dtype = DType::kUInt8;  // torch 1.13 cannot import bool
    out.append(py::make_tuple(name, dtype_name, SharedTensorCapsule(v, file)));
  }
  return out;
}

// Returns ([(name, dtype_name, capsule)], metadata). `verify` checks keel's CRC-32 first.
py::tuple ReadFile(const ckpt::SafetensorsFile& file) {
  py::list out;
  for (const std::string& name : file.names()) {
    TensorView src = ValueOrThrow(file.Get(name));
    // bool leaves as uint8 (torch 1.13 cannot import bool through DLPack); the name says bool.
    const DType export_dtype = src.dtype == DType::kBool ? DType::kUInt8 : src.dtype;
    TensorView dst;
    py::capsule capsule = NewTensorCapsule(export_dtype, src.shape, &dst, /*zero=*/false);
    std::memcpy(dst.data, src.data, src.nbytes());
    out.append(py::make_tuple(name, std::string(DTypeName(src.dtype)), capsule));
  }
  return py::make_tuple(out, file.metadata());
}

py::tuple ReadPath(const std::string& path, bool verify) {
  auto file = ValueOrThrow(ckpt::SafetensorsFile::Open(path));
  if (verify) ThrowIfError(file->VerifyChecksum());
  return ReadFile(*file);
}

}  // namespace

static void BindCheckpointer(py::module_& m) {
  py::class_<ckpt::Checkpointer>(m, "Checkpointer",
                                 "keel::ckpt::Checkpointer (keel/ckpt/checkpointer.h); "
                                 "keel.ckpt.Checkpointer adds nested state on top.")
      .def(py::init([](const std::string& dir, int keep_last, int copy_threads) {
             return ValueOrThrow(ckpt::Checkpointer::Create(
                 {.dir = dir, .keep_last = keep_last, .copy_threads = copy_threads}));
           }),
           py::arg("dir"), py::arg("keep_last") = -1, py::arg("copy_threads") = 0)
      .def(
          "save",
          [](ckpt::Checkpointer& c, int64_t step, const py::list& entries,
             const std::map<std::string, std::string>& metadata, bool persist) {
            std::vector<BorrowedTensor> borrowed;
            std::vector<ckpt::NamedTensor> tensors = Entries(entries, &borrowed);
            StatusOr<std::string> where = [&] {
              py::gil_scoped_release release;
              return c.Save(step, tensors, metadata, persist);
            }();
            return ValueOrThrow(std::move(where));
          },
          py::arg("step"), py::arg("entries"), py::arg("metadata"), py::arg("persist") = true,
          "Saves [(name, tensor, dtype_name)]; returns 'memory', 'disk' or 'skipped'.")
      .def(
          "begin_save",
          [](ckpt::Checkpointer& c, int64_t step, const py::list& layout,
             const std::map<std::string, std::string>& metadata, bool pin_for_cuda) {
            std::vector<ckpt::NamedTensor> entries;
            entries.reserve(layout.size());
            for (const py::handle& item : layout) {
              auto t = item.cast<py::tuple>();
              if (t.size() != 3) {
                ThrowIfError(InvalidArgumentError("layout entries are (name, dtype, shape)"));
              }
              auto shape = t[2].cast<std::vector<int64_t>>();
              for (int64_t d : shape) {
                if (d < 0) ThrowIfError(InvalidArgumentError("negative dimension in the layout"));
              }
              entries.push_back({t[0].cast<std::string>(),
                                 TensorView::Contiguous(
                                     nullptr, ValueOrThrow(ParseDType(t[1].cast<std::string>())),
                                     std::move(shape))});
            }
            StatusOr<std::vector<TensorView>> begun = [&] {
              py::gil_scoped_release release;  // waits for the agent
              return c.BeginSave(step, entries, metadata, pin_for_cuda);
            }();
            std::vector<TensorView> dst = ValueOrThrow(std::move(begun));
            py::list out;
            for (TensorView& v : dst) {
              if (v.dtype == DType::kBool) v.dtype = DType::kUInt8;
              // Borrowed: valid until finish_save (the slot stays mapped by the writer).
              out.append(
                  SharedTensorCapsule(v, std::shared_ptr<const void>(v.data, [](const void*) {})));
            }
            return out;
          },
          py::arg("step"), py::arg("layout"), py::arg("metadata"), py::arg("pin_for_cuda") = false,
          "Memory tier only: [(name, dtype_name, shape)] -> destination tensors (capsules) in "
          "the memory slot, to fill (e.g. from CUDA) before finish_save.")
      .def(
          "finish_save",
          [](ckpt::Checkpointer& c, bool persist) {
            Status s = [&] {
              py::gil_scoped_release release;  // waits for the agent
              return c.FinishSave(persist);
            }();
            ThrowIfError(s);
          },
          py::arg("persist") = true)
      .def(
          "load_from_memory",
          [](ckpt::Checkpointer& c) -> py::object {
            StatusOr<std::optional<ckpt::Checkpoint>> loaded = [&] {
              py::gil_scoped_release release;  // waits for the agent (and the master)
              return c.LoadFromMemory();
            }();
            std::optional<ckpt::Checkpoint> got = ValueOrThrow(std::move(loaded));
            if (!got) return py::none();
            return py::make_tuple(got->step, SharedEntries(got->file), got->file->metadata());
          },
          "(step, [(name, dtype_name, capsule)], metadata) of the step the master chose, "
          "pointing into the memory slot (copy-on-write); None if there is none.")
      .def(
          "load_from_disk",
          [](ckpt::Checkpointer& c, int64_t step) {
            StatusOr<ckpt::Checkpoint> loaded = [&] {
              py::gil_scoped_release release;  // reads and checksums the file
              return c.LoadFromDisk(step);
            }();
            ckpt::Checkpoint got = ValueOrThrow(std::move(loaded));
            return ReadFile(*got.file);
          },
          py::arg("step"), "([(name, dtype_name, capsule)], metadata), checksum verified.")
      .def("committed_steps", &ckpt::Checkpointer::CommittedSteps)
      .def_property_readonly("in_agent_memory", &ckpt::Checkpointer::in_agent_memory)
      .def_property_readonly("under_agent", &ckpt::Checkpointer::under_agent)
      .def_property_readonly("keep_last", &ckpt::Checkpointer::keep_last)
      .def_property_readonly("rank", &ckpt::Checkpointer::rank)
      .def_property_readonly("world_size", &ckpt::Checkpointer::world_size)
      .def_property_readonly("dir", &ckpt::Checkpointer::dir);
}

void BindCkptFunctions(py::module_& m) {
  BindCheckpointer(m);
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
  m.def("read_safetensors", &ReadPath, py::arg("path"), py::arg("verify") = true,
        "Reads a safetensors file: ([(name, dtype_name, dlpack_capsule)], metadata). "
        "Raises ValueError for malformed files and RuntimeError (DATA_LOSS) for corrupt ones.");
}

}  // namespace keel::python

// keel._C.optim_step: runs one keel::optim step over CPU tensors borrowed through DLPack
// (no copies; parameters and state are updated in place), with the GIL released.
//
//   optim_step(kind, options, entries, threads=1) -> None  (threads: the caller + threads-1)
//     kind     "adamw" | "agd" | "adagrad" | "group_adam" | "group_ftrl"
//     options  {name: float | bool} — the fields of keel::optim::<Kind>Options
//     entries  [(param, grad, [slot or None, ...], step, rows or None, row_flags or None)]
//   rows (int64, unique) selects a sparse-row update: grad is then [len(rows), row size];
//   the group optimizers always update rows (rows None: every row).
// Errors (ValueError): unknown kind or option, non-CPU or non-contiguous tensors, wrong
// dtypes or sizes, and everything keel::optim rejects.
#include "optim_functions.h"

#include <fmt/format.h>
#include <pybind11/stl.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dlpack_tensor.h"
#include "keel/common/mutex.h"
#include "keel/common/thread_pool.h"
#include "keel/optim/optimizers.h"
#include "status_exception.h"

namespace keel::python {
namespace py = pybind11;
namespace {

using Options = std::map<std::string, py::object>;

// One pool per thread count asked for (the caller counts as one thread): keel follows torch's
// thread setting, so N ranks on a node sharing its cores (OMP_NUM_THREADS) do not each start a
// pool of every core. Pools live as long as the process.
ThreadPool* Pool(int threads) {
  static Mutex mu;
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  if (threads <= 1) return nullptr;
  MutexLock lock(&mu);
  auto& pool = pools[threads];
  if (!pool) pool = std::make_unique<ThreadPool>(threads - 1, "keel-optim");
  return pool.get();
}

// Reads `options` into the fields named in `floats`/`bools`; anything else is an error.
void ReadOptions(const char* kind, const Options& options,
                 const std::map<std::string, float*>& floats,
                 const std::map<std::string, bool*>& bools) {
  for (const auto& [name, value] : options) {
    if (auto f = floats.find(name); f != floats.end()) {
      if (!py::isinstance<py::float_>(value) && !py::isinstance<py::int_>(value)) {
        throw py::value_error(fmt::format("{}: option {} must be a number", kind, name));
      }
      *f->second = value.cast<float>();
    } else if (auto b = bools.find(name); b != bools.end()) {
      *b->second = value.cast<bool>();
    } else {
      throw py::value_error(fmt::format("{}: unknown option '{}'", kind, name));
    }
  }
}

struct Entry {
  BorrowedTensor param, grad;
  std::vector<std::optional<BorrowedTensor>> slots;
  int64_t step = 1;
  std::optional<BorrowedTensor> rows, row_flags;
};

void CheckCpuContiguous(const TensorView& v, const std::string& what) {
  if (v.device != DeviceType::kCpu) {
    throw py::value_error(what + " is not a CPU tensor (use impl='torch' for other devices)");
  }
  if (!v.is_contiguous()) throw py::value_error(what + " is not contiguous");
}

Entry Borrow(const py::tuple& t) {
  if (t.size() != 6) {
    throw py::value_error("optim_step: an entry is (param, grad, slots, step, rows, row_flags)");
  }
  Entry e{ValueOrThrow(BorrowedTensor::From(t[0])), ValueOrThrow(BorrowedTensor::From(t[1]))};
  CheckCpuContiguous(e.param.view(), "parameter");
  CheckCpuContiguous(e.grad.view(), "gradient");
  for (py::handle s : t[2].cast<py::list>()) {
    if (s.is_none()) {
      e.slots.emplace_back();
      continue;
    }
    e.slots.emplace_back(ValueOrThrow(BorrowedTensor::From(s)));
    const TensorView& v = e.slots.back()->view();
    CheckCpuContiguous(v, "optimizer state");
    if (v.dtype != DType::kFloat32 || v.numel() != e.param.view().numel()) {
      throw py::value_error(fmt::format("optimizer state must be float32 with {} elements, got {}",
                                        e.param.view().numel(), v.DebugString()));
    }
  }
  if (e.slots.size() > 4) throw py::value_error("optim_step: at most 4 state slots");
  e.step = t[3].cast<int64_t>();
  if (!t[4].is_none()) {
    e.rows = ValueOrThrow(BorrowedTensor::From(t[4]));
    CheckCpuContiguous(e.rows->view(), "rows");
    if (e.rows->view().dtype != DType::kInt64) throw py::value_error("rows must be int64");
  }
  if (!t[5].is_none()) {
    e.row_flags = ValueOrThrow(BorrowedTensor::From(t[5]));
    CheckCpuContiguous(e.row_flags->view(), "row_flags");
    if (e.row_flags->view().dtype != DType::kUInt8) {
      throw py::value_error("row_flags must be uint8");
    }
  }
  return e;
}

std::array<float*, 4> Slots(const Entry& e) {
  std::array<float*, 4> out{};
  for (size_t i = 0; i < e.slots.size(); ++i) {
    if (e.slots[i]) out[i] = static_cast<float*>(e.slots[i]->view().data);
  }
  return out;
}

optim::DenseTensor Dense(const Entry& e) {
  const TensorView& p = e.param.view();
  const TensorView& g = e.grad.view();
  if (g.numel() != p.numel()) {
    throw py::value_error(
        fmt::format("gradient has {} elements, parameter {}", g.numel(), p.numel()));
  }
  return {.param = p.data,
          .param_dtype = p.dtype,
          .grad = g.data,
          .grad_dtype = g.dtype,
          .slots = Slots(e),
          .n = p.numel(),
          .step = e.step};
}

// A parameter as [rows, row size]: shape[0] rows (a 0-d tensor is one row of one element).
optim::SparseRows Rows(const Entry& e) {
  const TensorView& p = e.param.view();
  const TensorView& g = e.grad.view();
  const int64_t num_rows = p.shape.empty() ? 1 : p.shape[0];
  const int64_t dim = num_rows == 0 ? 0 : p.numel() / num_rows;
  optim::SparseRows r{.param = p.data,
                      .param_dtype = p.dtype,
                      .grad = g.data,
                      .grad_dtype = g.dtype,
                      .slots = Slots(e),
                      .num_rows = num_rows,
                      .dim = dim,
                      .step = e.step};
  int64_t touched = num_rows;
  if (e.rows) {
    r.rows = static_cast<const int64_t*>(e.rows->view().data);
    r.num_touched = touched = e.rows->view().numel();
  }
  if (g.numel() != touched * dim) {
    throw py::value_error(fmt::format("gradient has {} elements; {} rows of {} need {}", g.numel(),
                                      touched, dim, touched * dim));
  }
  if (e.row_flags) {
    if (e.row_flags->view().numel() != num_rows) {
      throw py::value_error(fmt::format("row_flags has {} elements, the parameter {} rows",
                                        e.row_flags->view().numel(), num_rows));
    }
    r.row_flags = static_cast<uint8_t*>(e.row_flags->view().data);
  }
  return r;
}

void Step(const std::string& kind, const Options& options, const py::list& entries, int threads) {
  if (threads < 1 || threads > 1024) {
    throw py::value_error(fmt::format("optim_step: threads {} (must be 1..1024)", threads));
  }
  std::vector<Entry> borrowed;
  borrowed.reserve(entries.size());
  for (py::handle h : entries) borrowed.push_back(Borrow(h.cast<py::tuple>()));
  const bool group = kind == "group_adam" || kind == "group_ftrl";
  std::vector<optim::DenseTensor> dense;
  std::vector<optim::SparseRows> rows;
  for (const Entry& e : borrowed) {
    if (group || e.rows) {
      rows.push_back(Rows(e));
    } else {
      dense.push_back(Dense(e));
    }
  }
  Status status;
  if (kind == "adamw") {
    optim::AdamWOptions o;
    ReadOptions("AdamW", options,
                {{"lr", &o.lr},
                 {"beta1", &o.beta1},
                 {"beta2", &o.beta2},
                 {"eps", &o.eps},
                 {"weight_decay", &o.weight_decay}},
                {{"amsgrad", &o.amsgrad}});
    py::gil_scoped_release release;
    status = optim::AdamWStep(o, dense, Pool(threads));
    if (status.ok()) status = optim::AdamWSparseStep(o, rows, Pool(threads));
  } else if (kind == "agd") {
    optim::AGDOptions o;
    ReadOptions("AGD", options,
                {{"lr", &o.lr},
                 {"beta1", &o.beta1},
                 {"beta2", &o.beta2},
                 {"delta", &o.delta},
                 {"weight_decay", &o.weight_decay},
                 {"clip", &o.clip}},
                {{"weight_decouple", &o.weight_decouple},
                 {"fixed_decay", &o.fixed_decay},
                 {"amsgrad", &o.amsgrad},
                 {"win", &o.win}});
    py::gil_scoped_release release;
    status = optim::AGDStep(o, dense, Pool(threads));
    if (status.ok()) status = optim::AGDSparseStep(o, rows, Pool(threads));
  } else if (kind == "adagrad") {
    optim::AdagradOptions o;
    ReadOptions("Adagrad", options,
                {{"lr", &o.lr},
                 {"lr_decay", &o.lr_decay},
                 {"weight_decay", &o.weight_decay},
                 {"eps", &o.eps}},
                {});
    py::gil_scoped_release release;
    status = optim::AdagradStep(o, dense, Pool(threads));
    if (status.ok()) status = optim::AdagradSparseStep(o, rows, Pool(threads));
  } else if (kind == "group_adam") {
    optim::GroupAdamOptions o;
    ReadOptions("GroupAdam", options,
                {{"lr", &o.lr},
                 {"beta1", &o.beta1},
                 {"beta2", &o.beta2},
                 {"eps", &o.eps},
                 {"l1", &o.l1},
                 {"l2", &o.l2},
                 {"l21", &o.l21}},
                {});
    py::gil_scoped_release release;
    status = optim::GroupAdamStep(o, rows, Pool(threads));
  } else if (kind == "group_ftrl") {
    optim::GroupFtrlOptions o;
    ReadOptions("GroupFTRL", options,
                {{"lr", &o.lr},
                 {"lr_power", &o.lr_power},
                 {"l1", &o.l1},
                 {"l2", &o.l2},
                 {"l21", &o.l21},
                 {"l2_shrinkage", &o.l2_shrinkage}},
                {});
    py::gil_scoped_release release;
    status = optim::GroupFtrlStep(o, rows, Pool(threads));
  } else {
    throw py::value_error(fmt::format(
        "optim_step: unknown kind '{}' (adamw, agd, adagrad, group_adam, group_ftrl)", kind));
  }
  ThrowIfError(status);
}

}  // namespace

void BindOptimFunctions(py::module_& m) {
  m.def("optim_step", &Step, py::arg("kind"), py::arg("options"), py::arg("entries"),
        py::arg("threads") = 1,
        "One optimizer step over CPU tensors, in place (keel.optim uses this).");
  m.def("optim_simd_target", &optim::SimdTarget,
        "The SIMD target keel's optimizer kernels dispatch to on this CPU.");
}

}  // namespace keel::python

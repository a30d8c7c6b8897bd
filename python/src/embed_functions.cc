// keel._C.EmbeddingTable: keel::embed::Table for Python. Ids and gradients are borrowed
// through DLPack (no copies); lookups return a new tensor owned by C++. The GIL is released
// while the table works, so several Python threads can look up and update concurrently.
//
//   EmbeddingTable(dim, dram_budget=0, ssd_path="", optimizer="adagrad", options={},
//                  admit_after=0, ttl=0, init="zeros", seed=0, shards=64)
//     options: lr, beta1, beta2, eps, initial_accumulator_value, lr_power, l1, l2, l21
//   .lookup(ids, train=True) -> float32 [n, dim]      ids: int64 CPU tensor (any shape: n=numel)
//   .apply_gradients(ids, grads)                       grads: float32 [n, dim]
//   .save(dir, incremental=False); .load(dir); .expire(); .stats() -> dict; .dim
// Errors: ValueError naming the argument (bad option, dtype, device, shape).
#include "embed_functions.h"

#include <fmt/format.h>
#include <pybind11/stl.h>

#include <map>
#include <memory>
#include <string>

#include "dlpack_tensor.h"
#include "keel/embed/table.h"
#include "status_exception.h"

namespace keel::python {
namespace py = pybind11;
namespace {

embed::OptimizerKind ParseOptimizer(const std::string& name) {
  static const std::map<std::string, embed::OptimizerKind> kinds = {
      {"sgd", embed::OptimizerKind::kSgd},
      {"adagrad", embed::OptimizerKind::kAdagrad},
      {"adam", embed::OptimizerKind::kAdam},
      {"group_adam", embed::OptimizerKind::kGroupAdam},
      {"group_ftrl", embed::OptimizerKind::kGroupFtrl}};
  auto it = kinds.find(name);
  if (it == kinds.end()) {
    throw py::value_error("optimizer '" + name +
                          "' is not one of sgd, adagrad, adam, group_adam, group_ftrl");
  }
  return it->second;
}

BorrowedTensor Borrow(py::handle obj, const char* what, DType dtype) {
  StatusOr<BorrowedTensor> t = BorrowedTensor::From(obj);
  if (!t.ok()) throw py::value_error(fmt::format("{}: {}", what, t.status().message()));
  const TensorView& v = t->view();
  if (v.device != DeviceType::kCpu || !v.is_contiguous() || v.dtype != dtype) {
    throw py::value_error(fmt::format("{} must be a contiguous CPU {} tensor, got {}", what,
                                      dtype == DType::kInt64 ? "int64" : "float32",
                                      v.DebugString()));
  }
  return *std::move(t);
}

class PyTable {
 public:
  PyTable(int64_t dim, int64_t dram_budget, const std::string& ssd_path,
          const std::string& optimizer, const std::map<std::string, double>& options,
          int64_t admit_after, int64_t ttl, const std::string& init, uint64_t seed, int shards) {
    embed::TableOptions o{.dim = dim,
                          .dram_budget_bytes = dram_budget,
                          .ssd_path = ssd_path,
                          .optimizer = {.kind = ParseOptimizer(optimizer)},
                          .admit_after = admit_after,
                          .ttl_steps = ttl,
                          .init = init,
                          .seed = seed,
                          .shards = shards};
    embed::OptimizerOptions& opt = o.optimizer;
    const std::map<std::string, float*> fields = {
        {"lr", &opt.lr},
        {"beta1", &opt.beta1},
        {"beta2", &opt.beta2},
        {"eps", &opt.eps},
        {"initial_accumulator_value", &opt.initial_accumulator_value},
        {"lr_power", &opt.lr_power},
        {"l1", &opt.l1},
        {"l2", &opt.l2},
        {"l21", &opt.l21}};
    for (const auto& [name, value] : options) {
      auto it = fields.find(name);
      if (it == fields.end()) {
        throw py::value_error("unknown optimizer option '" + name + "'");
      }
      *it->second = static_cast<float>(value);
    }
    table_ = ValueOrThrow(embed::Table::Create(o));
  }

  py::object Lookup(py::handle ids_obj, bool train) {
    BorrowedTensor ids = Borrow(ids_obj, "ids", DType::kInt64);
    const int64_t n = ids.view().numel();
    TensorView out;
    py::capsule capsule = NewTensorCapsule(DType::kFloat32, {n, table_->dim()}, &out, false);
    Status st;
    {
      py::gil_scoped_release release;
      st = table_->Lookup({static_cast<const int64_t*>(ids.view().data), static_cast<size_t>(n)},
                          static_cast<float*>(out.data), train);
    }
    ThrowIfError(st);  // with the GIL held
    return py::module_::import("torch").attr("from_dlpack")(capsule);
  }

  void ApplyGradients(py::handle ids_obj, py::handle grads_obj) {
    BorrowedTensor ids = Borrow(ids_obj, "ids", DType::kInt64);
    BorrowedTensor grads = Borrow(grads_obj, "grads", DType::kFloat32);
    const int64_t n = ids.view().numel();
    if (grads.view().numel() != n * table_->dim()) {
      throw py::value_error(fmt::format("grads: {} ids need {} x {} values, got {}", n, n,
                                        table_->dim(), grads.view().DebugString()));
    }
    Status st;
    {
      py::gil_scoped_release release;
      st = table_->ApplyGradients(
          {static_cast<const int64_t*>(ids.view().data), static_cast<size_t>(n)},
          static_cast<const float*>(grads.view().data));
    }
    ThrowIfError(st);
  }

  void Save(const std::string& dir, bool incremental) {
    Status st;
    {
      py::gil_scoped_release release;
      st = table_->Save(dir, incremental);
    }
    ThrowIfError(st);
  }

  void Load(const std::string& dir) {
    Status st;
    {
      py::gil_scoped_release release;
      st = table_->Load(dir);
    }
    ThrowIfError(st);
  }

  void Expire() {
    Status st;
    {
      py::gil_scoped_release release;
      st = table_->Expire();
    }
    ThrowIfError(st);
  }

  py::dict Stats() const {
    const embed::TableStats s = table_->stats();
    py::dict d;
    d["step"] = s.step;
    d["dram_rows"] = s.dram_rows;
    d["dram_bytes"] = s.dram_bytes;
    d["ssd_rows"] = s.ssd_rows;
    d["ssd_bytes"] = s.ssd_bytes;
    d["ssd_index_bytes"] = s.ssd_index_bytes;
    d["lookups"] = s.lookups;
    d["dram_hits"] = s.dram_hits;
    d["ssd_hits"] = s.ssd_hits;
    d["hit_rate"] = s.lookups > 0 ? static_cast<double>(s.dram_hits) / s.lookups : 0.0;
    d["admissions"] = s.admissions;
    d["rejected"] = s.rejected;
    d["evictions"] = s.evictions;
    d["dropped"] = s.dropped;
    d["expired"] = s.expired;
    return d;
  }

  int64_t dim() const { return table_->dim(); }

 private:
  std::unique_ptr<embed::Table> table_;
};

}  // namespace

void BindEmbedFunctions(py::module_& m) {
  py::class_<PyTable>(m, "EmbeddingTable")
      .def(py::init<int64_t, int64_t, const std::string&, const std::string&,
                    const std::map<std::string, double>&, int64_t, int64_t, const std::string&,
                    uint64_t, int>(),
           py::arg("dim"), py::arg("dram_budget") = 0, py::arg("ssd_path") = "",
           py::arg("optimizer") = "adagrad", py::arg("options") = std::map<std::string, double>{},
           py::arg("admit_after") = 0, py::arg("ttl") = 0, py::arg("init") = "zeros",
           py::arg("seed") = 0, py::arg("shards") = 64)
      .def("lookup", &PyTable::Lookup, py::arg("ids"), py::arg("train") = true)
      .def("apply_gradients", &PyTable::ApplyGradients, py::arg("ids"), py::arg("grads"))
      .def("save", &PyTable::Save, py::arg("dir"), py::arg("incremental") = false)
      .def("load", &PyTable::Load, py::arg("dir"))
      .def("expire", &PyTable::Expire)
      .def("stats", &PyTable::Stats)
      .def_property_readonly("dim", &PyTable::dim);
  m.def(
      "parse_bytes", [](const std::string& text) { return ValueOrThrow(embed::ParseBytes(text)); },
      py::arg("text"));
}

}  // namespace keel::python

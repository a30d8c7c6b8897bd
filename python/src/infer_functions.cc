// keel._C inference bindings:
//   gguf_write(path, metadata, tensors)
//     metadata [(key, value)]: str -> string, bool -> bool, int -> u32 (i64 if negative or
//       >= 2^32), float -> f32, list of str/int/float -> array of string/i32/f32
//     tensors [(name, type, tensor)]: a float32 CPU tensor of shape [rows, cols] (or [cols]),
//       stored as `type` ("f32", "f16", "bf16", "q8_0", "q4_0"), quantized row by row with
//       keel's quantizers; GGUF's ne = the shape reversed.
//   Tokenizer(path): .encode(text, add_bos=False) -> ids; .decode(ids) -> bytes; .piece(id)
//   LlamaSession(path, threads=1, quantize_activations=True): .forward(tokens, all_logits=False) ->
//   float32 tensor
//     ([n_vocab], or [len(tokens), n_vocab]); .config -> dict; .position
#include "infer_functions.h"

#include <fmt/format.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>

#include "dlpack_tensor.h"
#include "keel/infer/gguf/gguf_file.h"
#include "keel/infer/kernels/compute_pool.h"
#include "keel/infer/model/llama.h"
#include "keel/infer/quant/quant.h"
#include "keel/infer/tokenizer/tokenizer.h"
#include "status_exception.h"

namespace keel::python {
namespace py = pybind11;
namespace {

using infer::GgufValue;
using infer::GgufValueType;

GgufValue ToValue(const std::string& key, py::handle v) {
  if (py::isinstance<py::bool_>(v)) return GgufValue::Bool(v.cast<bool>());
  if (py::isinstance<py::int_>(v)) {
    const auto i = v.cast<int64_t>();
    if (i >= 0 && i < (int64_t{1} << 32)) return GgufValue::UInt(GgufValueType::kU32, i);
    return GgufValue::Int(GgufValueType::kI64, i);
  }
  if (py::isinstance<py::float_>(v)) return GgufValue::Float(GgufValueType::kF32, v.cast<double>());
  if (py::isinstance<py::str>(v)) return GgufValue::String(v.cast<std::string>());
  if (py::isinstance<py::list>(v) || py::isinstance<py::tuple>(v)) {
    std::vector<GgufValue> items;
    GgufValueType elem = GgufValueType::kString;
    bool first = true;
    for (py::handle item : v) {
      GgufValue value = py::isinstance<py::int_>(item) && !py::isinstance<py::bool_>(item)
                            ? GgufValue::Int(GgufValueType::kI32, item.cast<int32_t>())
                            : ToValue(key, item);
      if (first) elem = value.type;
      if (value.type != elem || value.type == GgufValueType::kArray) {
        throw py::value_error("metadata '" + key + "': list elements must share one scalar type");
      }
      first = false;
      items.push_back(std::move(value));
    }
    return GgufValue::Array(elem, std::move(items));
  }
  throw py::value_error("metadata '" + key + "': unsupported value type " +
                        std::string(py::str(v.get_type())));
}

void GgufWrite(const std::string& path, const py::list& metadata, const py::list& tensors) {
  infer::GgufWriter w;
  for (py::handle kv : metadata) {
    auto t = kv.cast<py::tuple>();
    const auto key = t[0].cast<std::string>();
    w.Set(key, ToValue(key, t[1]));
  }
  for (py::handle entry : tensors) {
    auto t = entry.cast<py::tuple>();
    const auto name = t[0].cast<std::string>();
    const auto type_name = t[1].cast<std::string>();
    std::optional<infer::GgmlType> type = infer::ParseGgmlType(type_name);
    if (!type)
      throw py::value_error(fmt::format("tensor '{}': unknown type '{}'", name, type_name));
    BorrowedTensor src = ValueOrThrow(BorrowedTensor::From(t[2]));
    const TensorView& v = src.view();
    if (v.dtype != DType::kFloat32 || v.device != DeviceType::kCpu || !v.is_contiguous() ||
        v.shape.empty() || v.shape.size() > 2) {
      throw py::value_error("tensor '" + name +
                            "' must be a contiguous 1-D or 2-D float32 CPU "
                            "tensor, got " +
                            v.DebugString());
    }
    const int64_t cols = v.shape.back();
    const int64_t rows = v.shape.size() == 2 ? v.shape[0] : 1;
    const int64_t row_bytes = ValueOrThrow(infer::RowBytes(*type, cols));
    std::vector<uint8_t> bytes(rows * row_bytes);
    const float* data = static_cast<const float*>(v.data);
    for (int64_t r = 0; r < rows; ++r) {
      ThrowIfError(
          infer::QuantizeRow(*type, {data + r * cols, static_cast<size_t>(cols)},
                             {bytes.data() + r * row_bytes, static_cast<size_t>(row_bytes)}));
    }
    std::vector<int64_t> ne(v.shape.rbegin(), v.shape.rend());
    ThrowIfError(w.AddTensor(name, *type, ne, bytes));
  }
  ThrowIfError(w.Write(path));
}

class Session {
 public:
  Session(const std::string& path, int threads, bool quantize_activations) {
    if (threads < 1 || threads > 1024) throw py::value_error("threads must be 1..1024");
    model_ = ValueOrThrow(infer::LlamaModel::Load(path));
    if (threads > 1) pool_ = std::make_unique<infer::ComputePool>(threads - 1, "keel-infer");
    session_ = std::make_unique<infer::LlamaSession>(*model_, pool_.get(), quantize_activations);
  }

  py::object Forward(const std::vector<int32_t>& tokens, bool all_logits) {
    StatusOr<std::vector<float>> logits = [&] {
      py::gil_scoped_release release;
      return session_->Forward(tokens, all_logits);
    }();
    std::vector<float> values = ValueOrThrow(std::move(logits));
    const int64_t vocab = model_->config().n_vocab;
    std::vector<int64_t> shape =
        all_logits ? std::vector<int64_t>{static_cast<int64_t>(tokens.size()), vocab}
                   : std::vector<int64_t>{vocab};
    TensorView view;
    py::capsule capsule = NewTensorCapsule(DType::kFloat32, shape, &view, /*zero=*/false);
    std::memcpy(view.data, values.data(), values.size() * sizeof(float));
    return py::module_::import("torch").attr("from_dlpack")(capsule);
  }

  py::dict Config() const {
    const infer::LlamaConfig& c = model_->config();
    py::dict d;
    d["n_vocab"] = c.n_vocab;
    d["n_embd"] = c.n_embd;
    d["n_layer"] = c.n_layer;
    d["n_ff"] = c.n_ff;
    d["n_head"] = c.n_head;
    d["n_head_kv"] = c.n_head_kv;
    d["n_ctx"] = c.n_ctx;
    d["rms_eps"] = c.rms_eps;
    d["rope_base"] = c.rope_base;
    d["tied_output"] = c.tied_output;
    return d;
  }

  int64_t position() const { return session_->position(); }

 private:
  std::unique_ptr<infer::LlamaModel> model_;
  std::unique_ptr<infer::ComputePool> pool_;
  std::unique_ptr<infer::LlamaSession> session_;
};

class PyTokenizer {
 public:
  explicit PyTokenizer(const std::string& path) {
    file_ = ValueOrThrow(infer::GgufFile::Open(path));
    tok_ = ValueOrThrow(infer::Tokenizer::FromGguf(*file_));
  }
  std::vector<int32_t> Encode(const std::string& text, bool add_bos) const {
    return tok_->Encode(text, add_bos);
  }
  py::bytes Decode(const std::vector<int32_t>& ids) const { return tok_->Decode(ids); }
  py::bytes Piece(int32_t id) const { return tok_->Decode(id); }

 private:
  std::unique_ptr<infer::GgufFile> file_;
  std::unique_ptr<infer::Tokenizer> tok_;
};

}  // namespace

void BindInferFunctions(py::module_& m) {
  py::class_<PyTokenizer>(m, "Tokenizer")
      .def(py::init<const std::string&>(), py::arg("path"))
      .def("encode", &PyTokenizer::Encode, py::arg("text"), py::arg("add_bos") = false)
      .def("decode", &PyTokenizer::Decode, py::arg("ids"), "The text's bytes (UTF-8).")
      .def("piece", &PyTokenizer::Piece, py::arg("id"), "One token's bytes, as streamed.");
  m.def("gguf_write", &GgufWrite, py::arg("path"), py::arg("metadata"), py::arg("tensors"),
        "Writes a GGUF v3 file with keel's writer (tensors quantized with keel's quantizers).");
  py::class_<Session>(m, "LlamaSession")
      .def(py::init<const std::string&, int, bool>(), py::arg("path"), py::arg("threads") = 1,
           py::arg("quantize_activations") = true)
      .def("forward", &Session::Forward, py::arg("tokens"), py::arg("all_logits") = false)
      .def_property_readonly("config", &Session::Config)
      .def_property_readonly("position", &Session::position);
}

}  // namespace keel::python

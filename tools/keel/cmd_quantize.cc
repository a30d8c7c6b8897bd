// `keel quantize IN OUT TYPE`: converts a GGUF model's weight matrices to f32, f16, bf16, q8_0
// or q4_0 (norms and other 1-D tensors stay as they are), keeping all metadata.
#include <fmt/format.h>

#include <string>
#include <vector>

#include "keel/infer/gguf/gguf_file.h"
#include "keel/infer/quant/quant.h"
#include "tools/keel/command.h"

namespace keel::cli {
namespace {

struct QuantizeFlags {
  std::string in, out, type;
};

// general.file_type values (llama.cpp's llama_ftype) for the types keel writes.
uint32_t FileType(infer::GgmlType t) {
  switch (t) {
    case infer::GgmlType::kF16:
      return 1;
    case infer::GgmlType::kQ4_0:
      return 2;
    case infer::GgmlType::kQ8_0:
      return 7;
    case infer::GgmlType::kBF16:
      return 32;
    default:
      return 0;
  }
}

Status Quantize(const QuantizeFlags& f, infer::GgmlType target) {
  KEEL_ASSIGN_OR_RETURN(auto in, infer::GgufFile::Open(f.in));
  infer::GgufWriter w;
  for (const auto& [key, value] : in->metadata()) {
    if (key != "general.file_type" && key != "general.quantization_version") w.Set(key, value);
  }
  w.SetUInt32("general.file_type", FileType(target));
  const bool quantized = target == infer::GgmlType::kQ8_0 || target == infer::GgmlType::kQ4_0;
  if (quantized) w.SetUInt32("general.quantization_version", 2);
  uint64_t before = 0, after = 0;
  int converted = 0;
  for (const infer::GgufTensor& t : in->tensors()) {
    before += t.nbytes;
    const auto target_traits = infer::TraitsOf(static_cast<uint32_t>(target));
    const bool matrix = t.ne.size() == 2 && t.ne[0] % target_traits->block_size == 0;
    if (!matrix || t.type == target) {
      KEEL_RETURN_IF_ERROR(w.AddTensor(t.name, t.type, t.ne, {t.data, t.nbytes}));
      after += t.nbytes;
      continue;
    }
    const int64_t cols = t.ne[0], rows = t.rows();
    KEEL_ASSIGN_OR_RETURN(int64_t src_row, infer::RowBytes(t.type, cols));
    KEEL_ASSIGN_OR_RETURN(int64_t dst_row, infer::RowBytes(target, cols));
    std::vector<float> row(cols);
    std::vector<uint8_t> out(rows * dst_row);
    for (int64_t r = 0; r < rows; ++r) {
      KEEL_RETURN_IF_ERROR(
          infer::DequantizeRow(t.type, {t.data + r * src_row, static_cast<size_t>(src_row)}, row));
      KEEL_RETURN_IF_ERROR(infer::QuantizeRow(
          target, row, {out.data() + r * dst_row, static_cast<size_t>(dst_row)}));
    }
    KEEL_RETURN_IF_ERROR(w.AddTensor(t.name, target, t.ne, out));
    after += out.size();
    ++converted;
  }
  KEEL_RETURN_IF_ERROR(w.Write(f.out));
  fmt::print("{} -> {}: {} of {} tensors converted to {}; tensor data {:.1f} MiB -> {:.1f} MiB\n",
             f.in, f.out, converted, in->tensors().size(), f.type, before / 1048576.0,
             after / 1048576.0);
  return OkStatus();
}

Command MakeQuantize(CLI::App* parent) {
  auto f = std::make_shared<QuantizeFlags>();
  CLI::App* app =
      parent->add_subcommand("quantize", "Convert a GGUF model's weight matrices to another type");
  app->add_option("input", f->in, "GGUF model to read")->required()->check(CLI::ExistingFile);
  app->add_option("output", f->out, "GGUF file to write")->required();
  app->add_option("type", f->type, "f32, f16, bf16, q8_0 or q4_0")
      ->required()
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0"}));
  return {app, [f] {
            const Status s = Quantize(*f, *infer::ParseGgmlType(f->type));
            if (!s.ok()) {
              fmt::print(stderr, "keel quantize: {}\n", s.message());
              return kExitFailure;
            }
            return kExitOk;
          }};
}
KEEL_REGISTER_COMMAND(MakeQuantize);

}  // namespace
}  // namespace keel::cli

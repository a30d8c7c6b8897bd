// `keel convert`: a LLaMA-style PyTorch state dict — a keel checkpoint or any safetensors file,
// with Hugging Face tensor names — plus its Hugging Face config.json, into a GGUF model.
//
//   keel convert --from-checkpoint ckpt/step-1000 --config model.json --out model.gguf
//   (optional: --type q8_0, --vocab tokenizer.gguf)
//
// Q and K projections are permuted from Hugging Face's half-split rotary layout to GGUF's
// adjacent pairs (as llama.cpp's converter does). --vocab copies the tokenizer.ggml.* keys
// from another GGUF file (e.g. one made from a SentencePiece model).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "keel/ckpt/safetensors.h"
#include "keel/common/bfloat16.h"
#include "keel/common/float16.h"
#include "keel/infer/gguf/gguf_file.h"
#include "keel/infer/quant/quant.h"
#include "tools/keel/command.h"

namespace keel::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

struct ConvertFlags {
  std::string from, config, out, type = "f32", vocab, prefix;
};

// The safetensors file of a checkpoint: a .safetensors file as is; a step directory's
// rank-0.safetensors; a checkpoint root's latest committed step.
StatusOr<std::string> FindFile(const std::string& from) {
  if (fs::is_regular_file(from)) return from;
  if (fs::is_regular_file(from + "/rank-0.safetensors")) return from + "/rank-0.safetensors";
  std::ifstream latest(from + "/latest");
  int64_t step = -1;
  if (latest >> step &&
      fs::is_regular_file(fmt::format("{}/step-{}/rank-0.safetensors", from, step))) {
    return fmt::format("{}/step-{}/rank-0.safetensors", from, step);
  }
  return NotFoundError("'" + from +
                       "' is not a safetensors file, a checkpoint step directory "
                       "(rank-0.safetensors) or a checkpoint directory with a committed step");
}

StatusOr<int64_t> ConfigInt(const Json& c, const char* key, int64_t fallback = -1) {
  if (!c.contains(key)) {
    if (fallback >= 0) return fallback;
    return InvalidArgumentError(fmt::format("config: '{}' is missing", key));
  }
  if (!c[key].is_number_integer() || c[key].get<int64_t>() <= 0) {
    return InvalidArgumentError(fmt::format("config: '{}' must be a positive integer", key));
  }
  return c[key].get<int64_t>();
}

// A 1-D or 2-D tensor as float32, rows x cols.
StatusOr<std::vector<float>> ReadFloats(const TensorView& v, const std::string& name) {
  if (v.shape.empty() || v.shape.size() > 2) {
    return InvalidArgumentError(fmt::format("tensor '{}' has {} dimensions", name, v.shape.size()));
  }
  std::vector<float> out(v.numel());
  for (int64_t i = 0; i < v.numel(); ++i) {
    switch (v.dtype) {
      case DType::kFloat32:
        out[i] = static_cast<const float*>(v.data)[i];
        break;
      case DType::kFloat16:
        out[i] = Float16ToFloat(static_cast<const uint16_t*>(v.data)[i]);
        break;
      case DType::kBFloat16:
        out[i] = BFloat16ToFloat(static_cast<const uint16_t*>(v.data)[i]);
        break;
      default:
        return InvalidArgumentError(
            fmt::format("tensor '{}' has dtype {}; expected a float "
                        "type",
                        name, DTypeName(v.dtype)));
    }
  }
  return out;
}

// Hugging Face's rotary layout pairs dimension i with i + head_dim/2; GGUF's pairs 2i, 2i+1.
std::vector<float> PermuteRotary(const std::vector<float>& w, int64_t heads, int64_t cols) {
  const int64_t rows = static_cast<int64_t>(w.size()) / cols, hd = rows / heads;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < hd / 2; ++i) {
      for (int64_t half = 0; half < 2; ++half) {
        const int64_t src = h * hd + half * (hd / 2) + i, dst = h * hd + 2 * i + half;
        std::copy(&w[src * cols], &w[(src + 1) * cols], &out[dst * cols]);
      }
    }
  }
  return out;
}

Status Convert(const ConvertFlags& f) {
  std::ifstream config_in(f.config);
  if (!config_in) return NotFoundError("cannot read config '" + f.config + "'");
  const Json c = Json::parse(config_in, nullptr, /*allow_exceptions=*/false);
  if (c.is_discarded() || !c.is_object()) {
    return InvalidArgumentError("config '" + f.config + "' is not a JSON object");
  }
  KEEL_ASSIGN_OR_RETURN(int64_t embd, ConfigInt(c, "hidden_size"));
  KEEL_ASSIGN_OR_RETURN(int64_t layers, ConfigInt(c, "num_hidden_layers"));
  KEEL_ASSIGN_OR_RETURN(int64_t heads, ConfigInt(c, "num_attention_heads"));
  KEEL_ASSIGN_OR_RETURN(int64_t kv_heads, ConfigInt(c, "num_key_value_heads", heads));
  KEEL_ASSIGN_OR_RETURN(int64_t ff, ConfigInt(c, "intermediate_size"));
  KEEL_ASSIGN_OR_RETURN(int64_t ctx, ConfigInt(c, "max_position_embeddings", 2048));
  const double eps = c.value("rms_norm_eps", 1e-6);
  const double theta = c.value("rope_theta", 10000.0);
  if (embd % heads != 0 || heads % kv_heads != 0) {
    return InvalidArgumentError("config: heads do not divide hidden_size / attention heads");
  }
  const auto type = infer::ParseGgmlType(f.type);

  KEEL_ASSIGN_OR_RETURN(std::string path, FindFile(f.from));
  KEEL_ASSIGN_OR_RETURN(auto st, ckpt::SafetensorsFile::Open(path));
  std::string prefix = f.prefix;
  if (prefix.empty() && !st->Get("model.embed_tokens.weight").ok() &&
      st->Get("model/model.embed_tokens.weight").ok()) {
    prefix = "model/";  // keel.ckpt.save(step, {"model": model.state_dict(), ...})
  }
  infer::GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetString("general.name", c.value("_name_or_path", std::string("keel-convert")));
  w.SetUInt32("llama.context_length", static_cast<uint32_t>(ctx));
  w.SetUInt32("llama.embedding_length", static_cast<uint32_t>(embd));
  w.SetUInt32("llama.block_count", static_cast<uint32_t>(layers));
  w.SetUInt32("llama.feed_forward_length", static_cast<uint32_t>(ff));
  w.SetUInt32("llama.attention.head_count", static_cast<uint32_t>(heads));
  w.SetUInt32("llama.attention.head_count_kv", static_cast<uint32_t>(kv_heads));
  w.SetUInt32("llama.rope.dimension_count", static_cast<uint32_t>(embd / heads));
  w.SetFloat32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(eps));
  w.SetFloat32("llama.rope.freq_base", static_cast<float>(theta));
  if (!f.vocab.empty()) {
    KEEL_ASSIGN_OR_RETURN(auto vocab, infer::GgufFile::Open(f.vocab));
    for (const auto& [key, value] : vocab->metadata()) {
      if (key.rfind("tokenizer.", 0) == 0) w.Set(key, value);
    }
  }

  // (GGUF name, Hugging Face name, rows, cols, rotary heads to permute or 0)
  struct Entry {
    std::string gguf, hf;
    int64_t rows, cols, rotary_heads;
  };
  const int64_t hd = embd / heads;
  std::vector<Entry> entries = {{"token_embd.weight", "model.embed_tokens.weight", -1, embd, 0},
                                {"output_norm.weight", "model.norm.weight", 1, embd, 0}};
  if (st->Get(prefix + "lm_head.weight").ok()) {
    entries.push_back({"output.weight", "lm_head.weight", -1, embd, 0});
  }
  for (int64_t l = 0; l < layers; ++l) {
    const std::string g = fmt::format("blk.{}.", l), h = fmt::format("model.layers.{}.", l);
    entries.push_back({g + "attn_norm.weight", h + "input_layernorm.weight", 1, embd, 0});
    entries.push_back({g + "ffn_norm.weight", h + "post_attention_layernorm.weight", 1, embd, 0});
    entries.push_back({g + "attn_q.weight", h + "self_attn.q_proj.weight", embd, embd, heads});
    entries.push_back(
        {g + "attn_k.weight", h + "self_attn.k_proj.weight", kv_heads * hd, embd, kv_heads});
    entries.push_back({g + "attn_v.weight", h + "self_attn.v_proj.weight", kv_heads * hd, embd, 0});
    entries.push_back({g + "attn_output.weight", h + "self_attn.o_proj.weight", embd, embd, 0});
    entries.push_back({g + "ffn_gate.weight", h + "mlp.gate_proj.weight", ff, embd, 0});
    entries.push_back({g + "ffn_up.weight", h + "mlp.up_proj.weight", ff, embd, 0});
    entries.push_back({g + "ffn_down.weight", h + "mlp.down_proj.weight", embd, ff, 0});
  }
  for (const Entry& e : entries) {
    StatusOr<TensorView> v = st->Get(prefix + e.hf);
    if (!v.ok()) {
      return NotFoundError(fmt::format("'{}' has no tensor '{}'", path, prefix + e.hf));
    }
    const bool matrix = e.rows != 1;
    const int64_t rows = matrix ? (e.rows < 0 ? (v->shape.empty() ? 0 : v->shape[0]) : e.rows) : 1;
    const std::vector<int64_t> want =
        matrix ? std::vector<int64_t>{rows, e.cols} : std::vector<int64_t>{e.cols};
    if (v->shape != want) {
      return InvalidArgumentError(
          fmt::format("tensor '{}' has shape {}, expected {} (from the "
                      "config)",
                      prefix + e.hf, v->DebugString(), fmt::join(want, "x")));
    }
    KEEL_ASSIGN_OR_RETURN(std::vector<float> data, ReadFloats(*v, e.hf));
    if (e.rotary_heads > 0) data = PermuteRotary(data, e.rotary_heads, e.cols);
    const infer::GgmlType t = matrix ? *type : infer::GgmlType::kF32;
    KEEL_ASSIGN_OR_RETURN(int64_t row_bytes, infer::RowBytes(t, e.cols));
    std::vector<uint8_t> bytes(rows * row_bytes);
    for (int64_t r = 0; r < rows; ++r) {
      KEEL_RETURN_IF_ERROR(
          infer::QuantizeRow(t, {data.data() + r * e.cols, static_cast<size_t>(e.cols)},
                             {bytes.data() + r * row_bytes, static_cast<size_t>(row_bytes)}));
    }
    std::vector<int64_t> ne =
        matrix ? std::vector<int64_t>{e.cols, rows} : std::vector<int64_t>{e.cols};
    KEEL_RETURN_IF_ERROR(w.AddTensor(e.gguf, t, ne, bytes));
  }
  KEEL_RETURN_IF_ERROR(w.Write(f.out));
  fmt::print("{} -> {}: {} tensors, {} layers, weights {}\n", path, f.out, entries.size(), layers,
             f.type);
  return OkStatus();
}

Command MakeConvert(CLI::App* parent) {
  auto f = std::make_shared<ConvertFlags>();
  CLI::App* app = parent->add_subcommand(
      "convert", "Convert a LLaMA checkpoint (keel or safetensors, Hugging Face names) to GGUF");
  app->add_option("--from-checkpoint,--from", f->from,
                  "keel checkpoint directory, step directory, or .safetensors file")
      ->required()
      ->check(CLI::ExistingPath);
  app->add_option("--config", f->config, "Hugging Face config.json of the model")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--out,-o", f->out, "GGUF file to write")->required();
  app->add_option("--type", f->type, "Weight matrices as f32 (default), f16, bf16, q8_0, q4_0")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0"}));
  app->add_option("--vocab", f->vocab, "GGUF file whose tokenizer.ggml.* keys to copy")
      ->check(CLI::ExistingFile);
  app->add_option("--prefix", f->prefix,
                  "Prefix of the tensor names (default: none, or 'model/' for keel checkpoints)");
  return {app, [f] {
            const Status s = Convert(*f);
            if (!s.ok()) {
              fmt::print(stderr, "keel convert: {}\n", s.message());
              return kExitFailure;
            }
            return kExitOk;
          }};
}
KEEL_REGISTER_COMMAND(MakeConvert);

}  // namespace
}  // namespace keel::cli

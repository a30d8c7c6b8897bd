// The public Tokenizer: reads the parts of a GGUF vocabulary every model shares and dispatches
// to the model's implementation (see tokenizer.h, tokenizer_impl.h).
#include "keel/infer/tokenizer/tokenizer.h"

#include <fmt/format.h>

#include "keel/infer/tokenizer/tokenizer_impl.h"

namespace keel::infer {

Status TokenizerError(std::string_view what) {
  return InvalidArgumentError(fmt::format("GGUF tokenizer: {}", what));
}

namespace {

StatusOr<Vocab> ReadVocab(const GgufFile& file, bool default_add_bos) {
  Vocab v;
  KEEL_ASSIGN_OR_RETURN(const GgufValue* tokens,
                        file.GetArray("tokenizer.ggml.tokens", GgufValueType::kString));
  const size_t n = tokens->items.size();
  if (n == 0 || n > (1u << 24)) {
    return TokenizerError(fmt::format("{} tokens (must be 1..2^24)", n));
  }
  v.tokens.reserve(n);
  for (const GgufValue& t : tokens->items) v.tokens.push_back(t.str);
  v.types.assign(n, kTokenNormal);
  if (file.Find("tokenizer.ggml.token_type") != nullptr) {
    KEEL_ASSIGN_OR_RETURN(const GgufValue* types,
                          file.GetArray("tokenizer.ggml.token_type", GgufValueType::kI32));
    if (types->items.size() != n) {
      return TokenizerError(fmt::format("{} token types for {} tokens", types->items.size(), n));
    }
    for (size_t i = 0; i < n; ++i) v.types[i] = static_cast<int32_t>(types->items[i].i);
  }
  auto special = [&](const char* key, int32_t* out) -> Status {
    if (file.Find(key) == nullptr) return OkStatus();
    KEEL_ASSIGN_OR_RETURN(uint64_t id, file.GetUInt(key));
    if (id >= n) return TokenizerError(fmt::format("{} = {} is outside the {} tokens", key, id, n));
    *out = static_cast<int32_t>(id);
    return OkStatus();
  };
  KEEL_RETURN_IF_ERROR(special("tokenizer.ggml.bos_token_id", &v.bos));
  KEEL_RETURN_IF_ERROR(special("tokenizer.ggml.eos_token_id", &v.eos));
  KEEL_RETURN_IF_ERROR(special("tokenizer.ggml.unknown_token_id", &v.unk));
  v.add_bos = default_add_bos;
  if (file.Find("tokenizer.ggml.add_bos_token") != nullptr) {
    KEEL_ASSIGN_OR_RETURN(v.add_bos, file.GetBool("tokenizer.ggml.add_bos_token"));
  }
  return v;
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<const Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufFile& file) {
  KEEL_ASSIGN_OR_RETURN(std::string model, file.GetString("tokenizer.ggml.model"));
  std::unique_ptr<const Impl> impl;
  if (model == "llama") {
    KEEL_ASSIGN_OR_RETURN(Vocab v, ReadVocab(file, /*default_add_bos=*/true));
    KEEL_ASSIGN_OR_RETURN(impl, NewSpmTokenizer(file, std::move(v)));
  } else if (model == "gpt2") {
    KEEL_ASSIGN_OR_RETURN(Vocab v, ReadVocab(file, /*default_add_bos=*/false));
    KEEL_ASSIGN_OR_RETURN(impl, NewBpeTokenizer(file, std::move(v)));
  } else {
    return TokenizerError(fmt::format(
        "tokenizer model '{}' is not supported (keel reads 'llama', the SentencePiece BPE "
        "vocabulary, and 'gpt2', byte-level BPE)",
        model));
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> out;
  const Vocab& v = impl_->vocab();
  if (add_bos && v.add_bos && v.bos >= 0) out.push_back(v.bos);
  if (!text.empty()) impl_->Encode(text, &out);
  return out;
}

std::string Tokenizer::Decode(int32_t id) const {
  if (id < 0 || id >= size() || IsControl(id)) return "";
  return impl_->Decode(id);
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += Decode(id);
  impl_->FinishDecode(&out);
  return out;
}

int32_t Tokenizer::bos() const { return impl_->vocab().bos; }
int32_t Tokenizer::eos() const { return impl_->vocab().eos; }
int64_t Tokenizer::size() const { return static_cast<int64_t>(impl_->vocab().tokens.size()); }

bool Tokenizer::IsControl(int32_t id) const {
  if (id < 0 || id >= size()) return false;
  const int32_t type = impl_->vocab().types[id];
  return type == kTokenControl || type == kTokenUnknown;
}

}  // namespace keel::infer

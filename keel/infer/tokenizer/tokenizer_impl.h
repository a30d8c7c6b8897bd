// Internal to keel/infer/tokenizer: the vocabulary behind the public Tokenizer. tokenizer.cc
// reads what every model shares (tokens, types, special ids, add_bos) and hands it to the
// model's factory: spm_tokenizer.cc ("llama") or bpe_tokenizer.cc ("gpt2").
// Thread-safety: an Impl is immutable after its factory returns.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "keel/common/status.h"
#include "keel/infer/gguf/gguf_file.h"
#include "keel/infer/tokenizer/tokenizer.h"

namespace keel::infer {

// Token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type).
inline constexpr int32_t kTokenNormal = 1;
inline constexpr int32_t kTokenUnknown = 2;
inline constexpr int32_t kTokenControl = 3;
inline constexpr int32_t kTokenUserDefined = 4;
inline constexpr int32_t kTokenUnused = 5;
inline constexpr int32_t kTokenByte = 6;

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;  // one per token; kTokenNormal when the file has none
  int32_t bos = -1, eos = -1, unk = -1;
  bool add_bos = true;  // tokenizer.ggml.add_bos_token, or the model's default
};

class Tokenizer::Impl {
 public:
  explicit Impl(Vocab vocab) : vocab_(std::move(vocab)) {}
  virtual ~Impl() = default;

  // Appends the ids of `text` (no BOS) to `out`.
  virtual void Encode(std::string_view text, std::vector<int32_t>* out) const = 0;
  // The bytes of token `id`, 0 <= id < size.
  virtual std::string Decode(int32_t id) const = 0;
  // Applied once to a decoded sequence.
  virtual void FinishDecode(std::string* /*text*/) const {}

  const Vocab& vocab() const { return vocab_; }

 protected:
  Vocab vocab_;
};

// INVALID_ARGUMENT "GGUF tokenizer: <what>".
Status TokenizerError(std::string_view what);

StatusOr<std::unique_ptr<const Tokenizer::Impl>> NewSpmTokenizer(const GgufFile& file, Vocab vocab);
StatusOr<std::unique_ptr<const Tokenizer::Impl>> NewBpeTokenizer(const GgufFile& file, Vocab vocab);

}  // namespace keel::infer

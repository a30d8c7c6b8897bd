// Tokenizers built from a GGUF file's vocabulary (tokenizer.ggml.*).
//
//   KEEL_ASSIGN_OR_RETURN(auto tok, Tokenizer::FromGguf(file));
//   std::vector<int32_t> ids = tok->Encode("Once upon a time", /*add_bos=*/true);
//   std::string piece = tok->Decode(id);   // bytes; may be part of a UTF-8 character
//
// "llama" (SentencePiece BPE, as llama.cpp's SPM tokenizer): the text gets a leading space,
// spaces become U+2581, the UTF-8 characters are merged pairwise, highest-scoring merge first
// (leftmost on ties), and characters without a token fall back to <0xNN> byte tokens.
// "gpt2" (byte-level BPE with merges) is not implemented yet: FromGguf says so.
// Thread-safety: immutable after construction.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "keel/common/status.h"
#include "keel/infer/gguf/gguf_file.h"

namespace keel::infer {

class Tokenizer {
 public:
  // INVALID_ARGUMENT for a missing or inconsistent vocabulary (tokens/scores/types of different
  // lengths, a special-token id out of range, an unsupported tokenizer model).
  static StatusOr<std::unique_ptr<Tokenizer>> FromGguf(const GgufFile& file);

  std::vector<int32_t> Encode(std::string_view text, bool add_bos) const;
  // The bytes of one token: "▁" as a space, <0xNN> as byte NN, control tokens as "".
  std::string Decode(int32_t id) const;
  // A whole sequence (the leading space the encoder added is removed).
  std::string Decode(const std::vector<int32_t>& ids) const;

  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
  bool IsControl(int32_t id) const;

 private:
  Tokenizer() = default;
  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<int32_t> types_;  // 1 normal, 2 unknown, 3 control, 4 user defined, 6 byte
  std::unordered_map<std::string, int32_t> index_;
  int32_t byte_ids_[256];
  int32_t bos_ = -1, eos_ = -1, unk_ = -1;
  bool add_space_prefix_ = true;
};

}  // namespace keel::infer

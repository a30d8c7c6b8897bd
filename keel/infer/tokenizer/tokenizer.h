// Tokenizers built from a GGUF file's vocabulary (tokenizer.ggml.*).
//
//   KEEL_ASSIGN_OR_RETURN(auto tok, Tokenizer::FromGguf(file));
//   std::vector<int32_t> ids = tok->Encode("Once upon a time", /*add_bos=*/true);
//   std::string piece = tok->Decode(id);   // bytes; may be part of a UTF-8 character
//
// Two vocabularies, chosen by tokenizer.ggml.model, behind this one class:
//
// "llama" (SentencePiece BPE, as llama.cpp's SPM tokenizer): the text gets a leading space,
// spaces become U+2581, the UTF-8 characters are merged pairwise, highest-scoring merge first
// (leftmost on ties), and characters without a token fall back to <0xNN> byte tokens.
//
// "gpt2" (byte-level BPE, as OpenAI's GPT-2 encoder and llama.cpp's BPE tokenizer with
// tokenizer.ggml.pre = "gpt-2"): the text is split by GPT-2's pre-tokenizer regex
// ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+), each piece's
// bytes are written in GPT-2's 256-character byte alphabet and merged by tokenizer.ggml.merges,
// lowest rank (= index) first, leftmost on ties. No leading space is added. Invalid UTF-8 bytes
// are pre-tokenized as single punctuation-like characters and encoded as their bytes, so
// Decode(Encode(x)) == x for any bytes (llama.cpp replaces them with U+FFFD instead). A byte
// whose character is not a token becomes the unknown token if the vocabulary has one, else it
// is dropped. Special tokens written in the text ("<|endoftext|>") are encoded as plain text.
//
// BOS: Encode(text, add_bos = true) prepends tokenizer.ggml.bos_token_id when the vocabulary
// asks for it: tokenizer.ggml.add_bos_token, default true for "llama" and false for "gpt2"
// (llama.cpp's defaults).
// Thread-safety: immutable after construction; every method may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "keel/common/status.h"
#include "keel/infer/gguf/gguf_file.h"

namespace keel::infer {

class Tokenizer {
 public:
  // INVALID_ARGUMENT ("GGUF tokenizer: ...") for a missing or inconsistent vocabulary
  // (tokens/scores/types of different lengths, a special-token id out of range, an unsupported
  // tokenizer model or pre-tokenizer; for "gpt2": missing or malformed merges, merges of
  // strings that are not tokens, duplicate tokens).
  static StatusOr<std::unique_ptr<Tokenizer>> FromGguf(const GgufFile& file);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  std::vector<int32_t> Encode(std::string_view text, bool add_bos) const;
  // The bytes of one token: "▁" as a space, <0xNN> as byte NN (llama); GPT-2's byte alphabet
  // mapped back to bytes (gpt2); control and unknown tokens as "". Ids out of range give "".
  std::string Decode(int32_t id) const;
  // A whole sequence (for "llama", the leading space the encoder added is removed).
  std::string Decode(const std::vector<int32_t>& ids) const;

  int32_t bos() const;
  int32_t eos() const;
  int64_t size() const;
  bool IsControl(int32_t id) const;

  class Impl;  // the vocabulary: tokenizer_impl.h

 private:
  explicit Tokenizer(std::unique_ptr<const Impl> impl);
  std::unique_ptr<const Impl> impl_;
};

}  // namespace keel::infer

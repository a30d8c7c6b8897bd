// GPT-2's pre-tokenizer, written out by hand (std::regex has no \p{..} and is slow):
//
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// Alternatives are tried in order at each position, as a backtracking regex engine does; the
// pieces cover the text exactly. Letters, numbers and whitespace come from unicode_ranges.h.
// Invalid UTF-8 (stray or missing continuation bytes, overlong forms, surrogates, code points
// past U+10FFFF) is read one byte at a time, each byte a character of class "other" (like
// punctuation), so any bytes split without loss.
// Thread-safety: a pure function.
#pragma once

#include <string_view>
#include <vector>

namespace keel::infer {

// The pieces of `text`, in order; views into `text`. Concatenated they are `text`.
std::vector<std::string_view> Gpt2PreTokenize(std::string_view text);

}  // namespace keel::infer

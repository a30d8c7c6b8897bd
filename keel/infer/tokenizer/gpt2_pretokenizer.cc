// GPT-2's pre-tokenizer regex as a hand-written matcher (see gpt2_pretokenizer.h).
#include "keel/infer/tokenizer/gpt2_pretokenizer.h"

#include <cstdint>

#include "keel/infer/tokenizer/unicode_ranges.h"

namespace keel::infer {
namespace {

using unicode::CharClass;

struct Char {
  size_t begin;  // byte offset in the text
  uint32_t cp;   // the code point; for an invalid byte, 0xFFFFFFFF (never ASCII)
  CharClass cls;
};

constexpr uint32_t kInvalid = 0xFFFFFFFF;

// Decodes one UTF-8 character at `p` (strict: no overlong forms, surrogates or values past
// U+10FFFF). Returns its length, or 0 for an invalid byte.
size_t DecodeUtf8(const unsigned char* p, size_t avail, uint32_t* cp) {
  const unsigned char c = p[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len;
  uint32_t v, min;
  if ((c & 0xE0) == 0xC0) {
    len = 2, v = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, v = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, v = c & 0x07, min = 0x10000;
  } else {
    return 0;  // a continuation byte or 0xF8..0xFF
  }
  if (avail < len) return 0;
  for (size_t i = 1; i < len; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    v = (v << 6) | (p[i] & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

std::vector<Char> Decode(std::string_view text) {
  std::vector<Char> chars;
  chars.reserve(text.size());
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    size_t len = DecodeUtf8(p + i, text.size() - i, &cp);
    CharClass cls = CharClass::kOther;
    if (len == 0) {
      len = 1;
      cp = kInvalid;
    } else {
      cls = unicode::Classify(cp);
    }
    chars.push_back({i, cp, cls});
    i += len;
  }
  return chars;
}

// The end (exclusive char index) of the match starting at char i.
size_t MatchAt(const std::vector<Char>& c, size_t i) {
  const size_t n = c.size();
  auto cp = [&](size_t k) { return k < n ? c[k].cp : kInvalid; };
  // 's|'t|'re|'ve|'m|'ll|'d
  if (cp(i) == '\'') {
    const uint32_t a = cp(i + 1), b = cp(i + 2);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
  }
  //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+ : an optional space, then a run of one class.
  size_t k = i;
  if (cp(i) == ' ' && i + 1 < n && c[i + 1].cls != CharClass::kSpace) k = i + 1;
  const CharClass cls = c[k].cls;
  if (cls != CharClass::kSpace) {
    while (k < n && c[k].cls == cls) ++k;
    return k;
  }
  // \s+(?!\S) | \s+ : all of a whitespace run that ends the text; else all of it but the
  // last character (which may lead the next piece, " word"); a single one alone.
  size_t j = i;
  while (j < n && c[j].cls == CharClass::kSpace) ++j;
  if (j == n) return n;
  return j - i >= 2 ? j - 1 : i + 1;
}

}  // namespace

std::vector<std::string_view> Gpt2PreTokenize(std::string_view text) {
  const std::vector<Char> chars = Decode(text);
  std::vector<std::string_view> pieces;
  for (size_t i = 0; i < chars.size();) {
    const size_t j = MatchAt(chars, i);
    const size_t begin = chars[i].begin;
    const size_t end = j < chars.size() ? chars[j].begin : text.size();
    pieces.push_back(text.substr(begin, end - begin));
    i = j;
  }
  return pieces;
}

}  // namespace keel::infer

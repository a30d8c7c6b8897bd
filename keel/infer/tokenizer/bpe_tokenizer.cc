// GPT-2 byte-level BPE ("gpt2") tokenizer over a GGUF vocabulary (see tokenizer.h).
//
// Note [GPT-2 byte alphabet]
// GPT-2's tokens are strings over 256 printable characters, one per byte: the bytes that are
// printable Latin-1 ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) stand for themselves, and the
// other 68 (controls, space, DEL, U+00A0, U+00AD...) are U+0100, U+0101, ... in byte order,
// so ' ' is 'Ġ' (U+0120) and '\n' is 'Ċ' (U+010A). Encoding writes each byte of a pre-token
// as its character; decoding maps the characters back to bytes.
//
// Note [BPE merge order]
// Symbols start as single bytes. Among all adjacent pairs listed in tokenizer.ggml.merges the
// lowest rank (index) merges first, leftmost on ties, until no listed pair is left — a heap
// of candidate pairs, as llama.cpp does. OpenAI's encoder instead merges every occurrence of
// the best pair in one pass; both give the same tokens when, as in any trained vocabulary, a
// merge's parts were made by earlier (lower-rank) merges.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <queue>
#include <unordered_map>

#include "keel/infer/tokenizer/gpt2_pretokenizer.h"
#include "keel/infer/tokenizer/tokenizer_impl.h"

namespace keel::infer {
namespace {

// The characters of Note [GPT-2 byte alphabet], as code points.
struct ByteAlphabet {
  std::array<uint32_t, 256> char_of_byte;
  std::array<int, 0x144> byte_of_char;  // -1 where the code point is not in the alphabet

  ByteAlphabet() {
    byte_of_char.fill(-1);
    uint32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      char_of_byte[b] = printable ? b : next++;
      byte_of_char[char_of_byte[b]] = b;
    }
  }
  static std::string Utf8(uint32_t cp) {  // cp < 0x800
    if (cp < 0x80) return std::string(1, static_cast<char>(cp));
    return {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
  }
};

const ByteAlphabet& Alphabet() {
  static const ByteAlphabet* const kAlphabet = new ByteAlphabet();
  return *kAlphabet;
}

struct Merge {
  int32_t rank;
  int32_t result;
};

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

class BpeTokenizer final : public Tokenizer::Impl {
 public:
  BpeTokenizer(Vocab vocab, std::unordered_map<uint64_t, Merge> merges,
               std::array<int32_t, 256> byte_tokens)
      : Impl(std::move(vocab)), merges_(std::move(merges)), byte_tokens_(byte_tokens) {}

  void Encode(std::string_view text, std::vector<int32_t>* out) const override {
    constexpr size_t kMaxPiece = size_t{1} << 30;  // int indices below; longer ones in chunks
    for (std::string_view piece : Gpt2PreTokenize(text)) {
      for (size_t i = 0; i < piece.size(); i += kMaxPiece) {
        EncodePiece(piece.substr(i, kMaxPiece), out);
      }
    }
  }
  std::string Decode(int32_t id) const override;

 private:
  void EncodePiece(std::string_view piece, std::vector<int32_t>* out) const;

  std::unordered_map<uint64_t, Merge> merges_;  // PairKey(left id, right id) -> merge
  std::array<int32_t, 256> byte_tokens_;        // the token of each byte's character, or -1
};

void BpeTokenizer::EncodePiece(std::string_view piece, std::vector<int32_t>* out) const {
  // Symbols in a doubly linked list; a merge keeps the left one (with the merged id) and
  // unlinks the right one. Symbol ids of -1 (a byte without a token) never merge.
  struct Symbol {
    int32_t id;
    int prev, next;
  };
  const int n = static_cast<int>(piece.size());
  if (n == 0) return;
  std::vector<Symbol> sym(n);
  for (int i = 0; i < n; ++i) {
    sym[i] = {byte_tokens_[static_cast<unsigned char>(piece[i])], i - 1, i + 1};
  }
  sym[n - 1].next = -1;
  struct Candidate {
    int32_t rank;
    int left, right;
    int32_t left_id, right_id, result;
    bool operator>(const Candidate& o) const {  // min-heap: lowest rank, then leftmost
      return rank > o.rank || (rank == o.rank && left > o.left);
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0 || sym[left].id < 0 || sym[right].id < 0) return;
    auto it = merges_.find(PairKey(sym[left].id, sym[right].id));
    if (it == merges_.end()) return;
    queue.push({it->second.rank, left, right, sym[left].id, sym[right].id, it->second.result});
  };
  for (int i = 0; i + 1 < n; ++i) try_add(i, i + 1);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& l = sym[c.left];
    Symbol& r = sym[c.right];
    // Stale if either side has merged since (a merge changes the left id and unlinks the
    // right symbol; a merged id differs from both parts because tokens are unique).
    if (l.next != c.right || l.id != c.left_id || r.id != c.right_id) continue;
    l.id = c.result;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    r.id = -2;
    try_add(l.prev, c.left);
    try_add(c.left, l.next);
  }
  for (int i = 0; i >= 0; i = sym[i].next) {
    if (sym[i].id >= 0) {
      out->push_back(sym[i].id);
    } else if (vocab_.unk >= 0) {
      out->push_back(vocab_.unk);
    }
  }
}

std::string BpeTokenizer::Decode(int32_t id) const {
  const std::string& s = vocab_.tokens[id];
  if (vocab_.types[id] == kTokenUserDefined) return s;  // written as text, as llama.cpp does
  // Characters of the byte alphabet become their bytes; anything else is copied unchanged.
  const ByteAlphabet& a = Alphabet();
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto c0 = static_cast<unsigned char>(s[i]);
    uint32_t cp = c0;
    size_t len = 1;
    if ((c0 & 0xE0) == 0xC0 && i + 1 < s.size() && (s[i + 1] & 0xC0) == 0x80) {
      cp = ((c0 & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
      len = 2;
    }
    const int byte = cp < a.byte_of_char.size() ? a.byte_of_char[cp] : -1;
    if (byte >= 0 && (len == 2 || c0 < 0x80)) {
      out += static_cast<char>(byte);
    } else {
      out.append(s, i, len);
    }
    i += len;
  }
  return out;
}

// The merges as token-id pairs; INVALID_ARGUMENT for a malformed one.
StatusOr<std::unordered_map<uint64_t, Merge>> ReadMerges(
    const GgufFile& file, const std::unordered_map<std::string_view, int32_t>& index) {
  if (file.Find("tokenizer.ggml.merges") == nullptr) {
    return TokenizerError("a 'gpt2' vocabulary needs tokenizer.ggml.merges, which is missing");
  }
  KEEL_ASSIGN_OR_RETURN(const GgufValue* merges,
                        file.GetArray("tokenizer.ggml.merges", GgufValueType::kString));
  if (merges->items.size() > (1u << 24)) {
    return TokenizerError(fmt::format("{} merges (at most 2^24)", merges->items.size()));
  }
  std::unordered_map<uint64_t, Merge> out;
  out.reserve(merges->items.size());
  for (size_t rank = 0; rank < merges->items.size(); ++rank) {
    const std::string& m = merges->items[rank].str;
    const size_t space = m.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == m.size() ||
        m.find(' ', space + 1) != std::string::npos) {
      return TokenizerError(
          fmt::format("merge {} is '{}'; a merge is two tokens separated by one space", rank, m));
    }
    const std::string_view left(m.data(), space), right(m.data() + space + 1, m.size() - space - 1);
    auto find = [&](std::string_view s, const char* what) -> StatusOr<int32_t> {
      auto it = index.find(s);
      if (it == index.end()) {
        return TokenizerError(
            fmt::format("merge {} ('{}'): its {} '{}' is not a token", rank, m, what, s));
      }
      return it->second;
    };
    KEEL_ASSIGN_OR_RETURN(int32_t l, find(left, "left part"));
    KEEL_ASSIGN_OR_RETURN(int32_t r, find(right, "right part"));
    const std::string joined = std::string(left) + std::string(right);
    KEEL_ASSIGN_OR_RETURN(int32_t result, find(joined, "result"));
    out.emplace(PairKey(l, r), Merge{static_cast<int32_t>(rank), result});  // first one wins
  }
  return out;
}

}  // namespace

StatusOr<std::unique_ptr<const Tokenizer::Impl>> NewBpeTokenizer(const GgufFile& file,
                                                                 Vocab vocab) {
  if (file.Find("tokenizer.ggml.pre") != nullptr) {
    KEEL_ASSIGN_OR_RETURN(std::string pre, file.GetString("tokenizer.ggml.pre"));
    if (pre != "gpt-2") {
      return TokenizerError(fmt::format(
          "pre-tokenizer '{}' is not supported (keel implements GPT-2's, 'gpt-2'; a file "
          "without tokenizer.ggml.pre gets it too)",
          pre));
    }
  }
  std::unordered_map<std::string_view, int32_t> index;
  index.reserve(vocab.tokens.size());
  for (size_t i = 0; i < vocab.tokens.size(); ++i) {
    auto [it, fresh] = index.emplace(vocab.tokens[i], static_cast<int32_t>(i));
    if (!fresh) {
      return TokenizerError(
          fmt::format("tokens {} and {} are both '{}'", it->second, i, vocab.tokens[i]));
    }
  }
  KEEL_ASSIGN_OR_RETURN(auto merges, ReadMerges(file, index));
  std::array<int32_t, 256> byte_tokens;
  for (int b = 0; b < 256; ++b) {
    auto it = index.find(ByteAlphabet::Utf8(Alphabet().char_of_byte[b]));
    byte_tokens[b] = it == index.end() ? -1 : it->second;
  }
  return std::unique_ptr<const Tokenizer::Impl>(
      new BpeTokenizer(std::move(vocab), std::move(merges), byte_tokens));
}

}  // namespace keel::infer

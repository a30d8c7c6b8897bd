// SentencePiece-BPE ("llama") tokenizer over a GGUF vocabulary (see tokenizer.h).
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <queue>
#include <unordered_map>

#include "keel/infer/tokenizer/tokenizer_impl.h"

namespace keel::infer {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

size_t Utf8Length(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;  // a stray continuation byte: its own symbol (byte fallback)
}

class SpmTokenizer final : public Tokenizer::Impl {
 public:
  SpmTokenizer(Vocab vocab, std::vector<float> scores, bool add_space_prefix)
      : Impl(std::move(vocab)), scores_(std::move(scores)), add_space_prefix_(add_space_prefix) {
    std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
    for (size_t i = 0; i < vocab_.tokens.size(); ++i) {
      const std::string& s = vocab_.tokens[i];
      index_.emplace(s, static_cast<int32_t>(i));  // the first of duplicates wins
      unsigned byte = 0;
      if (s.size() == 6 && s.rfind("<0x", 0) == 0 && s[5] == '>' &&
          std::sscanf(s.c_str() + 3, "%2X", &byte) == 1) {
        byte_ids_[byte] = static_cast<int32_t>(i);
      }
    }
  }

  void Encode(std::string_view text, std::vector<int32_t>* out) const override;
  std::string Decode(int32_t id) const override;
  void FinishDecode(std::string* text) const override {
    if (add_space_prefix_ && !text->empty() && (*text)[0] == ' ') text->erase(0, 1);
  }

 private:
  std::vector<float> scores_;
  std::unordered_map<std::string, int32_t> index_;
  int32_t byte_ids_[256];
  bool add_space_prefix_;
};

void SpmTokenizer::Encode(std::string_view text, std::vector<int32_t>* out) const {
  std::string s;
  s.reserve(text.size() + 8);
  if (add_space_prefix_) s += kSpace;
  for (char c : text) {
    if (c == ' ') {
      s += kSpace;
    } else {
      s += c;
    }
  }
  // Symbols: UTF-8 characters in a doubly linked list; merged symbols grow, the right one dies.
  struct Symbol {
    size_t begin, len;
    int prev, next;
  };
  std::vector<Symbol> sym;
  for (size_t i = 0; i < s.size();) {
    const size_t len = std::min(Utf8Length(static_cast<unsigned char>(s[i])), s.size() - i);
    sym.push_back({i, len, static_cast<int>(sym.size()) - 1, static_cast<int>(sym.size()) + 1});
    i += len;
  }
  sym.back().next = -1;
  struct Bigram {
    int left, right;
    float score;
    size_t len;
    bool operator<(const Bigram& o) const {  // max-heap: best score, then leftmost
      return score < o.score || (score == o.score && left > o.left);
    }
  };
  std::priority_queue<Bigram> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const std::string_view piece(s.data() + sym[left].begin, sym[left].len + sym[right].len);
    auto it = index_.find(std::string(piece));
    if (it == index_.end()) return;
    queue.push({left, right, scores_[it->second], piece.size()});
  };
  for (int i = 0; i + 1 < static_cast<int>(sym.size()); ++i) try_add(i, i + 1);
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = sym[b.left];
    Symbol& r = sym[b.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
  for (int i = 0; i >= 0 && i < static_cast<int>(sym.size()); i = sym[i].next) {
    const std::string piece = s.substr(sym[i].begin, sym[i].len);
    auto it = index_.find(piece);
    if (it != index_.end()) {
      out->push_back(it->second);
      continue;
    }
    for (unsigned char c : piece) {  // byte fallback
      const int32_t id = byte_ids_[c];
      if (id >= 0) {
        out->push_back(id);
      } else if (vocab_.unk >= 0) {
        out->push_back(vocab_.unk);
      }
    }
  }
}

std::string SpmTokenizer::Decode(int32_t id) const {
  const std::string& s = vocab_.tokens[id];
  unsigned byte = 0;
  if (s.size() == 6 && std::sscanf(s.c_str(), "<0x%2X>", &byte) == 1 && byte_ids_[byte] == id) {
    return std::string(1, static_cast<char>(byte));
  }
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, kSpace.size(), kSpace) == 0) {
      out += ' ';
      i += kSpace.size();
    } else {
      out += s[i++];
    }
  }
  return out;
}

}  // namespace

StatusOr<std::unique_ptr<const Tokenizer::Impl>> NewSpmTokenizer(const GgufFile& file,
                                                                 Vocab vocab) {
  const size_t n = vocab.tokens.size();
  std::vector<float> scores(n, 0.0f);
  if (file.Find("tokenizer.ggml.scores") != nullptr) {
    KEEL_ASSIGN_OR_RETURN(const GgufValue* s,
                          file.GetArray("tokenizer.ggml.scores", GgufValueType::kF32));
    if (s->items.size() != n) {
      return TokenizerError(fmt::format("{} scores for {} tokens", s->items.size(), n));
    }
    for (size_t i = 0; i < n; ++i) scores[i] = static_cast<float>(s->items[i].f);
  }
  bool add_space_prefix = true;
  if (file.Find("tokenizer.ggml.add_space_prefix") != nullptr) {
    KEEL_ASSIGN_OR_RETURN(add_space_prefix, file.GetBool("tokenizer.ggml.add_space_prefix"));
  }
  return std::unique_ptr<const Tokenizer::Impl>(
      new SpmTokenizer(std::move(vocab), std::move(scores), add_space_prefix));
}

}  // namespace keel::infer

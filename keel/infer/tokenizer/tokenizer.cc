// SentencePiece-BPE tokenizer over a GGUF vocabulary (see tokenizer.h).
#include "keel/infer/tokenizer/tokenizer.h"

#include <fmt/format.h>

#include <cstdio>
#include <queue>

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

Status Bad(const std::string& what) { return InvalidArgumentError("GGUF tokenizer: " + what); }

}  // namespace

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufFile& file) {
  KEEL_ASSIGN_OR_RETURN(std::string model, file.GetString("tokenizer.ggml.model"));
  if (model != "llama") {
    return Bad("tokenizer model '" + model +
               "' is not supported (keel reads 'llama', the "
               "SentencePiece BPE vocabulary; 'gpt2' BPE is planned)");
  }
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  KEEL_ASSIGN_OR_RETURN(const GgufValue* tokens,
                        file.GetArray("tokenizer.ggml.tokens", GgufValueType::kString));
  const size_t n = tokens->items.size();
  if (n == 0 || n > (1u << 24)) return Bad(fmt::format("{} tokens (must be 1..2^24)", n));
  t->tokens_.reserve(n);
  for (const GgufValue& v : tokens->items) t->tokens_.push_back(v.str);
  t->scores_.assign(n, 0.0f);
  if (file.Find("tokenizer.ggml.scores") != nullptr) {
    KEEL_ASSIGN_OR_RETURN(const GgufValue* scores,
                          file.GetArray("tokenizer.ggml.scores", GgufValueType::kF32));
    if (scores->items.size() != n) {
      return Bad(fmt::format("{} scores for {} tokens", scores->items.size(), n));
    }
    for (size_t i = 0; i < n; ++i) t->scores_[i] = static_cast<float>(scores->items[i].f);
  }
  t->types_.assign(n, 1);
  if (file.Find("tokenizer.ggml.token_type") != nullptr) {
    KEEL_ASSIGN_OR_RETURN(const GgufValue* types,
                          file.GetArray("tokenizer.ggml.token_type", GgufValueType::kI32));
    if (types->items.size() != n) {
      return Bad(fmt::format("{} token types for {} tokens", types->items.size(), n));
    }
    for (size_t i = 0; i < n; ++i) t->types_[i] = static_cast<int32_t>(types->items[i].i);
  }
  for (int& b : t->byte_ids_) b = -1;
  for (size_t i = 0; i < n; ++i) {
    const std::string& s = t->tokens_[i];
    t->index_.emplace(s, static_cast<int32_t>(i));  // the first of duplicates wins
    unsigned byte = 0;
    if (s.size() == 6 && s.rfind("<0x", 0) == 0 && s[5] == '>' &&
        std::sscanf(s.c_str() + 3, "%2X", &byte) == 1) {
      t->byte_ids_[byte] = static_cast<int32_t>(i);
    }
  }
  auto special = [&](const char* key, int32_t* out) -> Status {
    if (file.Find(key) == nullptr) return OkStatus();
    KEEL_ASSIGN_OR_RETURN(uint64_t id, file.GetUInt(key));
    if (id >= n) return Bad(fmt::format("{} = {} is outside the {} tokens", key, id, n));
    *out = static_cast<int32_t>(id);
    return OkStatus();
  };
  KEEL_RETURN_IF_ERROR(special("tokenizer.ggml.bos_token_id", &t->bos_));
  KEEL_RETURN_IF_ERROR(special("tokenizer.ggml.eos_token_id", &t->eos_));
  KEEL_RETURN_IF_ERROR(special("tokenizer.ggml.unknown_token_id", &t->unk_));
  if (file.Find("tokenizer.ggml.add_space_prefix") != nullptr) {
    KEEL_ASSIGN_OR_RETURN(t->add_space_prefix_, file.GetBool("tokenizer.ggml.add_space_prefix"));
  }
  return t;
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> out;
  if (add_bos && bos_ >= 0) out.push_back(bos_);
  if (text.empty()) return out;
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
      out.push_back(it->second);
      continue;
    }
    for (unsigned char c : piece) {  // byte fallback
      const int32_t id = byte_ids_[c];
      if (id >= 0) {
        out.push_back(id);
      } else if (unk_ >= 0) {
        out.push_back(unk_);
      }
    }
  }
  return out;
}

bool Tokenizer::IsControl(int32_t id) const {
  return id >= 0 && id < size() && (types_[id] == 3 || types_[id] == 2);
}

std::string Tokenizer::Decode(int32_t id) const {
  if (id < 0 || id >= size() || IsControl(id)) return "";
  const std::string& s = tokens_[id];
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

std::string Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += Decode(id);
  if (add_space_prefix_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

}  // namespace keel::infer

// The GPT-2 pre-tokenizer against the regex's meaning on hand-worked strings, byte-level BPE
// on small hand-built vocabularies (merge order, byte alphabet, unknown bytes, BOS, decoding),
// and broken vocabularies, each rejected with a message naming the problem. The real GPT-2
// vocabulary is checked against OpenAI's encoder in python/tests/test_infer_tokenizer_gpt2.py.
#include "keel/infer/tokenizer/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "keel/infer/tokenizer/gpt2_pretokenizer.h"
#include "keel/infer/tokenizer/unicode_ranges.h"

namespace keel::infer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Split(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view p : Gpt2PreTokenize(text)) out.emplace_back(p);
  return out;
}

TEST(UnicodeRanges, ClassifiesLettersNumbersAndWhitespace) {
  using unicode::CharClass;
  using unicode::Classify;
  EXPECT_EQ(Classify('a'), CharClass::kLetter);
  EXPECT_EQ(Classify(0x00E9), CharClass::kLetter);  // é
  EXPECT_EQ(Classify(0x6771), CharClass::kLetter);  // 東
  EXPECT_EQ(Classify(0x3042), CharClass::kLetter);  // あ
  EXPECT_EQ(Classify('7'), CharClass::kNumber);
  EXPECT_EQ(Classify(0x00BD), CharClass::kNumber);  // ½
  EXPECT_EQ(Classify(0x0663), CharClass::kNumber);  // Arabic-Indic 3
  EXPECT_EQ(Classify(' '), CharClass::kSpace);
  EXPECT_EQ(Classify('\n'), CharClass::kSpace);
  EXPECT_EQ(Classify(0x3000), CharClass::kSpace);  // ideographic space
  EXPECT_EQ(Classify(0x00A0), CharClass::kSpace);  // no-break space
  EXPECT_EQ(Classify('!'), CharClass::kOther);
  EXPECT_EQ(Classify(0x1F642), CharClass::kOther);  // 🙂
  EXPECT_EQ(Classify(0x0301), CharClass::kOther);   // combining acute (Mn)
  EXPECT_EQ(Classify(0x10FFFF), CharClass::kOther);
  EXPECT_EQ(Classify(0xFFFFFFFF), CharClass::kOther);
}

TEST(Gpt2PreTokenizer, SplitsLikeTheRegex) {
  EXPECT_THAT(Split("Hello world"), ElementsAre("Hello", " world"));
  EXPECT_THAT(Split("I'm here, they'll go"),
              ElementsAre("I", "'m", " here", ",", " they", "'ll", " go"));
  // Contractions are case-sensitive and only after the apostrophe starts a piece.
  EXPECT_THAT(Split("I'M don't x'y"), ElementsAre("I", "'", "M", " don", "'t", " x", "'", "y"));
  EXPECT_THAT(Split("ab 's"), ElementsAre("ab", " '", "s"));
  // Digits and letters are separate runs; a space joins the run after it.
  EXPECT_THAT(Split("abc123def 45"), ElementsAre("abc", "123", "def", " 45"));
  EXPECT_THAT(Split("x?!... (y)"), ElementsAre("x", "?!...", " (", "y", ")"));
  // \s+(?!\S): a run of spaces gives all but its last to itself; at the end, all.
  EXPECT_THAT(Split("a   b"), ElementsAre("a", "  ", " b"));
  EXPECT_THAT(Split("a  "), ElementsAre("a", "  "));
  EXPECT_THAT(Split("a\n\nb"), ElementsAre("a", "\n", "\n", "b"));
  EXPECT_THAT(Split("a\tb"), ElementsAre("a", "\t", "b"));
  EXPECT_THAT(Split("a \t b"), ElementsAre("a", " \t", " b"));
  EXPECT_THAT(Split(" "), ElementsAre(" "));
  EXPECT_THAT(Split(""), ElementsAre());
  EXPECT_THAT(Split("\n hi"), ElementsAre("\n", " hi"));
  // Non-ASCII classes: accented and CJK letters, emoji as "other", non-ASCII digits.
  EXPECT_THAT(Split("caf\xC3\xA9 \xE6\x9D\xB1\xE4\xBA\xAC \xF0\x9F\x99\x82!"),
              ElementsAre("caf\xC3\xA9", " \xE6\x9D\xB1\xE4\xBA\xAC", " \xF0\x9F\x99\x82!"));
  EXPECT_THAT(Split("x\xC2\xBD"), ElementsAre("x", "\xC2\xBD"));  // ½ is a number
}

TEST(Gpt2PreTokenizer, InvalidUtf8IsOneOtherCharacterPerByte) {
  // A stray continuation byte, a truncated sequence, an overlong '/', a surrogate, 0xFF.
  EXPECT_THAT(Split("a\x80"
                    "b"),
              ElementsAre("a", "\x80", "b"));
  EXPECT_THAT(Split("a \xE2\x82"), ElementsAre("a", " \xE2\x82"));
  EXPECT_THAT(Split("\xC0\xAF!x"), ElementsAre("\xC0\xAF!", "x"));
  EXPECT_THAT(Split("\xED\xA0\x80 1"), ElementsAre("\xED\xA0\x80", " 1"));
  EXPECT_THAT(Split("\xFF"), ElementsAre("\xFF"));
  // Every byte sequence splits without loss.
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (int rep = 0; rep < 3; ++rep) all += all;
  std::string joined;
  for (const std::string& p : Split(all)) joined += p;
  EXPECT_EQ(joined, all);
}

// GPT-2's byte alphabet for the characters used below: bytes print as themselves except
// ' ' = U+0120 "Ġ" and '\n' = U+010A "Ċ".
constexpr char kG[] = "\xC4\xA0";
constexpr char kNl[] = "\xC4\x8A";

struct VocabSpec {
  std::vector<std::string> tokens;
  std::vector<std::string> merges;
  std::vector<int32_t> types;
  int bos = -1, eos = -1, unk = -1;
  int add_bos = -1;  // -1: key absent
  std::string pre;
};

StatusOr<std::unique_ptr<Tokenizer>> Build(const VocabSpec& v) {
  GgufWriter w;
  w.SetString("tokenizer.ggml.model", "gpt2");
  if (!v.pre.empty()) w.SetString("tokenizer.ggml.pre", v.pre);
  w.SetStringArray("tokenizer.ggml.tokens", v.tokens);
  w.SetStringArray("tokenizer.ggml.merges", v.merges);
  if (!v.types.empty()) {
    std::vector<GgufValue> t;
    for (int32_t x : v.types) t.push_back(GgufValue::Int(GgufValueType::kI32, x));
    w.Set("tokenizer.ggml.token_type", GgufValue::Array(GgufValueType::kI32, t));
  }
  if (v.bos >= 0) w.SetUInt32("tokenizer.ggml.bos_token_id", v.bos);
  if (v.eos >= 0) w.SetUInt32("tokenizer.ggml.eos_token_id", v.eos);
  if (v.unk >= 0) w.SetUInt32("tokenizer.ggml.unknown_token_id", v.unk);
  if (v.add_bos >= 0) w.SetBool("tokenizer.ggml.add_bos_token", v.add_bos == 1);
  auto bytes = w.Serialize();
  if (!bytes.ok()) return bytes.status();
  // The parsed file is only read during FromGguf; the tokenizer copies what it keeps.
  auto file = GgufFile::Parse(*bytes);
  if (!file.ok()) return file.status();
  return Tokenizer::FromGguf(**file);
}

// 0 'a', 1 'b', 2 'c', 3 'Ġ', 4 'Ċ', 5 'ab', 6 'bc', 7 'Ġa', 8 'abc', 9 'Ġab', 10 <|end|>.
VocabSpec Small() {
  VocabSpec v;
  v.tokens = {
      "a",      "b", "c", kG, kNl, "ab", "bc", std::string(kG) + "a", "abc", std::string(kG) + "ab",
      "<|end|>"};
  v.merges = {"b c", std::string(kG) + " a", "a b", "a bc", std::string(kG) + "a b"};
  v.types = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3};
  v.bos = v.eos = 10;
  return v;
}

TEST(Gpt2Bpe, MergesLowestRankFirst) {
  auto tok = Build(Small());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  const Tokenizer& t = **tok;
  // "abc": "b c" (rank 0) beats "a b" (rank 2), then "a bc" makes "abc".
  EXPECT_THAT(t.Encode("abc", false), ElementsAre(8));
  // " ab": "Ġ a" (1) beats "a b" (2), then "Ġa b" (4).
  EXPECT_THAT(t.Encode(" ab", false), ElementsAre(9));
  // "abab": "a b" twice; no merge joins two "ab".
  EXPECT_THAT(t.Encode("abab", false), ElementsAre(5, 5));
  // Pre-tokens never merge across: "a\nb" is "a", "\n", "b".
  EXPECT_THAT(t.Encode("a\nb", false), ElementsAre(0, 4, 1));
  EXPECT_THAT(t.Encode("", false), ElementsAre());
}

TEST(Gpt2Bpe, BytesWithoutATokenBecomeUnknownOrAreDropped) {
  VocabSpec v = Small();
  auto tok = Build(v);
  ASSERT_TRUE(tok.ok());
  EXPECT_THAT((*tok)->Encode("axb", false), ElementsAre(0, 1));  // 'x' has no token: dropped
  v.tokens.emplace_back("<unk>");
  v.types.push_back(2);
  v.unk = 11;
  tok = Build(v);
  ASSERT_TRUE(tok.ok());
  EXPECT_THAT((*tok)->Encode("axb", false), ElementsAre(0, 11, 1));
  EXPECT_EQ((*tok)->Decode(11), "");
}

TEST(Gpt2Bpe, BosOnlyWhenTheFileAsksForIt) {
  VocabSpec v = Small();
  auto tok = Build(v);
  ASSERT_TRUE(tok.ok());
  EXPECT_THAT((*tok)->Encode("a", true), ElementsAre(0));  // gpt2 default: no BOS
  EXPECT_EQ((*tok)->bos(), 10);
  EXPECT_EQ((*tok)->eos(), 10);
  v.add_bos = 1;
  tok = Build(v);
  ASSERT_TRUE(tok.ok());
  EXPECT_THAT((*tok)->Encode("a", true), ElementsAre(10, 0));
  EXPECT_THAT((*tok)->Encode("a", false), ElementsAre(0));
}

TEST(Gpt2Bpe, DecodesTheByteAlphabetAndHidesControlTokens) {
  auto tok = Build(Small());
  ASSERT_TRUE(tok.ok());
  const Tokenizer& t = **tok;
  EXPECT_EQ(t.Decode(9), " ab");
  EXPECT_EQ(t.Decode(4), "\n");
  EXPECT_EQ(t.Decode(10), "");  // control
  EXPECT_TRUE(t.IsControl(10));
  EXPECT_EQ(t.Decode(-1), "");
  EXPECT_EQ(t.Decode(11), "");
  EXPECT_EQ(t.Decode(std::vector<int32_t>{10, 9, 4, 2}), " ab\nc");  // no space is stripped
}

TEST(Gpt2Bpe, EveryByteRoundTripsThroughAFullByteVocabulary) {
  // A vocabulary of the 256 byte characters and no merges: each byte is its own token.
  VocabSpec v;
  for (uint32_t cp = 0x21; cp < 0x144; ++cp) {
    if ((cp > 0x7E && cp < 0xA1) || cp == 0xAD) continue;  // not in the alphabet
    if (cp < 0x80) {
      v.tokens.emplace_back(1, static_cast<char>(cp));
    } else {
      v.tokens.push_back(
          {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))});
    }
  }
  ASSERT_EQ(v.tokens.size(), 256u);
  auto tok = Build(v);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  all += "caf\xC3\xA9 \xF0\x9F\x99\x82 \xE2\x82 \x80\xFF";
  const std::vector<int32_t> ids = (*tok)->Encode(all, false);
  EXPECT_EQ(ids.size(), all.size());
  EXPECT_EQ((*tok)->Decode(ids), all);
}

TEST(Gpt2Bpe, BrokenVocabulariesAreRejected) {
  auto expect_error = [](const VocabSpec& v, const std::string& needle) {
    auto tok = Build(v);
    ASSERT_FALSE(tok.ok()) << needle;
    EXPECT_EQ(tok.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(tok.status().message(), HasSubstr("GGUF tokenizer: "));
    EXPECT_THAT(tok.status().message(), HasSubstr(needle));
  };
  VocabSpec v = Small();
  v.merges.emplace_back("ab");
  expect_error(v, "merge 5 is 'ab'; a merge is two tokens separated by one space");
  v = Small();
  v.merges.emplace_back("a b c");
  expect_error(v, "merge 5 is 'a b c'");
  v = Small();
  v.merges.emplace_back(" a");
  expect_error(v, "merge 5 is ' a'");
  v = Small();
  v.merges.emplace_back("a x");
  expect_error(v, "merge 5 ('a x'): its right part 'x' is not a token");
  v = Small();
  v.merges.emplace_back("c a");
  expect_error(v, "merge 5 ('c a'): its result 'ca' is not a token");
  v = Small();
  v.tokens[2] = "a";
  expect_error(v, "tokens 0 and 2 are both 'a'");
  v = Small();
  v.pre = "llama3";
  expect_error(v, "pre-tokenizer 'llama3' is not supported");
  v = Small();
  v.types.pop_back();
  expect_error(v, "10 token types for 11 tokens");
  v = Small();
  v.eos = 50;
  expect_error(v, "eos_token_id = 50 is outside the 11 tokens");

  GgufWriter w;  // no merges at all
  w.SetString("tokenizer.ggml.model", "gpt2");
  w.SetStringArray("tokenizer.ggml.tokens", {"a"});
  auto bytes = w.Serialize();
  ASSERT_TRUE(bytes.ok());
  auto file = GgufFile::Parse(*bytes);
  ASSERT_TRUE(file.ok());
  auto tok = Tokenizer::FromGguf(**file);
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(tok.status().message(), HasSubstr("needs tokenizer.ggml.merges"));
}

TEST(Gpt2Bpe, ExplicitGpt2PreTokenizerAndDuplicateMergesAreAccepted) {
  VocabSpec v = Small();
  v.pre = "gpt-2";
  v.merges.emplace_back("b c");  // a repeat keeps its first (lower) rank
  auto tok = Build(v);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_THAT((*tok)->Encode("abc", false), ElementsAre(8));
}

}  // namespace
}  // namespace keel::infer

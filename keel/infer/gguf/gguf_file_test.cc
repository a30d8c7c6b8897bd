// GGUF writer -> reader round trips, and the reader against corrupt, truncated and hostile
// files: each must be rejected with a message naming the problem, never a crash.
#include "keel/infer/gguf/gguf_file.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "keel/infer/quant/quant.h"

namespace keel::infer {
namespace {

std::vector<uint8_t> Floats(int64_t n, float scale = 1.0f) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>((i * 37) % 101 - 50);
  std::vector<uint8_t> b(n * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

GgufWriter SampleWriter() {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetUInt32("llama.block_count", 2);
  w.SetFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.SetBool("general.flag", true);
  w.Set("general.i64", GgufValue::Int(GgufValueType::kI64, -5));
  w.Set("general.f64", GgufValue::Float(GgufValueType::kF64, 2.5));
  w.Set("general.u8", GgufValue::UInt(GgufValueType::kU8, 255));
  w.SetStringArray("tokenizer.ggml.tokens", {"<unk>", "a", "", std::string("x\0y", 3)});
  w.Set("nested", GgufValue::Array(GgufValueType::kArray,
                                   {GgufValue::Array(GgufValueType::kI32,
                                                     {GgufValue::Int(GgufValueType::kI32, -1)}),
                                    GgufValue::Array(GgufValueType::kU8, {})}));
  EXPECT_TRUE(w.AddTensor("a", GgmlType::kF32, {3, 2}, Floats(6)).ok());
  std::vector<float> row(64);
  for (int i = 0; i < 64; ++i) row[i] = std::sin(float(i));
  std::vector<uint8_t> q8(68), q4(36);
  EXPECT_TRUE(QuantizeRow(GgmlType::kQ8_0, row, q8).ok());
  EXPECT_TRUE(QuantizeRow(GgmlType::kQ4_0, row, q4).ok());
  EXPECT_TRUE(w.AddTensor("q8", GgmlType::kQ8_0, {64}, q8).ok());
  EXPECT_TRUE(w.AddTensor("q4", GgmlType::kQ4_0, {64, 1}, q4).ok());
  return w;
}

std::vector<uint8_t> SampleBytes() {
  auto bytes = SampleWriter().Serialize();
  EXPECT_TRUE(bytes.ok());
  return *bytes;
}

TEST(Gguf, RoundTripKeepsEveryValueAndTensorByte) {
  const std::string path = ::testing::TempDir() + "/round_trip.gguf";
  GgufWriter w = SampleWriter();
  w.SetUInt32("general.alignment", 64);
  ASSERT_TRUE(w.Write(path).ok());
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& file = **f;
  EXPECT_EQ(file.version(), 3u);
  EXPECT_EQ(file.alignment(), 64u);
  EXPECT_EQ(*file.GetString("general.architecture"), "llama");
  EXPECT_EQ(*file.GetUInt("llama.block_count"), 2u);
  EXPECT_FLOAT_EQ(*file.GetFloat("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  EXPECT_TRUE(*file.GetBool("general.flag"));
  EXPECT_EQ(*file.GetInt("general.i64"), -5);
  EXPECT_EQ(*file.GetFloat("general.f64"), 2.5);
  EXPECT_EQ(*file.GetUInt("general.u8"), 255u);
  auto tokens = file.GetArray("tokenizer.ggml.tokens", GgufValueType::kString);
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ((*tokens)->items.size(), 4u);
  EXPECT_EQ((*tokens)->items[3].str, std::string("x\0y", 3));
  const GgufValue* nested = file.Find("nested");
  ASSERT_NE(nested, nullptr);
  EXPECT_EQ(nested->items[0].items[0].i, -1);
  EXPECT_TRUE(nested->items[1].items.empty());

  // Errors name the key and the problem.
  EXPECT_EQ(file.GetUInt("missing").status().code(), StatusCode::kNotFound);
  EXPECT_NE(file.GetUInt("general.i64").status().message().find("must be >= 0"), std::string::npos);
  EXPECT_NE(file.GetString("llama.block_count").status().message().find("u32, not a string"),
            std::string::npos);

  GgufWriter expect = SampleWriter();
  auto want = expect.Serialize();
  const GgufTensor* a = file.FindTensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->ne, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(a->nbytes, 24u);
  EXPECT_EQ(std::memcmp(a->data, Floats(6).data(), 24), 0);
  const GgufTensor* q4 = file.FindTensor("q4");
  ASSERT_NE(q4, nullptr);
  EXPECT_EQ(q4->type, GgmlType::kQ4_0);
  EXPECT_EQ(q4->nbytes, 36u);
  EXPECT_EQ(q4->offset % 64, 0u);
  for (const GgufTensor& t : file.tensors()) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 64, 0u) << t.name;
  }
  std::filesystem::remove(path);
}

TEST(Gguf, WriterRejectsBadTensors) {
  GgufWriter w;
  EXPECT_NE(w.AddTensor("", GgmlType::kF32, {1}, Floats(1)).message().find("1..63"),
            std::string::npos);
  EXPECT_NE(w.AddTensor("x", GgmlType::kQ8_0, {31}, std::vector<uint8_t>(34))
                .message()
                .find("not whole q8_0 blocks"),
            std::string::npos);
  EXPECT_NE(w.AddTensor("x", GgmlType::kF32, {4}, Floats(3)).message().find("needs 16 bytes"),
            std::string::npos);
  ASSERT_TRUE(w.AddTensor("x", GgmlType::kF32, {1}, Floats(1)).ok());
  EXPECT_NE(w.AddTensor("x", GgmlType::kF32, {1}, Floats(1)).message().find("twice"),
            std::string::npos);
  w.SetUInt32("general.alignment", 48);
  EXPECT_FALSE(w.Serialize().ok());
}

// Offsets of fields in SampleBytes(), found by walking the header the way the format does.
struct Layout {
  size_t n_tensors = 8, n_kv = 16, first_key = 24;
  size_t first_tensor_info = 0;  // name length of tensor "a"
};

Layout Find(const std::vector<uint8_t>& b) {
  Layout l;
  // Tensor "a" info starts with u64 len 1 then 'a' then u32 n_dims 2.
  for (size_t i = 24; i + 13 < b.size(); ++i) {
    uint64_t len;
    uint32_t dims;
    std::memcpy(&len, &b[i], 8);
    std::memcpy(&dims, &b[i + 9], 4);
    if (len == 1 && b[i + 8] == 'a' && dims == 2) {
      l.first_tensor_info = i;
      break;
    }
  }
  return l;
}

template <class T>
void Poke(std::vector<uint8_t>& b, size_t at, T v) {
  std::memcpy(&b[at], &v, sizeof(T));
}

void ExpectRejected(const std::vector<uint8_t>& b, const std::string& needle) {
  auto f = GgufFile::Parse(b);
  ASSERT_FALSE(f.ok()) << "accepted; wanted: " << needle;
  EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find(needle), std::string::npos) << f.status();
}

TEST(Gguf, HostileHeadersAreRejectedWithTheReason) {
  const std::vector<uint8_t> good = SampleBytes();
  ASSERT_TRUE(GgufFile::Parse(good).ok());
  const Layout l = Find(good);
  ASSERT_GT(l.first_tensor_info, 0u);
  const size_t dims = l.first_tensor_info + 9;  // u32 n_dims of "a"
  const size_t ne0 = dims + 4;                  // u64 ne[0]
  const size_t type = ne0 + 16;                 // u32 type (after ne[0], ne[1])
  const size_t offset = type + 4;               // u64 offset

  auto mutate = [&](auto&& fn, const std::string& needle) {
    std::vector<uint8_t> b = good;
    fn(b);
    ExpectRejected(b, needle);
  };
  mutate([](auto& b) { b[0] = 'X'; }, "magic");
  mutate([](auto& b) { Poke<uint32_t>(b, 4, 0x03000000); }, "big-endian");
  mutate([](auto& b) { Poke<uint32_t>(b, 4, 4); }, "version 4");
  mutate([&](auto& b) { Poke<uint64_t>(b, l.n_kv, uint64_t{1} << 60); }, "cannot fit");
  mutate([&](auto& b) { Poke<uint64_t>(b, l.n_tensors, uint64_t{1} << 40); }, "cannot fit");
  mutate([&](auto& b) { Poke<uint64_t>(b, l.first_key, uint64_t{1} << 50); }, "runs past the end");
  mutate([&](auto& b) { Poke<uint64_t>(b, l.first_key, 0); }, "empty metadata key");
  mutate([&](auto& b) { Poke<uint32_t>(b, dims, 5); }, "5 dimensions");
  mutate([&](auto& b) { Poke<uint64_t>(b, ne0, 0); }, "dimension 0 is 0");
  mutate([&](auto& b) { Poke<uint64_t>(b, ne0, uint64_t{1} << 62); }, "overflows");
  mutate([&](auto& b) { Poke<uint32_t>(b, type, 99); }, "type 99");
  mutate([&](auto& b) { Poke<uint32_t>(b, type, 8); }, "not a whole number of q8_0 blocks");
  mutate([&](auto& b) { Poke<uint64_t>(b, offset, 4); }, "not a multiple of the alignment");
  mutate([&](auto& b) { Poke<uint64_t>(b, offset, uint64_t{1} << 40); }, "runs past the end");
  mutate([&](auto& b) { Poke<uint64_t>(b, offset, 32); }, "overlap");
  mutate([&](auto& b) { b.resize(b.size() - 40); }, "truncated");
}

TEST(Gguf, BadValuesAreRejected) {
  auto with = [](const std::string& key, GgufValue v) {
    GgufWriter w;
    w.Set(key, std::move(v));
    return *w.Serialize();
  };
  // Layout of a one-entry file: header (24 bytes), key length (8), "k", value type (4), value.
  std::vector<uint8_t> b = with("k", GgufValue::Bool(true));
  b[37] = 2;  // the bool's byte
  ExpectRejected(b, "bool value 2");
  b = with("k", GgufValue::UInt(GgufValueType::kU32, 1));
  Poke<uint32_t>(b, 24 + 8 + 1, 13);  // the value type
  ExpectRejected(b, "value type 13");
  // The writer refuses a bad alignment, so write another key and rename it in the bytes.
  for (const GgufValue& v :
       {GgufValue::UInt(GgufValueType::kU64, 32), GgufValue::UInt(GgufValueType::kU32, 24)}) {
    b = with("general.alignmenT", v);
    b[24 + 8 + 16] = 't';
    ExpectRejected(b, "general.alignment must be a u32 power of two");
  }
  // Arrays nested 3 deep.
  GgufValue deep = GgufValue::Array(GgufValueType::kU8, {});
  deep = GgufValue::Array(GgufValueType::kArray, {deep});
  GgufWriter w;
  w.Set("k", GgufValue::Array(GgufValueType::kArray, {deep}));
  EXPECT_FALSE(w.Serialize().ok());  // the writer refuses too
  // Duplicate keys.
  b = with("k", GgufValue::UInt(GgufValueType::kU8, 1));
  b.resize(38);              // header + the one entry, no padding
  Poke<uint64_t>(b, 16, 2);  // claim two entries, then append the same one again
  b.insert(b.end(), b.begin() + 24, b.begin() + 38);
  ExpectRejected(b, "appears twice");
}

TEST(Gguf, EveryTruncationIsRejectedCleanly) {
  const std::vector<uint8_t> good = SampleBytes();
  int accepted = 0;
  for (size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> prefix(good.begin(), good.begin() + n);
    auto f = GgufFile::Parse(prefix);
    if (f.ok()) {
      ++accepted;  // only cuts inside the final padding can still hold every tensor
      for (const GgufTensor& t : (*f)->tensors()) {
        ASSERT_LE(t.data + t.nbytes, prefix.data() + prefix.size());
      }
    }
  }
  EXPECT_LT(accepted, 32);
}

TEST(Gguf, RandomMutationsNeverCrash) {
  const std::vector<uint8_t> good = SampleBytes();
  std::mt19937 rng(1);
  int rejected = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<uint8_t> b = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t at = rng() % b.size();
      b[at] = rng() % 3 == 0 ? 0xFF : static_cast<uint8_t>(rng());
    }
    auto f = GgufFile::Parse(b);
    if (!f.ok()) {
      ++rejected;
      EXPECT_FALSE(f.status().message().empty());
      continue;
    }
    for (const GgufTensor& t : (*f)->tensors()) {
      ASSERT_GE(t.data, b.data());
      ASSERT_LE(t.data + t.nbytes, b.data() + b.size());
    }
  }
  EXPECT_GT(rejected, 1000);  // the mutations do hit the checks
}

TEST(Gguf, OpenReportsFileSystemErrors) {
  EXPECT_EQ(GgufFile::Open("/nonexistent/x.gguf").status().code(), StatusCode::kNotFound);
  auto dir = GgufFile::Open(::testing::TempDir());
  EXPECT_NE(dir.status().message().find("not a regular file"), std::string::npos);
  const std::string empty = ::testing::TempDir() + "/empty.gguf";
  FILE* f = std::fopen(empty.c_str(), "w");
  std::fclose(f);
  auto e = GgufFile::Open(empty);
  EXPECT_NE(e.status().message().find("truncated while reading the magic"), std::string::npos)
      << e.status();
  std::filesystem::remove(empty);
}

}  // namespace
}  // namespace keel::infer

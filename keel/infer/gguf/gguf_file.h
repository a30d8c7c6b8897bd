// GGUF v3 (and v2) files: a validating, mmap-based reader and an atomic writer, byte-compatible
// with llama.cpp (layout in docs/formats/gguf.md).
//
//   KEEL_ASSIGN_OR_RETURN(auto file, GgufFile::Open("model.gguf"));
//   KEEL_ASSIGN_OR_RETURN(uint64_t layers, file->GetUInt("llama.block_count"));
//   const GgufTensor* t = file->FindTensor("token_embd.weight");  // t->data: in the mapping
//
//   GgufWriter w;
//   w.SetString("general.architecture", "llama");
//   w.AddTensor("output_norm.weight", GgmlType::kF32, {512}, bytes);
//   KEEL_RETURN_IF_ERROR(w.Write("out.gguf"));
//
// The reader trusts nothing: every count, length, type code, dimension, offset and alignment
// is checked against the file before use, so a truncated, corrupt or hostile file gets an
// INVALID_ARGUMENT naming what is wrong and where — never a crash or an unbounded allocation.
// Thread-safety: a GgufFile is immutable after Open (safe to share); a GgufWriter is not.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keel/common/status.h"
#include "keel/infer/gguf/ggml_types.h"

namespace keel::infer {

enum class GgufValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

// One metadata value. Integers keep their signedness: unsigned types (and bool) in `u`,
// signed in `i`; floats in `f`; arrays hold their elements in `items` (all of `elem_type`).
struct GgufValue {
  GgufValueType type = GgufValueType::kU8;
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  std::string str;
  GgufValueType elem_type = GgufValueType::kU8;
  std::vector<GgufValue> items;

  static GgufValue UInt(GgufValueType t, uint64_t v);
  static GgufValue Int(GgufValueType t, int64_t v);
  static GgufValue Float(GgufValueType t, double v);
  static GgufValue Bool(bool v);
  static GgufValue String(std::string v);
  static GgufValue Array(GgufValueType elem, std::vector<GgufValue> items);
};

std::string_view GgufValueTypeName(GgufValueType t);

struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::kF32;
  std::vector<int64_t> ne;  // ne[0] is the contiguous row length
  uint64_t offset = 0;      // from the start of the data section
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;  // into the mapping

  int64_t numel() const;
  int64_t rows() const { return ne.empty() ? 0 : numel() / ne[0]; }
};

class GgufFile {
 public:
  // Maps and validates `path`. NOT_FOUND / PERMISSION_DENIED from the file system;
  // INVALID_ARGUMENT for anything wrong inside, with the byte offset.
  static StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Validates an in-memory image (the fuzzer's entry point). `bytes` must outlive the result.
  static StatusOr<std::unique_ptr<GgufFile>> Parse(std::span<const uint8_t> bytes);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }

  const GgufValue* Find(std::string_view key) const;
  const GgufTensor* FindTensor(std::string_view name) const;
  // Typed getters: NOT_FOUND if absent, INVALID_ARGUMENT if the value has another type (or,
  // for integers, does not fit). Any integer type converts to any other that holds the value.
  StatusOr<uint64_t> GetUInt(std::string_view key) const;
  StatusOr<int64_t> GetInt(std::string_view key) const;
  StatusOr<double> GetFloat(std::string_view key) const;  // f32, f64 or an integer
  StatusOr<std::string> GetString(std::string_view key) const;
  StatusOr<bool> GetBool(std::string_view key) const;
  // An array of `elem`; INVALID_ARGUMENT if the value is not an array of that type.
  StatusOr<const GgufValue*> GetArray(std::string_view key, GgufValueType elem) const;

 private:
  GgufFile() = default;
  Status ParseAll(std::span<const uint8_t> bytes);

  void* map_ = nullptr;
  size_t map_size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t, std::less<>> key_index_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

class GgufWriter {
 public:
  // Keys keep insertion order; setting a key again replaces its value in place.
  void Set(const std::string& key, GgufValue value);
  void SetUInt32(const std::string& key, uint32_t v);
  void SetFloat32(const std::string& key, float v);
  void SetString(const std::string& key, std::string v);
  void SetBool(const std::string& key, bool v);
  void SetStringArray(const std::string& key, const std::vector<std::string>& v);

  // `data` must hold exactly the bytes the type and shape need (copied). INVALID_ARGUMENT for
  // a bad name (empty, > 63 bytes, repeated), shape or size.
  Status AddTensor(const std::string& name, GgmlType type, std::vector<int64_t> ne,
                   std::span<const uint8_t> data);

  // Writes version 3 to `path` atomically (temporary file + fsync + rename); the alignment is
  // general.alignment if set (u32 power of two), else 32.
  Status Write(const std::string& path) const;
  // The same bytes, in memory.
  StatusOr<std::vector<uint8_t>> Serialize() const;

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    std::vector<uint8_t> data;
  };
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace keel::infer

// ggml tensor types as GGUF files store them: type codes, block sizes and bytes per block,
// with the same numbering and byte layouts as llama.cpp so files are interchangeable
// (docs/formats/gguf.md).
// Thread-safety: constants and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace keel::infer {

enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

struct GgmlTypeTraits {
  std::string_view name;  // "f32", "q8_0", ...
  int64_t block_size;     // elements per block (1 for plain types)
  int64_t bytes_per_block;
  bool supported;  // keel can compute with it (F32, F16, BF16, Q8_0, Q4_0)
};

// Traits of a type code read from a file; nullopt for codes ggml does not define.
std::optional<GgmlTypeTraits> TraitsOf(uint32_t type);
// "q4_0" -> kQ4_0 (any defined type).
std::optional<GgmlType> ParseGgmlType(std::string_view name);

}  // namespace keel::infer

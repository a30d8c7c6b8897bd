// The ggml type table (numbering and block layouts as llama.cpp's ggml.c).
#include "keel/infer/gguf/ggml_types.h"

#include <array>

namespace keel::infer {
namespace {

struct Entry {
  uint32_t code;
  GgmlTypeTraits traits;
};

constexpr std::array<Entry, 20> kTypes = {{
    {0, {"f32", 1, 4, true}},        {1, {"f16", 1, 2, true}},
    {2, {"q4_0", 32, 18, true}},     {3, {"q4_1", 32, 20, false}},
    {6, {"q5_0", 32, 22, false}},    {7, {"q5_1", 32, 24, false}},
    {8, {"q8_0", 32, 34, true}},     {9, {"q8_1", 32, 36, false}},
    {10, {"q2_k", 256, 84, false}},  {11, {"q3_k", 256, 110, false}},
    {12, {"q4_k", 256, 144, false}}, {13, {"q5_k", 256, 176, false}},
    {14, {"q6_k", 256, 210, false}}, {15, {"q8_k", 256, 292, false}},
    {24, {"i8", 1, 1, false}},       {25, {"i16", 1, 2, false}},
    {26, {"i32", 1, 4, false}},      {27, {"i64", 1, 8, false}},
    {28, {"f64", 1, 8, false}},      {30, {"bf16", 1, 2, true}},
}};

}  // namespace

std::optional<GgmlTypeTraits> TraitsOf(uint32_t type) {
  for (const Entry& e : kTypes) {
    if (e.code == type) return e.traits;
  }
  return std::nullopt;
}

std::optional<GgmlType> ParseGgmlType(std::string_view name) {
  for (const Entry& e : kTypes) {
    if (e.traits.name == name) return static_cast<GgmlType>(e.code);
  }
  return std::nullopt;
}

}  // namespace keel::infer

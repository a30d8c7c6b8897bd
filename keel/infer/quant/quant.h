// Weight formats of GGUF tensors keel computes with: conversion of rows between float32 and
// F16, BF16, Q8_0 and Q4_0, with the byte layouts and rounding of llama.cpp's reference
// quantizers (ggml-quants.c "_ref" functions), so files are interchangeable:
//   Q8_0 block (34 bytes, 32 weights): fp16 d, int8 q[32];        x = d * q
//   Q4_0 block (18 bytes, 32 weights): fp16 d, uint8 qs[16];      byte j: weight j in the low
//        nibble, weight j+16 in the high nibble;                  x = (q - 8) * d
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>

#include "keel/common/status.h"
#include "keel/infer/gguf/ggml_types.h"

namespace keel::infer {

inline constexpr int64_t kQ8_0Block = 32;
inline constexpr int64_t kQ4_0Block = 32;

struct BlockQ8_0 {
  uint16_t d;  // fp16
  int8_t qs[kQ8_0Block];
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ4_0 {
  uint16_t d;  // fp16
  uint8_t qs[kQ4_0Block / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

// Bytes that `n` elements of `type` take; INVALID_ARGUMENT if `type` is not one keel computes
// with or `n` is not a whole number of blocks.
StatusOr<int64_t> RowBytes(GgmlType type, int64_t n);

// `src` (n float32) -> `dst` (RowBytes(type, n) bytes).
Status QuantizeRow(GgmlType type, std::span<const float> src, std::span<uint8_t> dst);
// `src` (RowBytes(type, n) bytes) -> `dst` (n float32).
Status DequantizeRow(GgmlType type, std::span<const uint8_t> src, std::span<float> dst);

}  // namespace keel::infer

// Reference quantizers and dequantizers (scalar; the matmul kernels work on blocks directly).
#include "keel/infer/quant/quant.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "keel/common/bfloat16.h"
#include "keel/common/float16.h"

namespace keel::infer {
namespace {

void QuantizeQ8_0(const float* x, BlockQ8_0* y) {
  float amax = 0;
  for (int64_t j = 0; j < kQ8_0Block; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  y->d = FloatToFloat16(d);
  for (int64_t j = 0; j < kQ8_0Block; ++j) y->qs[j] = static_cast<int8_t>(std::round(x[j] * id));
}

void QuantizeQ4_0(const float* x, BlockQ4_0* y) {
  float amax = 0, max = 0;  // the value of largest magnitude, with its sign
  for (int64_t j = 0; j < kQ4_0Block; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  y->d = FloatToFloat16(d);
  for (int64_t j = 0; j < kQ4_0Block / 2; ++j) {
    const int lo = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
    const int hi =
        std::min(15, static_cast<int>(static_cast<int8_t>(x[j + kQ4_0Block / 2] * id + 8.5f)));
    y->qs[j] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

}  // namespace

StatusOr<int64_t> RowBytes(GgmlType type, int64_t n) {
  const std::optional<GgmlTypeTraits> t = TraitsOf(static_cast<uint32_t>(type));
  if (!t || !t->supported) {
    return InvalidArgumentError(
        fmt::format("weight type {} is not supported (keel computes "
                    "with f32, f16, bf16, q8_0, q4_0)",
                    t ? t->name : "unknown"));
  }
  if (n < 0 || n % t->block_size != 0) {
    return InvalidArgumentError(
        fmt::format("{} elements are not whole {} blocks of {}", n, t->name, t->block_size));
  }
  return n / t->block_size * t->bytes_per_block;
}

Status QuantizeRow(GgmlType type, std::span<const float> src, std::span<uint8_t> dst) {
  const int64_t n = static_cast<int64_t>(src.size());
  KEEL_ASSIGN_OR_RETURN(int64_t bytes, RowBytes(type, n));
  if (static_cast<int64_t>(dst.size()) != bytes) {
    return InvalidArgumentError(
        fmt::format("destination has {} bytes, needs {}", dst.size(), bytes));
  }
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst.data(), src.data(), bytes);
      break;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = FloatToFloat16(src[i]);
        std::memcpy(dst.data() + 2 * i, &h, 2);
      }
      break;
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = FloatToBFloat16(src[i]);
        std::memcpy(dst.data() + 2 * i, &h, 2);
      }
      break;
    case GgmlType::kQ8_0:
      for (int64_t b = 0; b < n / kQ8_0Block; ++b) {
        BlockQ8_0 block;
        QuantizeQ8_0(src.data() + b * kQ8_0Block, &block);
        std::memcpy(dst.data() + b * sizeof(block), &block, sizeof(block));
      }
      break;
    case GgmlType::kQ4_0:
      for (int64_t b = 0; b < n / kQ4_0Block; ++b) {
        BlockQ4_0 block;
        QuantizeQ4_0(src.data() + b * kQ4_0Block, &block);
        std::memcpy(dst.data() + b * sizeof(block), &block, sizeof(block));
      }
      break;
    default:
      return InvalidArgumentError("unsupported weight type");
  }
  return OkStatus();
}

Status DequantizeRow(GgmlType type, std::span<const uint8_t> src, std::span<float> dst) {
  const int64_t n = static_cast<int64_t>(dst.size());
  KEEL_ASSIGN_OR_RETURN(int64_t bytes, RowBytes(type, n));
  if (static_cast<int64_t>(src.size()) != bytes) {
    return InvalidArgumentError(
        fmt::format("source has {} bytes, {} elements need {}", src.size(), n, bytes));
  }
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst.data(), src.data(), bytes);
      break;
    case GgmlType::kF16:
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src.data() + 2 * i, 2);
        dst[i] = type == GgmlType::kF16 ? Float16ToFloat(h) : BFloat16ToFloat(h);
      }
      break;
    case GgmlType::kQ8_0:
      for (int64_t b = 0; b < n / kQ8_0Block; ++b) {
        BlockQ8_0 block;
        std::memcpy(&block, src.data() + b * sizeof(block), sizeof(block));
        const float d = Float16ToFloat(block.d);
        for (int64_t j = 0; j < kQ8_0Block; ++j) dst[b * kQ8_0Block + j] = d * block.qs[j];
      }
      break;
    case GgmlType::kQ4_0:
      for (int64_t b = 0; b < n / kQ4_0Block; ++b) {
        BlockQ4_0 block;
        std::memcpy(&block, src.data() + b * sizeof(block), sizeof(block));
        const float d = Float16ToFloat(block.d);
        for (int64_t j = 0; j < kQ4_0Block / 2; ++j) {
          dst[b * kQ4_0Block + j] = static_cast<float>((block.qs[j] & 0x0F) - 8) * d;
          dst[b * kQ4_0Block + j + kQ4_0Block / 2] = static_cast<float>((block.qs[j] >> 4) - 8) * d;
        }
      }
      break;
    default:
      return InvalidArgumentError("unsupported weight type");
  }
  return OkStatus();
}

}  // namespace keel::infer

// Scalar definitions of the weight-row dot products (dot_row.h) and the activation quantizer:
// what every SIMD variant is tested against.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "keel/common/bfloat16.h"
#include "keel/common/float16.h"
#include "keel/infer/kernels/dot_row.h"
#include "keel/infer/quant/quant.h"

namespace keel::infer {

void QuantizeActivations(const float* x, int64_t n, ActBlock* out) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* xb = x + b * 32;
    float amax = 0;
    for (int64_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    ActBlock& o = out[b];
    o.d = d;
    o.sum = 0;
    for (int64_t j = 0; j < 32; ++j) {
      o.q[j] = static_cast<int8_t>(std::round(xb[j] * id));
      o.sum += o.q[j];
    }
  }
}

bool HasActivationPath(GgmlType type) { return type == GgmlType::kQ8_0 || type == GgmlType::kQ4_0; }

namespace reference {
float DotRow(GgmlType type, const uint8_t* row, const float* x, int64_t n) {
  float sum = 0;
  switch (type) {
    case GgmlType::kF32: {
      const float* f = reinterpret_cast<const float*>(row);
      for (int64_t j = 0; j < n; ++j) sum += f[j] * x[j];
      break;
    }
    case GgmlType::kF16:
    case GgmlType::kBF16: {
      const bool half = type == GgmlType::kF16;
      for (int64_t j = 0; j < n; ++j) {
        uint16_t h;
        std::memcpy(&h, row + 2 * j, 2);
        sum += (half ? Float16ToFloat(h) : BFloat16ToFloat(h)) * x[j];
      }
      break;
    }
    case GgmlType::kQ8_0:
      for (int64_t b = 0; b < n / kQ8_0Block; ++b) {
        BlockQ8_0 blk;
        std::memcpy(&blk, row + b * sizeof(BlockQ8_0), sizeof(blk));
        const float* xb = x + b * kQ8_0Block;
        float s = 0;
        for (int64_t j = 0; j < kQ8_0Block; ++j) s += static_cast<float>(blk.qs[j]) * xb[j];
        sum += Float16ToFloat(blk.d) * s;
      }
      break;
    case GgmlType::kQ4_0:
      for (int64_t b = 0; b < n / kQ4_0Block; ++b) {
        BlockQ4_0 blk;
        std::memcpy(&blk, row + b * sizeof(BlockQ4_0), sizeof(blk));
        const float* xb = x + b * kQ4_0Block;
        float s = 0;
        for (int64_t j = 0; j < kQ4_0Block / 2; ++j) {
          s += static_cast<float>((blk.qs[j] & 0x0F) - 8) * xb[j];
          s += static_cast<float>((blk.qs[j] >> 4) - 8) * xb[j + kQ4_0Block / 2];
        }
        sum += Float16ToFloat(blk.d) * s;
      }
      break;
    default:
      break;  // rejected when the model is loaded
  }
  return sum;
}
}  // namespace reference

float reference::DotRowQ(GgmlType type, const uint8_t* row, const ActBlock* x, int64_t n) {
  float sum = 0;
  for (int64_t b = 0; b < n / 32; ++b) {
    int32_t dot = 0;
    uint16_t d;
    if (type == GgmlType::kQ8_0) {
      BlockQ8_0 blk;
      std::memcpy(&blk, row + b * sizeof(BlockQ8_0), sizeof(blk));
      for (int64_t j = 0; j < 32; ++j) dot += int32_t{blk.qs[j]} * x[b].q[j];
      d = blk.d;
    } else if (type == GgmlType::kQ4_0) {
      BlockQ4_0 blk;
      std::memcpy(&blk, row + b * sizeof(BlockQ4_0), sizeof(blk));
      for (int64_t j = 0; j < 16; ++j) {
        dot += ((blk.qs[j] & 0x0F) - 8) * x[b].q[j];
        dot += ((blk.qs[j] >> 4) - 8) * x[b].q[j + 16];
      }
      d = blk.d;
    } else {
      return 0;  // no integer path (HasActivationPath)
    }
    sum += Float16ToFloat(d) * x[b].d * static_cast<float>(dot);
  }
  return sum;
}

}  // namespace keel::infer

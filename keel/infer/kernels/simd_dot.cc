// Highway variants of the weight-row dot product (dot_row.h), compiled for every x86 target and
// dispatched at run time: weights are widened to float32 in registers (F16 and BF16 by
// conversion, Q8_0 and Q4_0 per block, scaled by the block's d) and multiplied into float32
// accumulators with FMA. Rows whose length is not a multiple of the vector width take the
// reference path (GGUF rows of quantized types are whole 32-element blocks).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "keel/infer/kernels/simd_dot.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target.h must come first.
#include <hwy/highway.h>

#include <cstring>

#include "keel/common/float16.h"
#include "keel/infer/kernels/dot_row.h"
#include "keel/infer/quant/quant.h"

HWY_BEFORE_NAMESPACE();
namespace keel::infer::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;

float DotF32(const uint8_t* row, const float* x, int64_t n) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const float* w = reinterpret_cast<const float*>(row);
  auto acc0 = hn::Zero(d), acc1 = hn::Zero(d);
  int64_t j = 0;
  for (; j + 2 * lanes <= n; j += 2 * lanes) {
    acc0 = hn::MulAdd(hn::LoadU(d, w + j), hn::LoadU(d, x + j), acc0);
    acc1 = hn::MulAdd(hn::LoadU(d, w + j + lanes), hn::LoadU(d, x + j + lanes), acc1);
  }
  for (; j + lanes <= n; j += lanes)
    acc0 = hn::MulAdd(hn::LoadU(d, w + j), hn::LoadU(d, x + j), acc0);
  float sum = hn::GetLane(hn::SumOfLanes(d, hn::Add(acc0, acc1)));
  for (; j < n; ++j) sum += w[j] * x[j];
  return sum;
}

float DotF16(const uint8_t* row, const float* x, int64_t n) {
  const DF d;
  const hn::Rebind<hwy::float16_t, DF> dh;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto* w = reinterpret_cast<const hwy::float16_t*>(row);
  auto acc = hn::Zero(d);
  int64_t j = 0;
  for (; j + lanes <= n; j += lanes) {
    acc = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, w + j)), hn::LoadU(d, x + j), acc);
  }
  float sum = hn::GetLane(hn::SumOfLanes(d, acc));
  for (; j < n; ++j) {
    uint16_t h;
    std::memcpy(&h, row + 2 * j, 2);
    sum += Float16ToFloat(h) * x[j];
  }
  return sum;
}

float DotBF16(const uint8_t* row, const float* x, int64_t n) {
  const DF d;
  const hn::RebindToUnsigned<DF> du32;
  const hn::Rebind<uint16_t, DF> du16;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto* w = reinterpret_cast<const uint16_t*>(row);
  auto acc = hn::Zero(d);
  int64_t j = 0;
  for (; j + lanes <= n; j += lanes) {
    const auto wf = hn::BitCast(d, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, w + j))));
    acc = hn::MulAdd(wf, hn::LoadU(d, x + j), acc);
  }
  float sum = hn::GetLane(hn::SumOfLanes(d, acc));
  for (; j < n; ++j) {
    uint16_t b;
    std::memcpy(&b, row + 2 * j, 2);
    uint32_t u = uint32_t{b} << 16;
    float f;
    std::memcpy(&f, &u, 4);
    sum += f * x[j];
  }
  return sum;
}

// Quantized blocks are 32 weights; vectors of at most 16 floats tile a block exactly.
using DQ = hn::CappedTag<float, 16>;

float DotQ8_0(const uint8_t* row, const float* x, int64_t n) {
  const DQ d;
  const hn::RebindToSigned<DQ> di32;
  const hn::Rebind<int8_t, DQ> di8;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  auto acc = hn::Zero(d);
  for (int64_t b = 0; b < n / kQ8_0Block; ++b) {
    const uint8_t* blk = row + b * sizeof(BlockQ8_0);
    uint16_t dh;
    std::memcpy(&dh, blk, 2);
    const auto scale = hn::Set(d, Float16ToFloat(dh));
    const auto* qs = reinterpret_cast<const int8_t*>(blk + 2);
    const float* xb = x + b * kQ8_0Block;
    auto block = hn::Zero(d);
    for (int64_t j = 0; j < kQ8_0Block; j += lanes) {
      const auto q = hn::ConvertTo(d, hn::PromoteTo(di32, hn::LoadU(di8, qs + j)));
      block = hn::MulAdd(q, hn::LoadU(d, xb + j), block);
    }
    acc = hn::MulAdd(scale, block, acc);
  }
  return hn::GetLane(hn::SumOfLanes(d, acc));
}

float DotQ4_0(const uint8_t* row, const float* x, int64_t n) {
  const DQ d;
  const hn::RebindToSigned<DQ> di32;
  const hn::Rebind<uint8_t, DQ> du8;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto low_mask = hn::Set(di32, 0x0F), eight = hn::Set(di32, 8);
  auto acc = hn::Zero(d);
  for (int64_t b = 0; b < n / kQ4_0Block; ++b) {
    const uint8_t* blk = row + b * sizeof(BlockQ4_0);
    uint16_t dh;
    std::memcpy(&dh, blk, 2);
    const auto scale = hn::Set(d, Float16ToFloat(dh));
    const uint8_t* qs = blk + 2;
    const float* xb = x + b * kQ4_0Block;
    auto block = hn::Zero(d);
    for (int64_t j = 0; j < kQ4_0Block / 2; j += lanes) {
      const auto bytes = hn::PromoteTo(di32, hn::LoadU(du8, qs + j));
      const auto lo = hn::ConvertTo(d, hn::Sub(hn::And(bytes, low_mask), eight));
      const auto hi = hn::ConvertTo(d, hn::Sub(hn::ShiftRight<4>(bytes), eight));
      block = hn::MulAdd(lo, hn::LoadU(d, xb + j), block);
      block = hn::MulAdd(hi, hn::LoadU(d, xb + j + kQ4_0Block / 2), block);
    }
    acc = hn::MulAdd(scale, block, acc);
  }
  return hn::GetLane(hn::SumOfLanes(d, acc));
}

float DotRowImpl(GgmlType type, const uint8_t* row, const float* x, int64_t n) {
  switch (type) {
    case GgmlType::kF32:
      return DotF32(row, x, n);
    case GgmlType::kF16:
      return DotF16(row, x, n);
    case GgmlType::kBF16:
      return DotBF16(row, x, n);
    case GgmlType::kQ8_0:
      return DotQ8_0(row, x, n);
    case GgmlType::kQ4_0:
      return DotQ4_0(row, x, n);
    default:
      return reference::DotRow(type, row, x, n);
  }
}

int64_t TargetId() { return HWY_TARGET; }

}  // namespace keel::infer::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace keel::infer::simd {
HWY_EXPORT(DotRowImpl);
HWY_EXPORT(TargetId);

float DotRow(GgmlType type, const uint8_t* row, const float* x, int64_t n) {
  return HWY_DYNAMIC_DISPATCH(DotRowImpl)(type, row, x, n);
}
const char* TargetName() { return hwy::TargetName(HWY_DYNAMIC_DISPATCH(TargetId)()); }
}  // namespace keel::infer::simd
#endif  // HWY_ONCE

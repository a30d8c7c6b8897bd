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

// One weight row against four activation rows (prefill): each weight vector is loaded and
// widened once and used four times. x1..x3 may alias x0 (fewer rows: results discarded).
template <class D, class LoadW>
HWY_INLINE void Dot4Plain(D d, int64_t n, const float* const* x, float* out, LoadW load_w) {
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  int64_t j = 0;
  for (; j + lanes <= n; j += lanes) {
    const auto w = load_w(j);
    a0 = hn::MulAdd(w, hn::LoadU(d, x[0] + j), a0);
    a1 = hn::MulAdd(w, hn::LoadU(d, x[1] + j), a1);
    a2 = hn::MulAdd(w, hn::LoadU(d, x[2] + j), a2);
    a3 = hn::MulAdd(w, hn::LoadU(d, x[3] + j), a3);
  }
  out[0] = hn::GetLane(hn::SumOfLanes(d, a0));
  out[1] = hn::GetLane(hn::SumOfLanes(d, a1));
  out[2] = hn::GetLane(hn::SumOfLanes(d, a2));
  out[3] = hn::GetLane(hn::SumOfLanes(d, a3));
}

// Quantized rows: `widen(block, j)` gives weights j..j+lanes of a block as floats (unscaled).
template <class D, class Widen>
HWY_INLINE void Dot4Blocks(D d, int64_t n, int64_t block_bytes, const uint8_t* row,
                           const float* const* x, float* out, Widen widen) {
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* blk = row + b * block_bytes;
    uint16_t dh;
    std::memcpy(&dh, blk, 2);
    const auto scale = hn::Set(d, Float16ToFloat(dh));
    auto b0 = hn::Zero(d), b1 = hn::Zero(d), b2 = hn::Zero(d), b3 = hn::Zero(d);
    for (int64_t j = 0; j < 32; j += lanes) {
      const auto w = widen(blk + 2, j);
      const int64_t at = b * 32 + j;
      b0 = hn::MulAdd(w, hn::LoadU(d, x[0] + at), b0);
      b1 = hn::MulAdd(w, hn::LoadU(d, x[1] + at), b1);
      b2 = hn::MulAdd(w, hn::LoadU(d, x[2] + at), b2);
      b3 = hn::MulAdd(w, hn::LoadU(d, x[3] + at), b3);
    }
    a0 = hn::MulAdd(scale, b0, a0);
    a1 = hn::MulAdd(scale, b1, a1);
    a2 = hn::MulAdd(scale, b2, a2);
    a3 = hn::MulAdd(scale, b3, a3);
  }
  out[0] = hn::GetLane(hn::SumOfLanes(d, a0));
  out[1] = hn::GetLane(hn::SumOfLanes(d, a1));
  out[2] = hn::GetLane(hn::SumOfLanes(d, a2));
  out[3] = hn::GetLane(hn::SumOfLanes(d, a3));
}

// Returns false when the row must go through DotRow one activation at a time (lengths that
// are not whole vectors, other types).
bool Dot4Impl(GgmlType type, const uint8_t* row, const float* const* x, int64_t n, float* out) {
  const DQ d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  if (n % 32 != 0 || 32 % lanes != 0) return false;
  const hn::RebindToSigned<DQ> di32;
  switch (type) {
    case GgmlType::kF32: {
      const float* w = reinterpret_cast<const float*>(row);
      Dot4Plain(d, n, x, out, [&](int64_t j) { return hn::LoadU(d, w + j); });
      return true;
    }
    case GgmlType::kF16: {
      const hn::Rebind<hwy::float16_t, DQ> dh;
      const auto* w = reinterpret_cast<const hwy::float16_t*>(row);
      Dot4Plain(d, n, x, out, [&](int64_t j) { return hn::PromoteTo(d, hn::LoadU(dh, w + j)); });
      return true;
    }
    case GgmlType::kBF16: {
      const hn::RebindToUnsigned<DQ> du32;
      const hn::Rebind<uint16_t, DQ> du16;
      const auto* w = reinterpret_cast<const uint16_t*>(row);
      Dot4Plain(d, n, x, out, [&](int64_t j) {
        return hn::BitCast(d, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, w + j))));
      });
      return true;
    }
    case GgmlType::kQ8_0: {
      const hn::Rebind<int8_t, DQ> di8;
      Dot4Blocks(d, n, sizeof(BlockQ8_0), row, x, out, [&](const uint8_t* qs, int64_t j) {
        return hn::ConvertTo(
            d, hn::PromoteTo(di32, hn::LoadU(di8, reinterpret_cast<const int8_t*>(qs) + j)));
      });
      return true;
    }
    case GgmlType::kQ4_0: {
      const hn::Rebind<uint8_t, DQ> du8;
      const auto low_mask = hn::Set(di32, 0x0F), eight = hn::Set(di32, 8);
      Dot4Blocks(d, n, sizeof(BlockQ4_0), row, x, out, [&](const uint8_t* qs, int64_t j) {
        // Weights 0..15 are the low nibbles of bytes 0..15, weights 16..31 the high nibbles.
        const int64_t byte = j % 16;
        const auto bytes = hn::PromoteTo(di32, hn::LoadU(du8, qs + byte));
        const auto q = j < 16 ? hn::And(bytes, low_mask) : hn::ShiftRight<4>(bytes);
        return hn::ConvertTo(d, hn::Sub(q, eight));
      });
      return true;
    }
    default:
      return false;
  }
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

void AxpyImpl(float a, const float* x, float* y, int64_t n) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto va = hn::Set(d, a);
  int64_t j = 0;
  for (; j + lanes <= n; j += lanes) {
    hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + j), hn::LoadU(d, y + j)), d, y + j);
  }
  for (; j < n; ++j) y[j] += a * x[j];
}

int64_t TargetId() { return HWY_TARGET; }

}  // namespace keel::infer::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace keel::infer::simd {
HWY_EXPORT(DotRowImpl);
HWY_EXPORT(Dot4Impl);
HWY_EXPORT(TargetId);
HWY_EXPORT(AxpyImpl);

void Axpy(float a, const float* x, float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(AxpyImpl)(a, x, y, n);
}

void DotRow4(GgmlType type, const uint8_t* row, const float* const* x, int64_t k, int64_t n,
             float* out) {
  if (k == 1) {  // decode: no point widening for rows that are not there
    out[0] = DotRow(type, row, x[0], n);
    return;
  }
  const float* xs[4] = {x[0], x[k > 1 ? 1 : 0], x[k > 2 ? 2 : 0], x[k > 3 ? 3 : 0]};
  float tmp[4];
  if (HWY_DYNAMIC_DISPATCH(Dot4Impl)(type, row, xs, n, tmp)) {
    for (int64_t i = 0; i < k; ++i) out[i] = tmp[i];
    return;
  }
  for (int64_t i = 0; i < k; ++i) out[i] = DotRow(type, row, x[i], n);
}

float DotRow(GgmlType type, const uint8_t* row, const float* x, int64_t n) {
  return HWY_DYNAMIC_DISPATCH(DotRowImpl)(type, row, x, n);
}
const char* TargetName() { return hwy::TargetName(HWY_DYNAMIC_DISPATCH(TargetId)()); }
}  // namespace keel::infer::simd
#endif  // HWY_ONCE

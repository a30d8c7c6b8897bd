// Highway variants of the integer-path dot products (dot_row.h: DotRowsQ): Q8_0 / Q4_0 weight
// rows against activations quantized to 8 bits per block of 32. The product of one weight
// block with one activation block is an exact integer; it is converted to float once and
// scaled by d_w * d_x.
//  - every target: 8-bit values widened to 16 bits and multiplied pairwise into 32-bit sums
//    (pmaddwd on x86);
//  - AVX3_DL (AVX-512 with VNNI, e.g. Ice Lake, Zen 4): one dpbusd multiplies 32 unsigned by
//    32 signed bytes into 8 sums. Q8_0 weights go in as |w| with the activation's sign flipped
//    where w < 0; Q4_0 nibbles (0..15) go in as they are and 8 * sum(q_x) is taken off after.
// Tiles of up to 4 weight rows x 4 activation vectors share loads (4x1 for decode, 4x4 for
// prefill).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "keel/infer/kernels/simd_dot_q.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target.h must come first.
#include <hwy/highway.h>
#include <immintrin.h>

#include <cstring>

#include "keel/common/float16.h"
#include "keel/infer/kernels/dot_row.h"
#include "keel/infer/quant/quant.h"

#if HWY_TARGET == HWY_AVX3_DL
// Outside Highway's target region, with its own target attribute: Highway's AVX3_DL target
// string names AVX-VNNI (the VEX form, which Zen 4 lacks) instead of AVX512-VNNI, and GCC then
// encodes dpbusd as VEX (SIGILL there). Raw intrinsics only: Highway ops would not inline here.
namespace keel::infer::vnni {
#define KEEL_VNNI_ATTR \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")))

template <int R, int C>
KEEL_VNNI_ATTR void TileVnni(GgmlType type, const uint8_t* const* rows, const ActBlock* const* x,
                             int64_t n, float* out) {
  const bool q4 = type == GgmlType::kQ4_0;
  const int64_t block_bytes = q4 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
  __m256 acc[R * C];
  for (auto& a : acc) a = _mm256_setzero_ps();
  const __m128i low = _mm_set1_epi8(0x0F);
  for (int64_t b = 0; b < n / 32; ++b) {
    __m256i xq[C];
    __m256i corr[C];
    for (int c = 0; c < C; ++c) {
      xq[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[c][b].q));
      corr[c] = _mm256_castsi128_si256(_mm_cvtsi32_si128(8 * x[c][b].sum));
    }
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = rows[r] + b * block_bytes;
      uint16_t dh;
      std::memcpy(&dh, blk, 2);
      const float dw = _cvtsh_ss(dh);
      __m256i w;
      if (q4) {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
        w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), low),
                             _mm_and_si128(bytes, low));
      } else {
        w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
      }
      const __m256i wu = q4 ? w : _mm256_abs_epi8(w);
      for (int c = 0; c < C; ++c) {
        __m256i sum;
        if (q4) {
          sum = _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), wu, xq[c]), corr[c]);
        } else {
          sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wu, _mm256_sign_epi8(xq[c], w));
        }
        acc[r * C + c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(dw * x[c][b].d),
                                         acc[r * C + c]);
      }
    }
  }
  for (int i = 0; i < R * C; ++i) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[i]), _mm256_extractf128_ps(acc[i], 1));
    const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
    out[i] = _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
  }
}
#undef KEEL_VNNI_ATTR
}  // namespace keel::infer::vnni
#endif  // HWY_TARGET == HWY_AVX3_DL

HWY_BEFORE_NAMESPACE();
namespace keel::infer::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

inline float BlockScale(const uint8_t* block) {
  uint16_t d;
  std::memcpy(&d, block, 2);
  return Float16ToFloat(d);
}

// R weight rows x C activation vectors; out[r * C + c]. Rows past k_rows / vectors past k_x
// alias valid ones and their results are dropped by the caller.
template <int R, int C>
void TileGeneric(GgmlType type, const uint8_t* const* rows, const ActBlock* const* x, int64_t n,
                 float* out) {
  using D16 = hn::CappedTag<int16_t, 16>;
  const D16 d16;
  const hn::Rebind<int8_t, D16> d8;
  const hn::Rebind<uint8_t, D16> du8;
  const hn::RepartitionToWide<D16> d32;
  const hn::Rebind<float, decltype(d32)> df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d16));
  const bool q4 = type == GgmlType::kQ4_0;
  const int64_t block_bytes = q4 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
  using VF = hn::Vec<decltype(df)>;
  VF acc[R * C];
  float correction[R * C] = {};  // Q4_0: sum of d_w * d_x * sum(q_x), times 8 at the end
  for (auto& a : acc) a = hn::Zero(df);
  const auto low = hn::Set(d16, 0x0F);
  for (int64_t b = 0; b < n / 32; ++b) {
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = rows[r] + b * block_bytes;
      const float dw = BlockScale(blk);
      for (int c = 0; c < C; ++c) {
        const ActBlock& xb = x[c][b];
        auto sum = hn::Zero(d32), unused = hn::Zero(d32);
        if (q4) {
          for (int64_t j = 0; j < 16; j += lanes) {
            const auto bytes = hn::BitCast(
                d16, hn::PromoteTo(hn::RebindToUnsigned<D16>(), hn::LoadU(du8, blk + 2 + j)));
            const auto lo = hn::And(bytes, low), hi = hn::ShiftRight<4>(bytes);
            sum = hn::ReorderWidenMulAccumulate(
                d32, lo, hn::PromoteTo(d16, hn::LoadU(d8, xb.q + j)), sum, unused);
            sum = hn::ReorderWidenMulAccumulate(
                d32, hi, hn::PromoteTo(d16, hn::LoadU(d8, xb.q + 16 + j)), sum, unused);
          }
          correction[r * C + c] += dw * xb.d * static_cast<float>(xb.sum);
        } else {
          const auto* qs = reinterpret_cast<const int8_t*>(blk + 2);
          for (int64_t j = 0; j < 32; j += lanes) {
            sum = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::LoadU(d8, qs + j)),
                                                hn::PromoteTo(d16, hn::LoadU(d8, xb.q + j)), sum,
                                                unused);
          }
        }
        sum = hn::Add(sum, unused);  // empty on x86; other targets may split the pairs
        acc[r * C + c] = hn::MulAdd(hn::ConvertTo(df, sum), hn::Set(df, dw * xb.d), acc[r * C + c]);
      }
    }
  }
  for (int i = 0; i < R * C; ++i) {
    out[i] = hn::GetLane(hn::SumOfLanes(df, acc[i])) - 8.0f * correction[i];
  }
}

template <int R, int C>
void Tile(GgmlType type, const uint8_t* const* rows, const ActBlock* const* x, int64_t n,
          float* out) {
#if HWY_TARGET == HWY_AVX3_DL
  vnni::TileVnni<R, C>(type, rows, x, n, out);
#else
  TileGeneric<R, C>(type, rows, x, n, out);
#endif
}

void DotRowsQImpl(GgmlType type, const uint8_t* row, int64_t row_bytes, int64_t k_rows,
                  const ActBlock* const* x, int64_t k_x, int64_t n, float* out) {
  const uint8_t* rows[4];
  const ActBlock* xs[4];
  for (int64_t i = 0; i < 4; ++i) {
    rows[i] = row + std::min(i, k_rows - 1) * row_bytes;
    xs[i] = x[std::min(i, k_x - 1)];
  }
  float tmp[16];
  if (k_x == 1 && k_rows == 1) {
    Tile<1, 1>(type, rows, xs, n, out);
    return;
  }
  if (k_x == 1) {
    Tile<4, 1>(type, rows, xs, n, tmp);
  } else if (k_rows == 1) {
    Tile<1, 4>(type, rows, xs, n, tmp);
  } else {
    Tile<4, 4>(type, rows, xs, n, tmp);
  }
  const int64_t c_tile = k_x == 1 ? 1 : 4;
  for (int64_t r = 0; r < k_rows; ++r) {
    for (int64_t c = 0; c < k_x; ++c) out[r * k_x + c] = tmp[r * c_tile + c];
  }
}

}  // namespace keel::infer::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace keel::infer::simd {
HWY_EXPORT(DotRowsQImpl);

void DotRowsQ(GgmlType type, const uint8_t* rows, int64_t row_bytes, int64_t k_rows,
              const ActBlock* const* x, int64_t k_x, int64_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(DotRowsQImpl)(type, rows, row_bytes, k_rows, x, k_x, n, out);
}
}  // namespace keel::infer::simd
#endif  // HWY_ONCE

// Packing and the VNNI kernels of packed.h. The kernels are compiled for AVX-512 VNNI with a
// target attribute and only called when the CPU has it (PackedMatrix::Supported).
#include "keel/infer/kernels/packed.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "keel/infer/kernels/dot_row.h"
#include "keel/infer/kernels/for_rows.h"
#include "keel/infer/quant/quant.h"

namespace keel::infer {
namespace {

constexpr int64_t kRows = 8;  // rows per group: the 8 int32 lanes of a 256-bit vector

int64_t QuantBytes(GgmlType t) { return t == GgmlType::kQ8_0 ? 256 : 128; }
int64_t BlockStride(GgmlType t) { return 16 + QuantBytes(t); }

#define KEEL_VNNI_ATTR \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")))

KEEL_VNNI_ATTR inline __m256i Broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Rows [8g, 8g + 8) of W against C activation rows x[0..C): acc[c] lane r = row 8g + r.
// The loops over k and c are unrolled so that sums and accumulators stay in registers.
template <GgmlType kType, int C>
KEEL_VNNI_ATTR void Group(const uint8_t* group, int64_t blocks, const ActBlock* const* x,
                          __m256* acc) {
  constexpr int64_t stride = kType == GgmlType::kQ8_0 ? 16 + 256 : 16 + 128;
  constexpr int32_t zero_point = kType == GgmlType::kQ8_0 ? 128 : 8;
  const __m256i low = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* blk = group + b * stride;
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk)));
    const uint8_t* qs = blk + 16;
    __m256i sum[C];
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) sum[c] = _mm256_set1_epi32(-zero_point * x[c][b].sum);
    if constexpr (kType == GgmlType::kQ8_0) {
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * k));
#pragma GCC unroll 8
        for (int c = 0; c < C; ++c) {
          sum[c] = _mm256_dpbusd_epi32(sum[c], w, Broadcast4(x[c][b].q + 4 * k));
        }
      }
    } else {
#pragma GCC unroll 8
      for (int k = 0; k < 4; ++k) {
        const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * k));
        const __m256i lo = _mm256_and_si256(raw, low);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
#pragma GCC unroll 8
        for (int c = 0; c < C; ++c) {
          sum[c] = _mm256_dpbusd_epi32(sum[c], lo, Broadcast4(x[c][b].q + 4 * k));
          sum[c] = _mm256_dpbusd_epi32(sum[c], hi, Broadcast4(x[c][b].q + 16 + 4 * k));
        }
      }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[c]),
                               _mm256_mul_ps(d, _mm256_set1_ps(x[c][b].d)), acc[c]);
    }
  }
}

template <GgmlType kType>
KEEL_VNNI_ATTR void Groups(const PackedMatrix& w, const ActBlock* xq, int64_t n, float* y,
                           int64_t g_begin, int64_t g_end) {
  const int64_t blocks = w.cols() / 32;
  for (int64_t g = g_begin; g < g_end; ++g) {
    const int64_t r0 = g * kRows, live = std::min(kRows, w.rows() - r0);
    for (int64_t i = 0; i < n; i += 4) {
      const int64_t k = std::min<int64_t>(4, n - i);
      const ActBlock* xs[4];
      for (int64_t j = 0; j < 4; ++j) xs[j] = xq + (i + std::min(j, k - 1)) * blocks;
      __m256 acc[4];
      if (k == 1) {
        Group<kType, 1>(w.group(g), blocks, xs, acc);
      } else {
        Group<kType, 4>(w.group(g), blocks, xs, acc);
      }
      for (int64_t j = 0; j < k; ++j) {
        alignas(32) float out[kRows];
        _mm256_store_ps(out, acc[j]);
        std::memcpy(y + (i + j) * w.rows() + r0, out, live * sizeof(float));
      }
    }
  }
}

#undef KEEL_VNNI_ATTR

}  // namespace

bool PackedMatrix::Supported() {
  // (Every AVX-512 CPU has F16C; clang's builtin does not know the name.)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni") &&
         __builtin_cpu_supports("fma");
}

PackedMatrix PackedMatrix::Pack(const Matrix& w) {
  PackedMatrix p;
  if (!Supported() || !HasActivationPath(w.type) || w.cols % 32 != 0 || w.rows <= 0) return p;
  const bool q8 = w.type == GgmlType::kQ8_0;
  const int64_t blocks = w.cols / 32, groups = (w.rows + kRows - 1) / kRows;
  p.type_ = w.type;
  p.rows_ = w.rows;
  p.cols_ = w.cols;
  p.group_bytes_ = blocks * BlockStride(w.type);
  p.data_ = std::make_unique<uint8_t[]>(groups * p.group_bytes_);
  const int64_t src_block = q8 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t b = 0; b < blocks; ++b) {
      uint8_t* out = p.data_.get() + g * p.group_bytes_ + b * BlockStride(w.type);
      for (int64_t r = 0; r < kRows; ++r) {
        const int64_t row = g * kRows + r;
        uint16_t d = 0;  // padding rows: scale 0
        uint8_t qs[32];
        std::memset(qs, q8 ? 0x80 : 0x88, sizeof(qs));
        if (row < w.rows) {
          const uint8_t* src = w.data + row * w.row_bytes + b * src_block;
          std::memcpy(&d, src, 2);
          std::memcpy(qs, src + 2, q8 ? 32 : 16);
          if (q8) {
            for (uint8_t& q : qs) q ^= 0x80;  // int8 q -> unsigned q + 128
          }
        }
        std::memcpy(out + 2 * r, &d, 2);
        const int64_t chunks = q8 ? 8 : 4;
        for (int64_t k = 0; k < chunks; ++k) std::memcpy(out + 16 + 32 * k + 4 * r, qs + 4 * k, 4);
      }
    }
  }
  return p;
}

void MatMulPacked(const PackedMatrix& w, const ActBlock* xq, int64_t n, float* y,
                  ComputePool* pool) {
  const int64_t groups = (w.rows() + kRows - 1) / kRows;
  ForRows(groups, kRows * w.cols() * n, pool, [&](int64_t begin, int64_t end) {
    if (w.type() == GgmlType::kQ8_0) {
      Groups<GgmlType::kQ8_0>(w, xq, n, y, begin, end);
    } else {
      Groups<GgmlType::kQ4_0>(w, xq, n, y, begin, end);
    }
  });
}

}  // namespace keel::infer

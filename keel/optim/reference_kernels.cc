// Scalar reference kernels (see reference_kernels.h and Note [Bit-identical variants]).
#include "keel/optim/reference_kernels.h"

#include <cmath>
#include <cstring>

#include "keel/common/bfloat16.h"

namespace keel::optim::reference {
namespace {

using internal::Buffers;
using internal::Storage;

float LoadParam(const Buffers& b, int64_t i) {
  if (b.param_type == Storage::kF32) return static_cast<const float*>(b.param)[i];
  return BFloat16ToFloat(static_cast<const uint16_t*>(b.param)[i]);
}

void StoreParam(const Buffers& b, int64_t i, float v) {
  if (b.param_type == Storage::kF32) {
    static_cast<float*>(b.param)[i] = v;
  } else {
    static_cast<uint16_t*>(b.param)[i] = FloatToBFloat16(v);
  }
}

float LoadGrad(const Buffers& b, int64_t i) {
  if (b.grad_type == Storage::kF32) return static_cast<const float*>(b.grad)[i];
  return BFloat16ToFloat(static_cast<const uint16_t*>(b.grad)[i]);
}

// x86's maxps/minps semantics (the second operand when either is NaN), as the SIMD variants.
float Max(float a, float b) { return a > b ? a : b; }
float Min(float a, float b) { return a < b ? a : b; }

// u = clip(z, -l1, l1) - z: the l1 soft-threshold, sign flipped (the group solve's direction).
float Shrink(float z, float l1) { return Min(Max(z, -l1), l1) - z; }

// The group-lasso solve shared by the group optimizers: with |u| the row's norm (norm_sq
// from the update loop), the row becomes (1 - T/|u|) u / denom(i) if |u| > T, else exactly 0.
template <class Denom>
bool SolveGroupRow(const Buffers& b, const float* z, int64_t dim, float l1, float threshold,
                   double norm_sq, Denom denom) {
  const float norm = static_cast<float>(std::sqrt(norm_sq));
  const bool keep = norm > threshold;
  const float scale = keep ? 1 - threshold / norm : 0.0f;
  for (int64_t i = 0; i < dim; ++i) {
    StoreParam(b, i, keep ? scale * Shrink(z[i], l1) / denom(i) : 0.0f);
  }
  return keep;
}

}  // namespace

void AdamW(const internal::AdamWArgs& a, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float g = LoadGrad(a.buf, i);
    float p = LoadParam(a.buf, i) * a.decay;
    const float m = a.beta1 * a.buf.s0[i] + a.one_minus_beta1 * g;
    float v = a.beta2 * a.buf.s1[i] + (a.one_minus_beta2 * g) * g;
    a.buf.s0[i] = m;
    a.buf.s1[i] = v;
    if (a.amsgrad) v = a.buf.s2[i] = Max(v, a.buf.s2[i]);
    const float denom = std::sqrt(v) / a.bc2_sqrt + a.eps;
    p = p - a.step_size * (m / denom);
    StoreParam(a.buf, i, p);
  }
}

void AGD(const internal::AGDArgs& a, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    float p = LoadParam(a.buf, i);
    float g = LoadGrad(a.buf, i);
    g = g + a.coupled_decay * p;
    p = p * a.decay;
    const float m_prev = a.buf.s0[i];
    const float m = a.beta1 * m_prev + a.one_minus_beta1 * g;
    const float s = a.first ? m * a.inv_bc1 : m * a.inv_bc1 - m_prev * a.inv_bc1_prev;
    float b = a.beta2 * a.buf.s1[i] + (a.one_minus_beta2 * s) * s;
    a.buf.s0[i] = m;
    a.buf.s1[i] = b;
    if (a.amsgrad) b = a.buf.s2[i] = Max(b, a.buf.s2[i]);
    float u = m / Max(std::sqrt(b), a.delta_floor);
    if (a.clip > 0) u = Min(Max(u, -a.clip), a.clip);
    if (a.win) {
      const float z = (a.buf.s3[i] - a.step_size * u) * a.win_z_scale;
      a.buf.s3[i] = z;
      p = a.win_tau * p - (2 * a.win_tau * a.step_size) * u + (2 * a.win_tau) * z;
    } else {
      p = p - a.step_size * u;
    }
    StoreParam(a.buf, i, p);
  }
}

void Adagrad(const internal::AdagradArgs& a, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    float p = LoadParam(a.buf, i);
    const float g = LoadGrad(a.buf, i) + a.weight_decay * p;
    const float sum = a.buf.s0[i] + g * g;
    a.buf.s0[i] = sum;
    p = p - a.clr * (g / (std::sqrt(sum) + a.eps));
    StoreParam(a.buf, i, p);
  }
}

bool GroupAdamRow(const internal::GroupAdamArgs& a, bool first) {
  double norm_sq = 0;
  for (int64_t i = 0; i < a.dim; ++i) {
    const float g = LoadGrad(a.buf, i);
    const float w = LoadParam(a.buf, i);
    const float m = a.beta1 * a.buf.s0[i] + a.one_minus_beta1 * g;
    const float v_old = a.buf.s1[i];
    const float v = a.beta2 * v_old + (a.one_minus_beta2 * g) * g;
    const float sigma = first ? std::sqrt(v) + a.eps : std::sqrt(v) - std::sqrt(v_old);
    const float z = a.buf.s2[i] + a.alpha * m - sigma * w;
    a.buf.s0[i] = m;
    a.buf.s1[i] = v;
    a.buf.s2[i] = z;
    const float u = Shrink(z, a.l1);
    norm_sq += double(u) * u;
  }
  return SolveGroupRow(a.buf, a.buf.s2, a.dim, a.l1, a.threshold, norm_sq,
                       [&](int64_t i) { return std::sqrt(a.buf.s1[i]) + a.eps + a.l2_twice; });
}

bool GroupFtrlRow(const internal::GroupFtrlArgs& a) {
  auto power = [&](float x) { return a.sqrt_power ? std::sqrt(x) : std::pow(x, a.neg_power); };
  double norm_sq = 0;
  for (int64_t i = 0; i < a.dim; ++i) {
    const float w = LoadParam(a.buf, i);
    const float g = LoadGrad(a.buf, i) + a.shrinkage_twice * w;
    const float n_old = a.buf.s0[i];
    const float n = n_old + g * g;
    const float sigma = (power(n) - power(n_old)) * a.inv_lr;
    const float z = a.buf.s1[i] + g - sigma * w;
    a.buf.s0[i] = n;
    a.buf.s1[i] = z;
    const float u = Shrink(z, a.l1);
    norm_sq += double(u) * u;
  }
  return SolveGroupRow(a.buf, a.buf.s1, a.dim, a.l1, a.threshold, norm_sq,
                       [&](int64_t i) { return power(a.buf.s0[i]) * a.inv_lr + a.l2_twice; });
}

}  // namespace keel::optim::reference

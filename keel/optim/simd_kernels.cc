// Highway implementations of the optimizer inner loops, compiled once per SIMD target
// (foreach_target.h re-includes this file) and dispatched at run time. Every operation mirrors
// reference_kernels.cc in order and kind (Note [Bit-identical variants]); tails shorter than a
// vector run the reference.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "keel/optim/simd_kernels.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target.h must come first.
#include <hwy/highway.h>

#include <cmath>

#include "keel/optim/kernel_args.h"
#include "keel/optim/reference_kernels.h"
#include "keel/optim/simd_kernels.h"

HWY_BEFORE_NAMESPACE();
namespace keel::optim::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using internal::Storage;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

template <class D>
HWY_INLINE hn::Vec<D> LoadF(D d, const float* p) {
  return hn::LoadU(d, p);
}
template <class D>
HWY_INLINE hn::Vec<D> LoadF(D d, const uint16_t* p) {  // bfloat16: the top half of a float32
  const hn::RebindToUnsigned<D> du32;
  const hn::Rebind<uint16_t, D> du16;
  return hn::BitCast(d, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, p))));
}
template <class D>
HWY_INLINE void StoreF(D d, hn::Vec<D> v, float* p) {
  hn::StoreU(v, d, p);
}
template <class D>
HWY_INLINE void StoreF(D /*d*/, hn::Vec<D> v, uint16_t* p) {  // round to nearest even; NaN stays
  const hn::RebindToUnsigned<D> du32;
  const hn::RebindToSigned<D> di32;
  const hn::Rebind<uint16_t, D> du16;
  const auto u = hn::BitCast(du32, v);
  const auto lsb = hn::And(hn::ShiftRight<16>(u), hn::Set(du32, 1u));
  const auto rounded = hn::ShiftRight<16>(hn::Add(u, hn::Add(lsb, hn::Set(du32, 0x7fffu))));
  const auto quiet_nan = hn::Or(hn::ShiftRight<16>(u), hn::Set(du32, 0x40u));
  const auto bits = hn::IfThenElse(hn::RebindMask(du32, hn::IsNaN(v)), quiet_nan, rounded);
  hn::StoreU(hn::DemoteTo(du16, hn::BitCast(di32, bits)), du16, p);
}

// Calls fn(param, grad) with the buffers' element types.
template <class Fn>
HWY_INLINE void WithTypes(const internal::Buffers& b, Fn&& fn) {
  const bool p32 = b.param_type == Storage::kF32;
  const bool g32 = b.grad_type == Storage::kF32;
  if (p32 && g32) {
    fn(static_cast<float*>(b.param), static_cast<const float*>(b.grad));
  } else if (!p32 && g32) {
    fn(static_cast<uint16_t*>(b.param), static_cast<const float*>(b.grad));
  } else if (!p32 && !g32) {
    fn(static_cast<uint16_t*>(b.param), static_cast<const uint16_t*>(b.grad));
  } else {
    fn(static_cast<float*>(b.param), static_cast<const uint16_t*>(b.grad));
  }
}

void AdamWRange(const internal::AdamWArgs& a, int64_t begin, int64_t end) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = begin;
  WithTypes(a.buf, [&](auto* param, const auto* grad) {
    const VF decay = hn::Set(d, a.decay), b1 = hn::Set(d, a.beta1);
    const VF omb1 = hn::Set(d, a.one_minus_beta1), b2 = hn::Set(d, a.beta2);
    const VF omb2 = hn::Set(d, a.one_minus_beta2), step = hn::Set(d, a.step_size);
    const VF bc2 = hn::Set(d, a.bc2_sqrt), eps = hn::Set(d, a.eps);
    float* s0 = a.buf.s0;
    float* s1 = a.buf.s1;
    float* s2 = a.buf.s2;
    for (; i + lanes <= end; i += lanes) {
      const VF g = LoadF(d, grad + i);
      VF p = hn::Mul(LoadF(d, param + i), decay);
      const VF m = hn::Add(hn::Mul(b1, LoadF(d, s0 + i)), hn::Mul(omb1, g));
      VF v = hn::Add(hn::Mul(b2, LoadF(d, s1 + i)), hn::Mul(hn::Mul(omb2, g), g));
      StoreF(d, m, s0 + i);
      StoreF(d, v, s1 + i);
      if (a.amsgrad) {
        v = hn::Max(v, LoadF(d, s2 + i));
        StoreF(d, v, s2 + i);
      }
      const VF denom = hn::Add(hn::Div(hn::Sqrt(v), bc2), eps);
      p = hn::Sub(p, hn::Mul(step, hn::Div(m, denom)));
      StoreF(d, p, param + i);
    }
  });
  if (i < end) reference::AdamW(a, i, end);
}

void AGDRange(const internal::AGDArgs& a, int64_t begin, int64_t end) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = begin;
  WithTypes(a.buf, [&](auto* param, const auto* grad) {
    const VF decay = hn::Set(d, a.decay), cdecay = hn::Set(d, a.coupled_decay);
    const VF b1 = hn::Set(d, a.beta1), omb1 = hn::Set(d, a.one_minus_beta1);
    const VF b2 = hn::Set(d, a.beta2), omb2 = hn::Set(d, a.one_minus_beta2);
    const VF ibc1 = hn::Set(d, a.inv_bc1), ibc1p = hn::Set(d, a.inv_bc1_prev);
    const VF floor = hn::Set(d, a.delta_floor), step = hn::Set(d, a.step_size);
    const VF clip = hn::Set(d, a.clip), neg_clip = hn::Set(d, -a.clip);
    const VF zscale = hn::Set(d, a.win_z_scale), tau = hn::Set(d, a.win_tau);
    const VF two_tau_eta = hn::Set(d, 2 * a.win_tau * a.step_size);
    const VF two_tau = hn::Set(d, 2 * a.win_tau);
    float* s0 = a.buf.s0;
    float* s1 = a.buf.s1;
    float* s2 = a.buf.s2;
    float* s3 = a.buf.s3;
    for (; i + lanes <= end; i += lanes) {
      VF p = LoadF(d, param + i);
      const VF g = hn::Add(LoadF(d, grad + i), hn::Mul(cdecay, p));
      p = hn::Mul(p, decay);
      const VF m_prev = LoadF(d, s0 + i);
      const VF m = hn::Add(hn::Mul(b1, m_prev), hn::Mul(omb1, g));
      const VF s = a.first ? hn::Mul(m, ibc1) : hn::Sub(hn::Mul(m, ibc1), hn::Mul(m_prev, ibc1p));
      VF b = hn::Add(hn::Mul(b2, LoadF(d, s1 + i)), hn::Mul(hn::Mul(omb2, s), s));
      StoreF(d, m, s0 + i);
      StoreF(d, b, s1 + i);
      if (a.amsgrad) {
        b = hn::Max(b, LoadF(d, s2 + i));
        StoreF(d, b, s2 + i);
      }
      VF u = hn::Div(m, hn::Max(hn::Sqrt(b), floor));
      if (a.clip > 0) u = hn::Min(hn::Max(u, neg_clip), clip);
      if (a.win) {
        const VF z = hn::Mul(hn::Sub(LoadF(d, s3 + i), hn::Mul(step, u)), zscale);
        StoreF(d, z, s3 + i);
        p = hn::Add(hn::Sub(hn::Mul(tau, p), hn::Mul(two_tau_eta, u)), hn::Mul(two_tau, z));
      } else {
        p = hn::Sub(p, hn::Mul(step, u));
      }
      StoreF(d, p, param + i);
    }
  });
  if (i < end) reference::AGD(a, i, end);
}

void AdagradRange(const internal::AdagradArgs& a, int64_t begin, int64_t end) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = begin;
  WithTypes(a.buf, [&](auto* param, const auto* grad) {
    const VF clr = hn::Set(d, a.clr), eps = hn::Set(d, a.eps), wd = hn::Set(d, a.weight_decay);
    float* s0 = a.buf.s0;
    for (; i + lanes <= end; i += lanes) {
      VF p = LoadF(d, param + i);
      const VF g = hn::Add(LoadF(d, grad + i), hn::Mul(wd, p));
      const VF sum = hn::Add(LoadF(d, s0 + i), hn::Mul(g, g));
      StoreF(d, sum, s0 + i);
      p = hn::Sub(p, hn::Mul(clr, hn::Div(g, hn::Add(hn::Sqrt(sum), eps))));
      StoreF(d, p, param + i);
    }
  });
  if (i < end) reference::Adagrad(a, i, end);
}

// Group kernels work on rows of typically 8..128 elements: vectors of at most 8 lanes, and
// rows that are not a whole number of vectors go to the reference.
using DR = hn::CappedTag<float, 8>;

bool GroupAdamRowImpl(const internal::GroupAdamArgs& a, bool first) {
  const DR d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  if (a.dim % lanes != 0) return reference::GroupAdamRow(a, first);
  bool keep = false;
  WithTypes(a.buf, [&](auto* param, const auto* grad) {
    const auto b1 = hn::Set(d, a.beta1), omb1 = hn::Set(d, a.one_minus_beta1);
    const auto b2 = hn::Set(d, a.beta2), omb2 = hn::Set(d, a.one_minus_beta2);
    const auto alpha = hn::Set(d, a.alpha), eps = hn::Set(d, a.eps);
    const auto l1 = hn::Set(d, a.l1), neg_l1 = hn::Set(d, -a.l1), l2x2 = hn::Set(d, a.l2_twice);
    auto acc = hn::Zero(d);
    for (int64_t i = 0; i < a.dim; i += lanes) {
      const auto g = LoadF(d, grad + i), w = LoadF(d, param + i);
      const auto m = hn::Add(hn::Mul(b1, LoadF(d, a.buf.s0 + i)), hn::Mul(omb1, g));
      const auto v_old = LoadF(d, a.buf.s1 + i);
      const auto v = hn::Add(hn::Mul(b2, v_old), hn::Mul(hn::Mul(omb2, g), g));
      const auto sigma = first ? hn::Add(hn::Sqrt(v), eps) : hn::Sub(hn::Sqrt(v), hn::Sqrt(v_old));
      const auto z = hn::Sub(hn::Add(LoadF(d, a.buf.s2 + i), hn::Mul(alpha, m)), hn::Mul(sigma, w));
      StoreF(d, m, a.buf.s0 + i);
      StoreF(d, v, a.buf.s1 + i);
      StoreF(d, z, a.buf.s2 + i);
      const auto u = hn::Sub(hn::Min(hn::Max(z, neg_l1), l1), z);
      acc = hn::Add(acc, hn::Mul(u, u));
    }
    const float norm = std::sqrt(hn::GetLane(hn::SumOfLanes(d, acc)));
    keep = norm > a.threshold;
    const auto scale = hn::Set(d, keep ? 1 - a.threshold / norm : 0.0f);
    for (int64_t i = 0; i < a.dim; i += lanes) {
      const auto z = LoadF(d, a.buf.s2 + i);
      const auto u = hn::Sub(hn::Min(hn::Max(z, neg_l1), l1), z);
      const auto denom = hn::Add(hn::Add(hn::Sqrt(LoadF(d, a.buf.s1 + i)), eps), l2x2);
      StoreF(d, keep ? hn::Div(hn::Mul(scale, u), denom) : hn::Zero(d), param + i);
    }
  });
  return keep;
}

bool GroupFtrlRowImpl(const internal::GroupFtrlArgs& a) {
  const DR d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  if (a.dim % lanes != 0 || !a.sqrt_power) return reference::GroupFtrlRow(a);
  bool keep = false;
  WithTypes(a.buf, [&](auto* param, const auto* grad) {
    const auto inv_lr = hn::Set(d, a.inv_lr), shrink = hn::Set(d, a.shrinkage_twice);
    const auto l1 = hn::Set(d, a.l1), neg_l1 = hn::Set(d, -a.l1), l2x2 = hn::Set(d, a.l2_twice);
    auto acc = hn::Zero(d);
    for (int64_t i = 0; i < a.dim; i += lanes) {
      const auto w = LoadF(d, param + i);
      const auto g = hn::Add(LoadF(d, grad + i), hn::Mul(shrink, w));
      const auto n_old = LoadF(d, a.buf.s0 + i);
      const auto n = hn::Add(n_old, hn::Mul(g, g));
      const auto sigma = hn::Mul(hn::Sub(hn::Sqrt(n), hn::Sqrt(n_old)), inv_lr);
      const auto z = hn::Sub(hn::Add(LoadF(d, a.buf.s1 + i), g), hn::Mul(sigma, w));
      StoreF(d, n, a.buf.s0 + i);
      StoreF(d, z, a.buf.s1 + i);
      const auto u = hn::Sub(hn::Min(hn::Max(z, neg_l1), l1), z);
      acc = hn::Add(acc, hn::Mul(u, u));
    }
    const float norm = std::sqrt(hn::GetLane(hn::SumOfLanes(d, acc)));
    keep = norm > a.threshold;
    const auto scale = hn::Set(d, keep ? 1 - a.threshold / norm : 0.0f);
    for (int64_t i = 0; i < a.dim; i += lanes) {
      const auto z = LoadF(d, a.buf.s1 + i);
      const auto u = hn::Sub(hn::Min(hn::Max(z, neg_l1), l1), z);
      const auto denom = hn::Add(hn::Mul(hn::Sqrt(LoadF(d, a.buf.s0 + i)), inv_lr), l2x2);
      StoreF(d, keep ? hn::Div(hn::Mul(scale, u), denom) : hn::Zero(d), param + i);
    }
  });
  return keep;
}

int64_t TargetId() { return HWY_TARGET; }

}  // namespace keel::optim::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace keel::optim::simd {

HWY_EXPORT(AdamWRange);
HWY_EXPORT(AGDRange);
HWY_EXPORT(AdagradRange);
HWY_EXPORT(GroupAdamRowImpl);
HWY_EXPORT(GroupFtrlRowImpl);
HWY_EXPORT(TargetId);

void AdamW(const internal::AdamWArgs& a, int64_t begin, int64_t end) {
  HWY_DYNAMIC_DISPATCH(AdamWRange)(a, begin, end);
}
void AGD(const internal::AGDArgs& a, int64_t begin, int64_t end) {
  HWY_DYNAMIC_DISPATCH(AGDRange)(a, begin, end);
}
void Adagrad(const internal::AdagradArgs& a, int64_t begin, int64_t end) {
  HWY_DYNAMIC_DISPATCH(AdagradRange)(a, begin, end);
}
bool GroupAdamRow(const internal::GroupAdamArgs& a, bool first) {
  return HWY_DYNAMIC_DISPATCH(GroupAdamRowImpl)(a, first);
}
bool GroupFtrlRow(const internal::GroupFtrlArgs& a) {
  return HWY_DYNAMIC_DISPATCH(GroupFtrlRowImpl)(a);
}
const char* TargetName() { return hwy::TargetName(HWY_DYNAMIC_DISPATCH(TargetId)()); }

}  // namespace keel::optim::simd
#endif  // HWY_ONCE

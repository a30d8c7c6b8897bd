// Per-step scalars of each optimizer, computed once per tensor (see kernel_args.h).
#include "keel/optim/kernel_args.h"

#include <cmath>

namespace keel::optim::internal {
namespace {

// 1 - beta^t, in double so that beta^t is exact enough for large t.
double BiasCorrection(float beta, int64_t t) {
  return 1.0 - std::pow(static_cast<double>(beta), static_cast<double>(t));
}

int64_t ElementBytes(Storage s) { return s == Storage::kF32 ? 4 : 2; }

}  // namespace

AdamWArgs MakeArgs(const AdamWOptions& o, int64_t step) {
  const double bc1 = BiasCorrection(o.beta1, step);
  const double bc2 = BiasCorrection(o.beta2, step);
  AdamWArgs a{};
  a.decay = 1.0f - o.lr * o.weight_decay;
  a.beta1 = o.beta1;
  a.one_minus_beta1 = 1.0f - o.beta1;
  a.beta2 = o.beta2;
  a.one_minus_beta2 = 1.0f - o.beta2;
  a.step_size = static_cast<float>(o.lr / bc1);
  a.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  a.eps = o.eps;
  a.amsgrad = o.amsgrad;
  return a;
}

AGDArgs MakeArgs(const AGDOptions& o, int64_t step) {
  const double bc1 = BiasCorrection(o.beta1, step);
  const double bc2 = BiasCorrection(o.beta2, step);
  AGDArgs a{};
  a.decay = 1.0f;
  a.coupled_decay = 0.0f;
  if (!o.win) {
    if (!o.weight_decouple) {
      a.coupled_decay = o.weight_decay;
    } else {
      a.decay = o.fixed_decay ? 1.0f - o.weight_decay : 1.0f - o.lr * o.weight_decay;
    }
  }
  a.beta1 = o.beta1;
  a.one_minus_beta1 = 1.0f - o.beta1;
  a.beta2 = o.beta2;
  a.one_minus_beta2 = 1.0f - o.beta2;
  a.first = step <= 1;
  a.inv_bc1 = static_cast<float>(1.0 / bc1);
  a.inv_bc1_prev = a.first ? 0.0f : static_cast<float>(1.0 / BiasCorrection(o.beta1, step - 1));
  a.delta_floor = static_cast<float>(o.delta * std::sqrt(bc2));
  a.clip = o.clip;
  const double eta = o.lr * std::sqrt(bc2) / bc1;
  a.step_size = static_cast<float>(eta);
  a.amsgrad = o.amsgrad;
  a.win = o.win;
  a.win_z_scale = static_cast<float>(1.0 / (1.0 + o.weight_decay * eta));
  a.win_tau = static_cast<float>(1.0 / (3.0 + 2.0 * eta * o.weight_decay));
  return a;
}

AdagradArgs MakeArgs(const AdagradOptions& o, int64_t step) {
  AdagradArgs a{};
  a.clr = static_cast<float>(o.lr / (1.0 + static_cast<double>(step - 1) * o.lr_decay));
  a.eps = o.eps;
  a.weight_decay = o.weight_decay;
  return a;
}

GroupAdamArgs MakeArgs(const GroupAdamOptions& o, int64_t step, int64_t dim) {
  const double bc1 = BiasCorrection(o.beta1, step);
  const double bc2 = BiasCorrection(o.beta2, step);
  GroupAdamArgs a{};
  a.dim = dim;
  a.beta1 = o.beta1;
  a.one_minus_beta1 = 1.0f - o.beta1;
  a.beta2 = o.beta2;
  a.one_minus_beta2 = 1.0f - o.beta2;
  a.alpha = static_cast<float>(o.lr * std::sqrt(bc2) / bc1);
  a.eps = o.eps;
  a.l1 = o.lr * o.l1;
  a.l2_twice = 2.0f * o.lr * o.l2;
  a.threshold = static_cast<float>(double(o.lr) * o.l21 * std::sqrt(double(dim)));
  return a;
}

GroupFtrlArgs MakeArgs(const GroupFtrlOptions& o, int64_t dim) {
  GroupFtrlArgs a{};
  a.dim = dim;
  a.inv_lr = 1.0f / o.lr;
  a.neg_power = -o.lr_power;
  a.sqrt_power = o.lr_power == -0.5f;
  a.l1 = o.l1;
  a.l2_twice = 2.0f * o.l2;
  a.threshold = static_cast<float>(o.l21 * std::sqrt(double(dim)));
  a.shrinkage_twice = 2.0f * o.l2_shrinkage;
  return a;
}

Buffers Offset(const Buffers& b, int64_t offset, int64_t grad_offset) {
  Buffers r = b;
  r.param = static_cast<char*>(b.param) + offset * ElementBytes(b.param_type);
  r.grad = static_cast<const char*>(b.grad) + grad_offset * ElementBytes(b.grad_type);
  for (float** s : {&r.s0, &r.s1, &r.s2, &r.s3}) {
    if (*s != nullptr) *s += offset;
  }
  return r;
}

}  // namespace keel::optim::internal

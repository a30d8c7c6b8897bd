// Validation of the optimizers' options: every value a user can get wrong gets a message that
// names the optimizer, the option, the value and the allowed range.
#include <fmt/format.h>

#include <cmath>

#include "keel/optim/optimizers.h"

namespace keel::optim {
namespace {

Status Check(bool ok, const char* optimizer, const char* name, float value, const char* range) {
  if (ok && std::isfinite(value)) return OkStatus();
  return InvalidArgumentError(
      fmt::format("{}: invalid {} {} (must be {})", optimizer, name, value, range));
}

Status CheckBetas(const char* opt, float beta1, float beta2) {
  KEEL_RETURN_IF_ERROR(Check(beta1 >= 0 && beta1 < 1, opt, "beta1", beta1, "in [0, 1)"));
  KEEL_RETURN_IF_ERROR(Check(beta2 >= 0 && beta2 < 1, opt, "beta2", beta2, "in [0, 1)"));
  return OkStatus();
}

}  // namespace

Status Validate(const AdamWOptions& o) {
  KEEL_RETURN_IF_ERROR(Check(o.lr >= 0, "AdamW", "lr", o.lr, ">= 0"));
  KEEL_RETURN_IF_ERROR(CheckBetas("AdamW", o.beta1, o.beta2));
  KEEL_RETURN_IF_ERROR(Check(o.eps >= 0, "AdamW", "eps", o.eps, ">= 0"));
  KEEL_RETURN_IF_ERROR(Check(o.weight_decay >= 0, "AdamW", "weight_decay", o.weight_decay, ">= 0"));
  return OkStatus();
}

Status Validate(const AGDOptions& o) {
  KEEL_RETURN_IF_ERROR(Check(o.lr >= 0, "AGD", "lr", o.lr, ">= 0"));
  KEEL_RETURN_IF_ERROR(CheckBetas("AGD", o.beta1, o.beta2));
  KEEL_RETURN_IF_ERROR(Check(o.delta > 0, "AGD", "delta", o.delta, "> 0"));
  KEEL_RETURN_IF_ERROR(Check(o.weight_decay >= 0, "AGD", "weight_decay", o.weight_decay, ">= 0"));
  KEEL_RETURN_IF_ERROR(Check(o.clip >= 0, "AGD", "clip", o.clip, ">= 0 (0: no clipping)"));
  return OkStatus();
}

Status Validate(const AdagradOptions& o) {
  KEEL_RETURN_IF_ERROR(Check(o.lr >= 0, "Adagrad", "lr", o.lr, ">= 0"));
  KEEL_RETURN_IF_ERROR(Check(o.lr_decay >= 0, "Adagrad", "lr_decay", o.lr_decay, ">= 0"));
  KEEL_RETURN_IF_ERROR(
      Check(o.weight_decay >= 0, "Adagrad", "weight_decay", o.weight_decay, ">= 0"));
  KEEL_RETURN_IF_ERROR(Check(o.eps >= 0, "Adagrad", "eps", o.eps, ">= 0"));
  return OkStatus();
}

Status Validate(const GroupAdamOptions& o) {
  KEEL_RETURN_IF_ERROR(Check(o.lr >= 0, "GroupAdam", "lr", o.lr, ">= 0"));
  KEEL_RETURN_IF_ERROR(CheckBetas("GroupAdam", o.beta1, o.beta2));
  KEEL_RETURN_IF_ERROR(Check(o.eps >= 0, "GroupAdam", "eps", o.eps, ">= 0"));
  KEEL_RETURN_IF_ERROR(Check(o.l1 >= 0, "GroupAdam", "l1", o.l1, ">= 0"));
  KEEL_RETURN_IF_ERROR(Check(o.l2 >= 0, "GroupAdam", "l2", o.l2, ">= 0"));
  KEEL_RETURN_IF_ERROR(Check(o.l21 >= 0, "GroupAdam", "l21", o.l21, ">= 0"));
  return OkStatus();
}

Status Validate(const GroupFtrlOptions& o) {
  KEEL_RETURN_IF_ERROR(Check(o.lr > 0, "GroupFTRL", "lr", o.lr, "> 0"));
  KEEL_RETURN_IF_ERROR(Check(o.lr_power <= 0, "GroupFTRL", "lr_power", o.lr_power, "<= 0"));
  KEEL_RETURN_IF_ERROR(Check(o.l1 >= 0, "GroupFTRL", "l1", o.l1, ">= 0"));
  KEEL_RETURN_IF_ERROR(Check(o.l2 >= 0, "GroupFTRL", "l2", o.l2, ">= 0"));
  KEEL_RETURN_IF_ERROR(Check(o.l21 >= 0, "GroupFTRL", "l21", o.l21, ">= 0"));
  KEEL_RETURN_IF_ERROR(
      Check(o.l2_shrinkage >= 0, "GroupFTRL", "l2_shrinkage", o.l2_shrinkage, ">= 0"));
  return OkStatus();
}

}  // namespace keel::optim

"""keel's optimizers as drop-in ``torch.optim.Optimizer`` subclasses. CPU float32/bfloat16
parameters go through keel's C++ kernels (SIMD, all cores, in place); other tensors through
the same math in torch ops. The equations and defaults are in docs/optim.md.
"""


import torch

from keel.optim import _math
from keel.optim._base import KeelOptimizer, _check


def _check_common(o, name="lr"):
    _check(o[name] >= 0, name, o[name], ">= 0")
    if "betas" in o:
        b1, b2 = o["betas"]
        _check(0 <= b1 < 1, "beta1", b1, "in [0, 1)")
        _check(0 <= b2 < 1, "beta2", b2, "in [0, 1)")
    if "weight_decay" in o:
        _check(o["weight_decay"] >= 0, "weight_decay", o["weight_decay"], ">= 0")
    if "eps" in o:
        _check(o["eps"] >= 0, "eps", o["eps"], ">= 0")
    for name in ("l1", "l2", "l21", "l2_shrinkage"):
        if name in o:
            _check(o[name] >= 0, name, o[name], ">= 0")


class AdamW(KeelOptimizer):
    """PyTorch's AdamW (same defaults, same update), on keel's kernels. Sparse gradients get a
    lazy update of the rows present."""

    kind = "adamw"
    option_names = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    math = _math.adamw

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, impl="auto"):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad), impl)

    def _validate(self, o):
        _check_common(o)

    def _init_state(self, p, state, group):
        state["exp_avg"] = self._new_slot(p)
        state["exp_avg_sq"] = self._new_slot(p)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = self._new_slot(p)

    def _slots(self, state, group):
        return [state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq")]


class AGD(KeelOptimizer):
    """AGD (Yue et al., NeurIPS 2023): Adam-like steps preconditioned by the EMA of the squared
    difference of bias-corrected momenta, switching per element to SGD with momentum (step
    lr/delta) where that falls below ``delta``. ``delta`` 1e-5 is the reference code's default;
    its README advises 1e-14 for Transformers, and an lr about 1/10 of AdamW's.

    weight_decouple: decay as in AdamW (p *= 1 - lr*wd, or 1 - wd with fixed_decay); else
    L2 added to the gradient (the gradient tensor itself is not modified). clip: clamp the
    normalised step to ±clip. win: Win-style acceleration, with its extra state starting at
    the parameter's value (not zero, which collapses the weights on the first step).
    """

    kind = "agd"
    option_names = ("lr", "betas", "delta", "weight_decay", "weight_decouple", "fixed_decay",
                    "amsgrad", "win", "clip")
    math = _math.agd

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), delta=1e-5, weight_decay=0.0,
                 amsgrad=False, weight_decouple=True, fixed_decay=False, win=False, clip=None,
                 *, impl="auto"):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), delta=delta,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      weight_decouple=weight_decouple, fixed_decay=fixed_decay,
                                      win=win, clip=clip), impl)

    def _validate(self, o):
        _check_common(o)
        _check(o["delta"] > 0, "delta", o["delta"], "> 0")
        _check(o["clip"] is None or o["clip"] > 0, "clip", o["clip"], "None or > 0")

    def _init_state(self, p, state, group):
        state["exp_avg"] = self._new_slot(p)
        state["exp_avg_diff_sq"] = self._new_slot(p)
        if group["amsgrad"]:
            state["max_exp_avg_diff_sq"] = self._new_slot(p)
        if group["win"]:
            state["z"] = p.detach().to(torch.float32, copy=True)

    def _slots(self, state, group):
        return [state["exp_avg"], state["exp_avg_diff_sq"], state.get("max_exp_avg_diff_sq"),
                state.get("z")]


class Adagrad(KeelOptimizer):
    """PyTorch's Adagrad (same defaults, same update); sparse gradients update their rows."""

    kind = "adagrad"
    option_names = ("lr", "lr_decay", "weight_decay", "eps")
    math = _math.adagrad

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, *, impl="auto"):
        _check(initial_accumulator_value >= 0, "initial_accumulator_value",
               initial_accumulator_value, ">= 0")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps), impl)

    def _validate(self, o):
        _check_common(o)
        _check(o["lr_decay"] >= 0, "lr_decay", o["lr_decay"], ">= 0")

    def _init_state(self, p, state, group):
        state["sum"] = self._new_slot(p, group["initial_accumulator_value"])

    def _slots(self, state, group):
        return [state["sum"]]


class GroupAdam(KeelOptimizer):
    """Group Adam (Yue et al., ECML-PKDD 2021; tfplus kernel v4): Adam with the sparse group
    lasso l1*|w|_1 + l21*sum_rows sqrt(dim)*|w_row|_2 + l2*|w|_2^2, solved in closed form per
    row. Each row of a parameter (e.g. one embedding) is a group; a row whose group test fails
    becomes exactly zero, and comes back if later gradients push it out. With all l = 0 this
    is lazy TF-style Adam. Use sparse gradients (``nn.Embedding(sparse=True)``) so that only
    the rows in the batch are updated; a dense gradient updates every row.
    """

    kind = "group_adam"
    option_names = ("lr", "betas", "eps", "l1", "l2", "l21")
    group_rows = True
    math = _math.group_adam

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, l1=0.0, l2=0.0, l21=0.0,
                 *, impl="auto"):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, l1=l1, l2=l2,
                                      l21=l21), impl)

    def _validate(self, o):
        _check_common(o)

    def _init_state(self, p, state, group):
        state["m"] = self._new_slot(p)
        state["v"] = self._new_slot(p)
        state["linear"] = self._new_slot(p)
        # One byte per row: its first update adds the (sqrt(v) + eps) * w term, whenever that
        # comes (tfplus adds it only at global step 1, which shrinks rows first seen later).
        state["initialized"] = torch.zeros(p.shape[0] if p.dim() else 1, dtype=torch.uint8,
                                           device=p.device)

    def _slots(self, state, group):
        return [state["m"], state["v"], state["linear"]]

    def zero_rows(self):
        """Fraction of rows that are exactly zero, over this optimizer's parameters."""
        return _zero_row_fraction(self)


class GroupFTRL(KeelOptimizer):
    """Sparse group FTRL (tfplus): FTRL-proximal with the sparse group lasso, rows as groups.
    The linear term starts at -n0^(-lr_power)/lr * w so initial weights survive the first
    update (tfplus starts it at 0, which wipes a random initialisation)."""

    kind = "group_ftrl"
    option_names = ("lr", "lr_power", "l1", "l2", "l21", "l2_shrinkage")
    group_rows = True
    math = _math.group_ftrl

    def __init__(self, params, lr=1e-2, lr_power=-0.5, initial_accumulator_value=0.1, l1=0.0,
                 l2=0.0, l21=0.0, l2_shrinkage=0.0, *, impl="auto"):
        _check(initial_accumulator_value > 0, "initial_accumulator_value",
               initial_accumulator_value, "> 0")
        super().__init__(params, dict(lr=lr, lr_power=lr_power, l1=l1, l2=l2, l21=l21,
                                      l2_shrinkage=l2_shrinkage,
                                      initial_accumulator_value=initial_accumulator_value), impl)

    def _validate(self, o):
        _check(o["lr"] > 0, "lr", o["lr"], "> 0")
        _check(o["lr_power"] <= 0, "lr_power", o["lr_power"], "<= 0")
        _check_common(o)

    def _init_state(self, p, state, group):
        n0 = group["initial_accumulator_value"]
        state["accum"] = self._new_slot(p, n0)
        scale = -(n0 ** (-group["lr_power"])) / group["lr"]
        state["linear"] = p.detach().to(torch.float32, copy=True).mul_(scale)

    def _slots(self, state, group):
        return [state["accum"], state["linear"]]

    def zero_rows(self):
        """Fraction of rows that are exactly zero, over this optimizer's parameters."""
        return _zero_row_fraction(self)


class GroupAdagrad(GroupFTRL):
    """Group Adagrad: sparse group FTRL with lr_power -0.5 (what tfplus ships under this name).
    With all l = 0 it is Adagrad with eps 0."""

    def __init__(self, params, lr=1e-2, initial_accumulator_value=0.1, l1=0.0, l2=0.0, l21=0.0,
                 *, impl="auto"):
        super().__init__(params, lr=lr, lr_power=-0.5,
                         initial_accumulator_value=initial_accumulator_value, l1=l1, l2=l2,
                         l21=l21, impl=impl)


def _zero_row_fraction(opt):
    rows = zero = 0
    for group in opt.param_groups:
        for p in group["params"]:
            flat = p.detach().reshape(p.shape[0] if p.dim() else 1, -1)
            rows += flat.shape[0]
            zero += int((flat == 0).all(dim=1).sum())
    return zero / max(rows, 1)



"""The optimizers' math in torch ops: the path for CUDA (and any tensor the C++ kernels do not
take). Same equations, same order as keel/optim/reference_kernels.cc; every function updates
float32 working tensors in place. ``w``/``g`` and the slots are flat (elementwise optimizers)
or [rows, dim] (group optimizers).
"""

import math

import torch


def _bias_corrections(beta1, beta2, step):
    return 1 - beta1**step, 1 - beta2**step


def adamw(w, g, slots, step, o):
    m, v, v_max = slots[0], slots[1], slots[2]
    bc1, bc2 = _bias_corrections(o["beta1"], o["beta2"], step)
    w.mul_(1 - o["lr"] * o["weight_decay"])
    m.mul_(o["beta1"]).add_(g, alpha=1 - o["beta1"])
    v.mul_(o["beta2"]).addcmul_(g, g, value=1 - o["beta2"])
    if o["amsgrad"]:
        torch.maximum(v, v_max, out=v_max)
        v = v_max
    denom = v.sqrt().div_(math.sqrt(bc2)).add_(o["eps"])
    w.addcdiv_(m, denom, value=-o["lr"] / bc1)


def agd(w, g, slots, step, o):
    m, b, b_max, z = slots
    bc1, bc2 = _bias_corrections(o["beta1"], o["beta2"], step)
    lr, wd = o["lr"], o["weight_decay"]
    if not o["win"]:
        if not o["weight_decouple"]:
            g = g + wd * w
        else:
            w.mul_(1 - wd if o["fixed_decay"] else 1 - lr * wd)
    m_prev = m.clone()
    m.mul_(o["beta1"]).add_(g, alpha=1 - o["beta1"])
    s = m / bc1 if step == 1 else m / bc1 - m_prev / (1 - o["beta1"] ** (step - 1))
    b.mul_(o["beta2"]).addcmul_(s, s, value=1 - o["beta2"])
    if o["amsgrad"]:
        torch.maximum(b, b_max, out=b_max)
        b = b_max
    u = m / b.sqrt().clamp_(min=o["delta"] * math.sqrt(bc2))
    if o["clip"] > 0:
        u.clamp_(-o["clip"], o["clip"])
    eta = lr * math.sqrt(bc2) / bc1
    if o["win"]:
        z.sub_(eta * u).mul_(1 / (1 + wd * eta))
        tau = 1 / (3 + 2 * eta * wd)
        w.mul_(tau).sub_(2 * tau * eta * u).add_(2 * tau * z)
    else:
        w.sub_(eta * u)


def adagrad(w, g, slots, step, o):
    clr = o["lr"] / (1 + (step - 1) * o["lr_decay"])
    g = g + o["weight_decay"] * w
    slots[0].addcmul_(g, g)
    w.addcdiv_(g, slots[0].sqrt().add_(o["eps"]), value=-clr)


def _group_solve(w, z, l1, denom, threshold):
    """w = (1 - T/|u|) u / denom where |u| > T, else 0; u = clip(z, ±l1) - z, per row."""
    u = z.clamp(-l1, l1) - z
    norm = u.norm(dim=1, keepdim=True)
    keep = norm > threshold
    scale = 1 - threshold / norm.clamp(min=1e-38)
    w.copy_(torch.where(keep, scale * u / denom, torch.zeros_like(u)))


def group_adam(w, g, slots, step, o, first):
    """`first`: bool per row, the row's first update."""
    m, v, z = slots[0], slots[1], slots[2]
    bc1, bc2 = _bias_corrections(o["beta1"], o["beta2"], step)
    lr, dim = o["lr"], w.shape[1]
    alpha = lr * math.sqrt(bc2) / bc1
    m.mul_(o["beta1"]).add_(g, alpha=1 - o["beta1"])
    v_new = v * o["beta2"] + (1 - o["beta2"]) * g * g
    sigma = torch.where(first[:, None], v_new.sqrt() + o["eps"], v_new.sqrt() - v.sqrt())
    z.add_(alpha * m - sigma * w)
    v.copy_(v_new)
    _group_solve(w, z, lr * o["l1"], v.sqrt() + o["eps"] + 2 * lr * o["l2"],
                 lr * o["l21"] * math.sqrt(dim))


def group_ftrl(w, g, slots, step, o):
    n, z = slots[0], slots[1]
    lr, power, dim = o["lr"], -o["lr_power"], w.shape[1]
    g = g + 2 * o["l2_shrinkage"] * w
    n_new = n + g * g
    sigma = (n_new.pow(power) - n.pow(power)) / lr
    z.add_(g - sigma * w)
    n.copy_(n_new)
    _group_solve(w, z, o["l1"], n.pow(power) / lr + 2 * o["l2"], o["l21"] * math.sqrt(dim))

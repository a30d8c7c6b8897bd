"""WSAM (Yue et al., KDD 2023): sharpness as a weighted regulariser, wrapped around any base
optimizer. Objective L(w) + gamma/(1-gamma) * [max_{|e|<=rho} L(w+e) - L(w)]; gamma 0 is the
base optimizer, gamma 0.5 (coupled) is SAM.

    opt = WSAM(model.parameters(), torch.optim.SGD, rho=0.05, gamma=0.9, lr=0.1, momentum=0.9)
    def closure():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss
    loss = opt.step(closure)     # two forward/backward passes; returns the first pass's loss

``step`` zeroes gradients before each pass itself, so a closure that forgets zero_grad, or a
``backward()`` already run before ``step``, does not double the gradient (the reference
README's example does, which corrupts both the base step and the sharpness term).

Pass ``model=`` to freeze every BatchNorm's running statistics during the second pass (all
``_BatchNorm`` subclasses, SyncBatchNorm included), and, for a DistributedDataParallel model,
to compute the perturbation from local gradients (pass 1 under ``no_sync``) and average the
gradients across ranks afterwards.
"""

import contextlib

import torch
import torch.distributed as dist


def disable_running_stats(model):
    """Freezes BatchNorm running statistics (momentum 0) until enable_running_stats."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not hasattr(m, "_keel_momentum"):
            m._keel_momentum = m.momentum
            m.momentum = 0.0


def enable_running_stats(model):
    for m in model.modules():
        if hasattr(m, "_keel_momentum"):
            m.momentum = m._keel_momentum
            del m._keel_momentum


class WSAM(torch.optim.Optimizer):
    def __init__(self, params, base_optimizer, rho=0.05, gamma=0.9, sam_eps=1e-12,
                 adaptive=False, decouple=True, max_norm=None, model=None, **kwargs):
        if not rho >= 0:
            raise ValueError(f"invalid rho: {rho!r} (must be >= 0)")
        if not 0 <= gamma < 1:
            raise ValueError(f"invalid gamma: {gamma!r} (must be in [0, 1))")
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"invalid max_norm: {max_norm!r} (must be None or > 0)")
        if not callable(base_optimizer):
            raise TypeError("base_optimizer must be an optimizer class (e.g. torch.optim.SGD)")
        defaults = dict(rho=rho, gamma=gamma, sam_eps=sam_eps, adaptive=adaptive,
                        decouple=decouple, max_norm=max_norm, **kwargs)
        super().__init__(params, defaults)
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups  # one set, seen by schedulers
        self.model = model

    def _params(self):
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    def _zero_grad(self):
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    def _clip(self, grads, max_norm):
        if max_norm is None or not grads:
            return
        norm = torch.norm(torch.stack([g.norm(2) for g in grads]), 2)
        scale = max_norm / (norm + 1e-6)
        if scale < 1:
            for g in grads:
                g.mul_(scale)

    def _all_reduce(self, grads):
        if dist.is_available() and dist.is_initialized() and isinstance(
                self.model, torch.nn.parallel.DistributedDataParallel):
            for g in grads:
                dist.all_reduce(g)
                g.div_(dist.get_world_size())

    @torch.no_grad()
    def step(self, closure=None):
        if closure is None:
            raise ValueError("WSAM needs a closure (zero_grad + forward + backward, returning "
                             "the loss): it evaluates the gradient at two points per step")
        no_sync = getattr(self.model, "no_sync", contextlib.nullcontext)
        # Pass 1 at w.
        self._zero_grad()
        with torch.enable_grad(), no_sync():
            loss = closure()
        params = self._params()
        grads = [p.grad.detach().clone() for p in params]
        group_of = {p: g for g in self.param_groups for p in g["params"]}
        # Perturbation e = rho / |g| * g  (adaptive: w^2 * g, normalised by |w * g|).
        norms = []
        for p, g in zip(params, grads):
            scaled = p.abs() * g if group_of[p]["adaptive"] else g
            norms.append(scaled.norm(2))
        norm = torch.norm(torch.stack(norms), 2) if norms else torch.tensor(0.0)
        # w itself is kept, not recomputed as (w + e) - e: rounding would differ between DDP
        # ranks, whose perturbations differ.
        originals = []
        for p, g in zip(params, grads):
            o = group_of[p]
            originals.append(p.detach().clone())
            p.add_((p * p * g if o["adaptive"] else g) * (o["rho"] / (norm + o["sam_eps"])))
        self._all_reduce(grads)
        self._clip(grads, self.defaults["max_norm"])
        # Pass 2 at w + e, BatchNorm statistics frozen.
        self._zero_grad()
        if self.model is not None:
            disable_running_stats(self.model)
        try:
            with torch.enable_grad():
                closure()
        finally:
            if self.model is not None:
                enable_running_stats(self.model)
        sharp = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                 for p in params]
        for p, w in zip(params, originals):
            p.copy_(w)
        self._clip(sharp, self.defaults["max_norm"])
        # Base step: coupled on g + alpha (g~ - g); decoupled on g, then the sharpness term.
        for p, g, s in zip(params, grads, sharp):
            o = group_of[p]
            alpha = o["gamma"] / (1 - o["gamma"])
            p.grad = g + alpha * (s - g) if not o["decouple"] else g
        self.base_optimizer.step()
        for p, g, s in zip(params, grads, sharp):
            o = group_of[p]
            if o["decouple"]:
                alpha = o["gamma"] / (1 - o["gamma"])
                p.add_(s - g, alpha=-o["lr"] * alpha)
        return loss

    def zero_grad(self, set_to_none=True):
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups

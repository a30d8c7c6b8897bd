"""The machinery shared by keel's optimizers: state creation, sparse gradients, the choice
between the C++ kernels (CPU tensors, in place, no copies) and the torch-ops math (CUDA and
anything else), and a state_dict round trip that keeps float32 state float32.
"""

import torch

from keel import _C
_IMPLS = ("auto", "cpp", "torch")


def _check(cond, name, value, rule):
    if not cond:
        raise ValueError(f"invalid {name}: {value!r} (must be {rule})")


class KeelOptimizer(torch.optim.Optimizer):
    """Base class. Subclasses set ``kind`` (the C++ kernel), ``math`` (the torch-ops function),
    ``option_names`` (group keys passed to both), and define ``_init_state``, ``_slots`` and
    ``_validate``."""

    kind = ""
    option_names = ()
    group_rows = False  # each row of a parameter is one group (Group Adam / FTRL)

    def __init__(self, params, defaults, impl="auto"):
        _check(impl in _IMPLS, "impl", impl, "one of " + ", ".join(_IMPLS))
        self._validate(defaults)
        self.impl = impl
        super().__init__(params, defaults)

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        self._validate(self.param_groups[-1])

    @staticmethod
    def _new_slot(p, fill=0.0):
        return torch.full(p.shape, fill, dtype=torch.float32, device=p.device)

    def _options(self, group):
        o = {}
        for name in self.option_names:
            value = group[name]
            if name == "betas":
                o["beta1"], o["beta2"] = float(value[0]), float(value[1])
            elif isinstance(value, bool):
                o[name] = value
            else:
                o[name] = float(0.0 if value is None else value)
        return o

    def _use_cpp(self, p, grad):
        if self.impl == "torch":
            return False
        ok = (p.device.type == "cpu" and p.is_contiguous()
              and p.dtype in (torch.float32, torch.bfloat16)
              and grad.dtype in (torch.float32, p.dtype))
        if self.impl == "cpp" and not ok:
            raise ValueError(f"{type(self).__name__}: impl='cpp' needs contiguous CPU float32 or "
                             f"bfloat16 parameters, got {p.dtype} on {p.device}")
        return ok

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._validate(group)
            options = self._options(group)
            entries = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    self._init_state(p, state, group)
                state["step"] += 1
                grad, rows = self._split_grad(p)
                slots = self._slots(state, group)
                flags = state.get("initialized")
                if self._use_cpp(p, grad):
                    entries.append((p.detach(), grad, slots, state["step"], rows, flags))
                else:
                    self._torch_step(p, grad, rows, slots, flags, state["step"], options)
            if entries:
                _C.optim_step(self.kind, options, entries, torch.get_num_threads())
        return loss

    def _split_grad(self, p):
        """(gradient values, rows or None): a sparse gradient becomes its rows and their values
        as [rows, row size]."""
        grad = p.grad
        if not grad.is_sparse:
            return grad.contiguous(), None
        grad = grad.coalesce()
        if grad.sparse_dim() != 1:
            raise ValueError(f"{type(self).__name__}: sparse gradients must be sparse in their "
                             f"first dimension only (got {grad.sparse_dim()} sparse dims)")
        rows = grad.indices()[0].contiguous()
        return grad.values().reshape(rows.numel(), -1).contiguous(), rows

    def _torch_step(self, p, grad, rows, slots, flags, step, options):
        n_rows = p.shape[0] if p.dim() > 0 else 1
        view = p.reshape(n_rows, -1) if (rows is not None or self.group_rows) else p.reshape(-1)
        slot_views = [None if s is None else s.view(view.shape) for s in slots]
        if rows is not None:
            w = view.index_select(0, rows).float()
            work = [None if s is None else s.index_select(0, rows) for s in slot_views]
        else:
            w = view if view.dtype == torch.float32 else view.float()
            work = slot_views
        g = grad.reshape(w.shape).float()
        if flags is None:
            type(self).math(w, g, work, step, options)
        else:
            first = (flags == 0) if rows is None else (flags.index_select(0, rows) == 0)
            type(self).math(w, g, work, step, options, first)
            if rows is None:
                flags.fill_(1)
            else:
                flags.index_fill_(0, rows, 1)
        if rows is not None:
            view.index_copy_(0, rows, w.to(p.dtype))
            for s, ws in zip(slot_views, work):
                if s is not None:
                    s.index_copy_(0, rows, ws)
        elif w is not view:
            view.copy_(w)
        if not p.is_contiguous():  # reshape copied: write the result back
            p.copy_(view.reshape(p.shape))

    def load_state_dict(self, state_dict):
        # torch casts every state tensor to the parameter's dtype; keel keeps float32 state
        # for bfloat16 parameters (and uint8 row flags), so put the saved values back as saved.
        saved = state_dict["state"]
        super().load_state_dict(state_dict)
        ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for i, p in zip(ids, params):
            for key, value in saved.get(i, {}).items():
                if torch.is_tensor(value):
                    self.state[p][key] = value.to(device=p.device, copy=True)


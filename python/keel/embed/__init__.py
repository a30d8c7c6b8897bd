"""keel.embed: embedding tables for sparse models — a DRAM budget with an SSD tier, admission
of ids after a number of sightings, expiry, and sparse optimizers that update exactly the rows
a batch touched — and ``Embedding``, a torch.nn.Module over a table.

    table = keel.embed.Table(dim=64, dram_budget="2GiB", ssd_path="/data/emb",
                             optimizer="adagrad", lr=0.05, admit_after=2,
                             init="normal(0,0.01)", seed=0)
    emb = keel.embed.Embedding(table)     # forward looks rows up, backward updates them
    rows = table.lookup(ids)               # int64 ids -> [*ids.shape, dim] float32
    table.apply_gradients(ids, grads)      # one optimizer step on exactly those rows
    table.save("/ckpt/emb", incremental=True); table.load("/ckpt/emb")
    table.stats()                          # rows and bytes per tier, hit rate, admissions, ...

The table is C++ (keel/embed, docs/embed.md); lookups and updates release the GIL.
"""

import torch

from keel import _C

__all__ = ["Table", "Embedding"]

_OPTIMIZERS = ("sgd", "adagrad", "adam", "group_adam", "group_ftrl")


class Table:
    """An embedding table. ``dram_budget``: bytes (int) or a size like "2GiB"; 0 = no limit.
    ``ssd_path``: directory of the SSD tier (rows evicted past the budget go there; without
    it they are dropped). ``optimizer``: one of sgd, adagrad, adam, group_adam, group_ftrl,
    with its options as keywords (lr, beta1, beta2, eps, initial_accumulator_value, lr_power,
    l1, l2, l21). ``admit_after``: sightings before an id gets a trainable row (before that:
    zeros, updates dropped). ``ttl``: steps (``apply_gradients`` calls) after which unseen
    rows are deleted; 0 = never. ``init``: "zeros", "normal(mean,std)", "uniform(low,high)",
    drawn per id from ``seed``."""

    def __init__(self, dim, dram_budget=0, ssd_path=None, optimizer="adagrad", lr=0.01,
                 admit_after=0, ttl=0, init="zeros", seed=0, shards=64, **optimizer_options):
        if isinstance(dram_budget, str):
            dram_budget = _C.parse_bytes(dram_budget)
        if optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer {optimizer!r} is not one of {', '.join(_OPTIMIZERS)}")
        options = {"lr": float(lr)}
        options.update({k: float(v) for k, v in optimizer_options.items()})
        self._table = _C.EmbeddingTable(int(dim), int(dram_budget), ssd_path or "", optimizer,
                                        options, int(admit_after), int(ttl), init, int(seed),
                                        int(shards))

    @property
    def dim(self):
        return self._table.dim

    @staticmethod
    def _ids(ids):
        ids = torch.as_tensor(ids)
        if ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"ids must be an integer tensor, got {ids.dtype}")
        if ids.device.type != "cpu":
            raise ValueError(f"ids must be on the CPU, got {ids.device}")
        return ids.to(torch.int64).contiguous()

    def lookup(self, ids, train=True):
        """Rows of ``ids`` as float32 ``[*ids.shape, dim]``. ``train``: count the lookup as a
        sighting (admission, recency) and create rows of admitted ids; else read only."""
        ids = self._ids(ids)
        return self._table.lookup(ids.reshape(-1), train).view(*ids.shape, self.dim)

    def apply_gradients(self, ids, grads):
        """One optimizer step on the rows of ``ids`` (gradients of repeated ids are summed)."""
        ids = self._ids(ids).reshape(-1)
        grads = torch.as_tensor(grads).detach()
        if grads.shape[-1:] != (self.dim,) or grads.numel() != ids.numel() * self.dim:
            raise ValueError(f"grads must be [{ids.numel()}, {self.dim}] for {ids.numel()} ids, "
                             f"got {list(grads.shape)}")
        self._table.apply_gradients(ids, grads.to("cpu", torch.float32).contiguous()
                                    .reshape(-1, self.dim))

    def save(self, path, incremental=False):
        """Writes the table (rows with their optimizer state, the step) to directory ``path``.
        ``incremental``: only what changed since this table's last save to (or load from)
        ``path``, as a delta over the files there. Committed atomically: a crash mid-save leaves
        the previous save loadable."""
        self._table.save(str(path), bool(incremental))

    def load(self, path):
        """Replaces the table's rows and step with the save in ``path``. A corrupt or
        mismatched checkpoint raises and leaves the table as it was."""
        self._table.load(str(path))

    def expire(self):
        self._table.expire()

    def stats(self):
        return self._table.stats()


class _Lookup(torch.autograd.Function):
    @staticmethod
    def forward(ctx, anchor, ids, module):
        ctx.ids, ctx.module = ids, module
        return module.table.lookup(ids, train=module.training)

    @staticmethod
    def backward(ctx, grad):
        module = ctx.module
        grad = grad.reshape(-1, module.table.dim)
        if module.update == "backward":
            module.table.apply_gradients(ctx.ids, grad)
        else:
            module._pending.append((ctx.ids.reshape(-1), grad.detach().clone()))
        return None, None, None


class Embedding(torch.nn.Module):
    """Looks ids up in ``table``; the backward pass routes the rows' gradients to the table's
    own optimizer. ``update="backward"`` applies them as soon as they arrive (one table step
    per backward); ``update="step"`` keeps them until ``step()`` (gradient accumulation,
    two-pass optimizers), which applies them as one step. In eval mode lookups only read."""

    def __init__(self, table, update="backward"):
        super().__init__()
        if update not in ("backward", "step"):
            raise ValueError(f"update must be 'backward' or 'step', got {update!r}")
        self.table = table
        self.update = update
        self._pending = []
        # Not a Parameter (dense optimizers must not see it): makes autograd call backward.
        self._anchor = torch.zeros(0, requires_grad=True)

    def forward(self, ids):
        ids = Table._ids(ids)
        if not (self.training and torch.is_grad_enabled()):
            return self.table.lookup(ids, train=self.training)
        return _Lookup.apply(self._anchor, ids, self)

    def step(self):
        """Applies the gradients kept since the last step (update="step") as one table step."""
        if not self._pending:
            return
        ids = torch.cat([i for i, _ in self._pending])
        grads = torch.cat([g for _, g in self._pending])
        self._pending = []
        self.table.apply_gradients(ids, grads)

    def extra_repr(self):
        return f"dim={self.table.dim}, update={self.update!r}"

"""A DLRM-style recommender (embedding bags + bottom/top MLPs) trained for a few steps on
random data with a different batch size every step. Used to record
bench/traces/dlrm-varbatch.trace.gz with `keel mem record` (see README.md)."""

import argparse

import torch
import torch.nn as nn


class DLRM(nn.Module):
    def __init__(self, tables, rows, dim, dense):
        super().__init__()
        self.embs = nn.ModuleList(nn.EmbeddingBag(rows, dim, mode="sum") for _ in range(tables))
        self.bottom = nn.Sequential(nn.Linear(dense, 512), nn.ReLU(), nn.Linear(512, dim))
        n = (tables + 1) * tables // 2 + dim
        self.top = nn.Sequential(nn.Linear(n, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                                 nn.Linear(1024, 1))

    def forward(self, dense, sparse):
        x = self.bottom(dense)
        feats = torch.stack([x] + [e(s) for e, s in zip(self.embs, sparse)], dim=1)
        inter = feats @ feats.transpose(1, 2)
        i, j = torch.triu_indices(feats.shape[1], feats.shape[1], 1)
        return self.top(torch.cat([x, inter[:, i, j]], dim=1))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tables", type=int, default=8)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--dense", type=int, default=13)
    p.add_argument("--min-batch", type=int, default=512)
    p.add_argument("--max-batch", type=int, default=4096)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(2)
    model = DLRM(a.tables, a.rows, a.dim, a.dense)
    opt = torch.optim.Adagrad(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(a.seed)
    for step in range(a.steps):
        b = int(torch.randint(a.min_batch, a.max_batch + 1, (1,), generator=g))
        dense = torch.randn(b, a.dense, generator=g)
        sparse = [torch.randint(a.rows, (b, 4), generator=g) for _ in range(a.tables)]
        y = torch.randint(2, (b, 1), generator=g).float()
        loss = nn.functional.binary_cross_entropy_with_logits(model(dense, sparse), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        print(f"step {step} batch {b} loss {loss.item():.3f}", flush=True)


if __name__ == "__main__":
    main()

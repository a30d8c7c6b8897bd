#!/usr/bin/env python3
"""A DLRM-style click model on synthetic data, with its sparse features in a keel.embed table.

    PYTHONPATH=build/python /usr/bin/python3 examples/train_dlrm.py --steps 300 \\
        --dram-budget 256KiB --ssd-path /tmp/dlrm-emb --admit-after 2

Data: 8 categorical features with Zipf(1.05)-distributed ids over 200,000 values each (hot ids
scattered by a permutation) plus 4 dense features; a click happens with probability
sigmoid(sum of hidden per-id effects + dense . w). The model: one keel.embed.Table for all
sparse features (ids offset per feature), a bottom MLP for dense features, pairwise dot
interactions, a top MLP — as in DLRM. Dense parameters train with torch's Adam, the table with
its own Adagrad (rows updated in the backward pass). Prints loss and held-out AUC; the table's
tiers, hit rate and admissions at the end.
"""

import argparse
import time

import torch
from sklearn.metrics import roc_auc_score

import keel.embed

FEATURES, VALUES, DENSE = 8, 200_000, 4


class Data:
    def __init__(self, seed):
        g = torch.Generator().manual_seed(seed)
        ranks = torch.arange(1, VALUES + 1, dtype=torch.float64)
        self.p = ranks.pow(-1.05) / ranks.pow(-1.05).sum()
        self.perm = [torch.randperm(VALUES, generator=g) for _ in range(FEATURES)]
        self.effect = torch.randn(FEATURES, VALUES, generator=g) * 0.8
        self.w = torch.randn(DENSE, generator=g)

    def batch(self, n, g):
        rank = torch.multinomial(self.p, n * FEATURES, replacement=True, generator=g)
        ids = torch.stack([self.perm[f][rank.view(n, FEATURES)[:, f]] for f in range(FEATURES)], 1)
        dense = torch.randn(n, DENSE, generator=g)
        logit = self.effect.gather(1, ids.t()).sum(0) * 0.5 + dense @ self.w - 1.0
        y = torch.bernoulli(torch.sigmoid(logit), generator=g)
        return ids, dense, y


class DLRM(torch.nn.Module):
    def __init__(self, table, dim):
        super().__init__()
        self.emb = keel.embed.Embedding(table)
        self.bottom = torch.nn.Sequential(torch.nn.Linear(DENSE, 32), torch.nn.ReLU(),
                                          torch.nn.Linear(32, dim))
        n = FEATURES + 1
        self.top = torch.nn.Sequential(torch.nn.Linear(dim + n * (n - 1) // 2, 64),
                                       torch.nn.ReLU(), torch.nn.Linear(64, 1))

    def forward(self, ids, dense):
        offsets = torch.arange(FEATURES, dtype=torch.int64) << 40  # one table, 8 features
        e = self.emb(ids + offsets)                                 # [n, F, dim]
        d = self.bottom(dense)
        z = torch.cat([d.unsqueeze(1), e], 1)
        inter = z @ z.transpose(1, 2)
        i, j = torch.triu_indices(z.shape[1], z.shape[1], 1)
        return self.top(torch.cat([d, inter[:, i, j]], 1)).squeeze(-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--dram-budget", default="0", help="e.g. 256KiB; 0 = no limit")
    ap.add_argument("--ssd-path", default=None)
    ap.add_argument("--admit-after", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    data = Data(args.seed)
    table = keel.embed.Table(dim=args.dim, dram_budget=args.dram_budget, ssd_path=args.ssd_path,
                             optimizer="adagrad", lr=0.05, admit_after=args.admit_after,
                             init="normal(0,0.01)", seed=args.seed)
    model = DLRM(table, args.dim)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(args.seed + 1)
    test = data.batch(8192, torch.Generator().manual_seed(args.seed + 2))
    start = time.time()
    for step in range(1, args.steps + 1):
        ids, dense, y = data.batch(args.batch, g)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(ids, dense), y)
        opt.zero_grad()
        loss.backward()  # the table's rows are updated here
        opt.step()
        if step % 50 == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                auc = roc_auc_score(test[2].numpy(), model(test[0], test[1]).numpy())
            model.train()
            print(f"step {step} loss {loss.item():.4f} test auc {auc:.4f}", flush=True)
    s = table.stats()
    print(f"{time.time() - start:.1f}s; table: {s['dram_rows']} rows in DRAM "
          f"({s['dram_bytes'] / 2**20:.1f} MiB), {s['ssd_rows']} on SSD, hit rate "
          f"{s['hit_rate']:.3f}, {s['admissions']} admitted, {s['rejected']} lookups of ids not "
          f"admitted yet, {s['evictions']} evictions")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""AGD vs AdamW on a small character-level GPT trained on a real corpus (Debian's `fortunes`).

    PYTHONPATH=build/python /usr/bin/python3 bench/optim_agd_gpt.py [--steps 1200] [--seeds 2]

Model: 2 transformer blocks, 4 heads, width 64, context 64 (~0.1M parameters); batch 32;
linear warmup then cosine decay to 0.1x; betas (0.9, 0.95); weight decay 0.1 on matrices;
gradient clipping 1.0 — the paper's nanoGPT recipe scaled down. The last 5% of the corpus is
the validation set (fixed batches). Both optimizers see the same batches for a seed; runs are
single-threaded, one per core in parallel (results do not depend on the parallelism).
A small lr sweep for each (AdamW: torch.optim.AdamW; AGD: keel.optim.AGD with delta 1e-14,
as its README advises for Transformers), then, for the best lr of each (by mean final
validation loss): mean ± std over seeds of the final validation loss and the number of steps
AGD needs to reach AdamW's final validation loss (the paper reports 1.5x fewer at GPT-2 scale).
"""

import argparse
import concurrent.futures
import os
import math
import pathlib
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import keel.optim as ko

CORPUS = pathlib.Path("/usr/share/games/fortunes")


def load_corpus():
    files = sorted(p for p in CORPUS.iterdir() if p.is_file() and p.suffix not in (".dat", ".u8"))
    if not files:
        raise SystemExit(f"no corpus in {CORPUS}: install Debian's fortunes package "
                         "(scripts/install-deps.sh does)")
    text = "".join(p.read_text(encoding="latin-1") for p in files)
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    cut = int(len(data) * 0.95)
    return data[:cut], data[cut:], len(chars)


class Block(nn.Module):
    def __init__(self, d, heads, ctx):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.heads = heads
        self.register_buffer("mask", torch.ones(ctx, ctx).tril().bool())

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (y.transpose(1, 2) for y in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads)
        att = att.masked_fill(~self.mask[:t, :t], float("-inf")).softmax(-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab, d=64, heads=4, layers=2, ctx=64):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.blocks = nn.Sequential(*[Block(d, heads, ctx) for _ in range(layers)])
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        return self.head(self.ln(self.blocks(x)))


def batch(data, n, ctx, gen):
    starts = torch.randint(0, len(data) - ctx - 1, (n,), generator=gen)
    x = torch.stack([data[s:s + ctx] for s in starts])
    y = torch.stack([data[s + 1:s + ctx + 1] for s in starts])
    return x, y


def run(name, lr, seed, args, train, val_batches, vocab):
    torch.manual_seed(seed)
    model = GPT(vocab, ctx=args.ctx)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}]
    if name == "AdamW":
        opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    else:
        opt = ko.AGD(groups, lr=lr, betas=(0.9, 0.95), delta=1e-14)
    warmup = args.steps // 20

    def lr_at(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(1000 + seed)
    curve = []
    for step in range(1, args.steps + 1):
        x, y = batch(train, args.batch, args.ctx, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % args.eval_every == 0:
            with torch.no_grad():
                v = statistics.mean(F.cross_entropy(model(vx).flatten(0, 1), vy.flatten()).item()
                                    for vx, vy in val_batches)
            curve.append((step, v))
    return curve


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="runs in parallel")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--adamw-lrs", default="3e-3,1e-2,3e-2")
    ap.add_argument("--agd-lrs", default="1e-3,3e-3,1e-2")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, val, vocab = load_corpus()
    vgen = torch.Generator().manual_seed(12345)
    val_batches = [batch(val, 32, args.ctx, vgen) for _ in range(16)]
    print(f"corpus: {len(train) + len(val):,} chars, vocab {vocab}; model "
          f"{sum(p.numel() for p in GPT(vocab, ctx=args.ctx).parameters()):,} params; "
          f"{args.steps} steps x batch {args.batch} x ctx {args.ctx}; seeds {args.seeds}")
    sweeps = {"AdamW": [float(x) for x in args.adamw_lrs.split(",")],
              "AGD": [float(x) for x in args.agd_lrs.split(",")]}
    curves = {}
    t0 = time.time()
    jobs = [(name, lr, seed) for seed in range(args.seeds) for name, lrs in sweeps.items()
            for lr in lrs]
    # One single-threaded run per core: the runs are independent and deterministic.
    with concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
        futures = {pool.submit(run, *job, args, train, val_batches, vocab): job for job in jobs}
        for f in concurrent.futures.as_completed(futures):
            name, lr, seed = futures[f]
            curves[futures[f]] = f.result()
            print(f"  {name:5} lr {lr:g} seed {seed}: final val {curves[futures[f]][-1][1]:.4f}"
                  f" ({time.time() - t0:.0f}s)", flush=True)

    def finals(name, lr):
        return [curves[(name, lr, s)][-1][1] for s in range(args.seeds)]

    print(f"\n{'optimizer':10} {'lr':>8} {'final val loss (mean ± std)':>28}")
    best = {}
    for name, lrs in sweeps.items():
        for lr in lrs:
            f = finals(name, lr)
            sd = statistics.stdev(f) if len(f) > 1 else 0.0
            print(f"{name:10} {lr:8g} {statistics.mean(f):20.4f} ± {sd:.4f}")
        best[name] = min(lrs, key=lambda lr: statistics.mean(finals(name, lr)))
    print(f"\nbest lr: AdamW {best['AdamW']:g}, AGD {best['AGD']:g}")
    speedups = []
    for s in range(args.seeds):
        target = curves[("AdamW", best["AdamW"], s)][-1][1]
        reached = next((step for step, v in curves[("AGD", best["AGD"], s)] if v <= target), None)
        ratio = args.steps / reached if reached else float("nan")
        speedups.append(ratio)
        agd_final = curves[("AGD", best["AGD"], s)][-1][1]
        if reached:
            print(f"seed {s}: AdamW final val {target:.4f}; AGD reaches it at step {reached} of "
                  f"{args.steps} -> {ratio:.2f}x fewer steps")
        else:
            back = next((step for step, v in curves[("AdamW", best["AdamW"], s)]
                         if v <= agd_final), None)
            print(f"seed {s}: AdamW final val {target:.4f}; AGD does not reach it in "
                  f"{args.steps} steps (its final: {agd_final:.4f}; AdamW reached that at step "
                  f"{back})")
    ok = [x for x in speedups if x == x]
    if ok:
        sd = statistics.stdev(ok) if len(ok) > 1 else 0.0
        print(f"steps speedup of AGD over AdamW: {statistics.mean(ok):.2f}x ± {sd:.2f} "
              f"(seeds where AGD got there: {len(ok)}/{len(speedups)})")
    else:
        print("AGD never reached AdamW's final validation loss")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""WSAM vs its base optimizer (and SAM) on scikit-learn's bundled digits with label noise.

    PYTHONPATH=build/python /usr/bin/python3 bench/optim_wsam_digits.py [--seeds 5]

Data: the 1,797 8x8 digits from python3-sklearn; a fixed split of 1,400 train / 397 test;
30% of the training labels replaced by a different random class (new noise per seed); the
test labels stay clean. Model: MLP 64-256-256-10. Base optimizer: SGD, momentum 0.9, lr 0.05,
weight decay 5e-4, batch 64, 100 epochs with cosine decay. Compared: the base alone, SAM
(WSAM with gamma 0.5, coupled) and WSAM (gamma 0.8/0.9, decoupled) at several rho. Printed:
clean test accuracy at the end, mean ± std over seeds, and the rho-sharpness
L(w + rho g/|g|) - L(w) on the (noisy) training set.
"""

import argparse
import concurrent.futures
import os
import statistics
import time

import torch
import torch.nn.functional as F

import keel.optim as ko

CONFIGS = [
    ("SGD", None),
    ("SAM rho=0.05", dict(rho=0.05, gamma=0.5, decouple=False)),
    ("SAM rho=0.1", dict(rho=0.1, gamma=0.5, decouple=False)),
    ("SAM rho=0.2", dict(rho=0.2, gamma=0.5, decouple=False)),
    ("WSAM g=0.9 rho=0.05", dict(rho=0.05, gamma=0.9)),
    ("WSAM g=0.9 rho=0.1", dict(rho=0.1, gamma=0.9)),
    ("WSAM g=0.9 rho=0.2", dict(rho=0.2, gamma=0.9)),
    ("WSAM g=0.8 rho=0.1", dict(rho=0.1, gamma=0.8)),
]


def load(noise, seed):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("python3-sklearn is missing (scripts/install-deps.sh installs it)")
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    xtr, ytr, xte, yte = x[:1400], y[:1400].clone(), x[1400:], y[1400:]
    g = torch.Generator().manual_seed(100 + seed)
    flip = torch.rand(len(ytr), generator=g) < noise
    shift = torch.randint(1, 10, (len(ytr),), generator=g)
    ytr[flip] = (ytr[flip] + shift[flip]) % 10  # a different class, uniformly
    return xtr, ytr, xte, yte


def sharpness(model, x, y, rho):
    model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    params = [p for p in model.parameters()]
    norm = torch.norm(torch.stack([p.grad.norm() for p in params]))
    with torch.no_grad():
        e = [rho * p.grad / norm for p in params]
        for p, d in zip(params, e):
            p.add_(d)
        perturbed = F.cross_entropy(model(x), y).item()
        for p, d in zip(params, e):
            p.sub_(d)
    return perturbed - loss.item()


def run(config, seed, args):
    torch.set_num_threads(1)
    name, wsam = config
    xtr, ytr, xte, yte = load(args.noise, seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    base = dict(lr=0.05, momentum=0.9, weight_decay=5e-4)
    if wsam is None:
        opt = torch.optim.SGD(model.parameters(), **base)
    else:
        opt = ko.WSAM(model.parameters(), torch.optim.SGD, model=model, **wsam, **base)
    steps_per_epoch = (len(xtr) + args.batch - 1) // args.batch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(args.epochs):
        order = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), args.batch):
            xb, yb = xtr[order[i:i + args.batch]], ytr[order[i:i + args.batch]]

            def closure():
                opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                return loss

            if wsam is None:
                closure()
                opt.step()
            else:
                opt.step(closure)
            sched.step()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    return acc, sharpness(model, xtr, ytr, 0.1)


def sd(values):
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    args = ap.parse_args()
    t0 = time.time()
    results = {}
    with concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
        futures = {pool.submit(run, c, s, args): (c[0], s) for c in CONFIGS
                   for s in range(args.seeds)}
        for f in concurrent.futures.as_completed(futures):
            results[futures[f]] = f.result()
            print(f"  {futures[f][0]} seed {futures[f][1]}: acc {results[futures[f]][0]:.4f} "
                  f"({time.time() - t0:.0f}s)", flush=True)
    print(f"\ndigits, {args.noise:.0%} label noise on train, {args.epochs} epochs, "
          f"{args.seeds} seeds")
    print(f"{'optimizer':22} {'clean test accuracy':>22} {'rho-sharpness (0.1)':>22}")
    base = [results[("SGD", s)][0] for s in range(args.seeds)]
    for name, _ in CONFIGS:
        acc = [results[(name, s)][0] for s in range(args.seeds)]
        sh = [results[(name, s)][1] for s in range(args.seeds)]
        wins = sum(a > b for a, b in zip(acc, base))
        print(f"{name:22} {100 * statistics.mean(acc):12.2f} ± {100 * sd(acc):.2f}%"
              f" {statistics.mean(sh):14.4f} ± {sd(sh):.4f}"
              + ("" if name == "SGD" else f"   beats SGD on {wins}/{args.seeds} seeds"))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Optimizer step time on ~100M float32 parameters: keel AdamW and AGD against
torch.optim.AdamW (foreach and single-tensor), and the memory-bandwidth bound, in one run.

    PYTHONPATH=build/python /usr/bin/python3 bench/optim_step.py [--params 100e6] [--runs 5]

The parameters are shaped like a transformer's (25 matrices of 4M plus 200 vectors of 768).
Each run times `--steps` steps of every optimizer in turn (interleaved, so machine noise hits
all alike); the table shows the median over runs of the per-step time. The bound: both
optimizers read parameter, gradient and two state tensors and write parameter and the two
states, 28 bytes per parameter; divided by the best memory bandwidth measured in the same run
(a.add_(b, alpha=s) over arrays far larger than the caches: reads a and b, writes a, 12 bytes
per element, no write-allocate ambiguity). torch runs with one thread per core, as keel.
"""

import argparse
import os
import statistics
import time

import torch

import keel
import keel.optim as ko


def make_params(total):
    sizes = [768] * 200
    big = int((total - sum(sizes)) // 25)
    sizes += [big] * 25
    params = [torch.nn.Parameter(torch.randn(n) * 0.02) for n in sizes]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params


def triad_bandwidth(n, repeat=5):
    a, b = torch.rand(n), torch.rand(n)
    best = 0.0
    for _ in range(repeat):
        t = time.perf_counter()
        a.add_(b, alpha=0.5)
        best = max(best, 12 * n / (time.perf_counter() - t))
    return best


def time_steps(opt, steps):
    opt.step()  # creates state (not timed)
    t = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t) / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", type=float, default=100e6)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())  # Debian's torch may start with 1 (OpenMP default)
    params = make_params(int(args.params))
    n = sum(p.numel() for p in params)
    contenders = {
        "keel AdamW": lambda: ko.AdamW(params, lr=1e-3),
        "keel AGD": lambda: ko.AGD(params, lr=1e-4),
        "torch AdamW foreach": lambda: torch.optim.AdamW(params, lr=1e-3, foreach=True),
        "torch AdamW for-loop": lambda: torch.optim.AdamW(params, lr=1e-3, foreach=False),
    }
    times = {name: [] for name in contenders}
    bandwidth = []
    for run in range(args.runs):
        bandwidth.append(triad_bandwidth(50_000_000))
        for name, make in contenders.items():
            opt = make()
            times[name].append(time_steps(opt, args.steps))
            del opt
        print(f"run {run + 1}/{args.runs}: " + ", ".join(
            f"{k} {v[-1]:.3f}s" for k, v in times.items()), flush=True)
    bw = max(bandwidth)
    bound = 28 * n / bw
    med = {k: statistics.median(v) for k, v in times.items()}
    torch_best = min(med["torch AdamW foreach"], med["torch AdamW for-loop"])
    print(f"\n{n / 1e6:.1f}M float32 parameters in {len(params)} tensors; threads: "
          f"{torch.get_num_threads()} (torch and keel); SIMD target {keel._C.optim_simd_target()}")
    print(f"memory bandwidth (triad, best of {args.runs}x5): {bw / 1e9:.1f} GB/s with {torch.get_num_threads()} threads -> bound "
          f"{bound * 1e3:.0f} ms/step (28 B/param)")
    print(f"{'optimizer':24} {'median ms/step':>15} {'vs torch best':>14} {'% of bound':>11}")
    for k, v in med.items():
        print(f"{k:24} {v * 1e3:15.0f} {torch_best / v:13.2f}x {100 * bound / v:10.0f}%")


if __name__ == "__main__":
    main()

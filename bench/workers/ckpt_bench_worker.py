"""Worker for bench/ckpt_save.py (runs under `keel run --nproc-per-node 1`, so keel.ckpt uses
the agent's in-memory tier). For each state size: blocking time of keel.ckpt save vs
torch.save to the same directory, a plain memory copy of the same bytes (the bound), and
restore (keel load from memory vs torch.load from the file just written: page cache warm)."""

import argparse
import os
import statistics
import time

import torch

import keel.ckpt


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--sizes-mib", default="256,1024")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"{'state':>8} {'keel save':>10} {'torch.save':>11} {'ratio':>7} {'memcpy':>8} "
          f"{'keel GB/s':>10} {'memcpy GB/s':>12} {'keel load':>10} {'torch.load':>11} "
          f"{'speedup':>8}", flush=True)
    for mib in (int(s) for s in args.sizes_mib.split(",")):
        n = mib * 2**20 // 4
        # A model-like state: 64 tensors.
        state = {"model": {f"layer{i}.weight": torch.randn(n // 64) for i in range(64)}}
        nbytes = n * 4
        ckpt = keel.ckpt.Checkpointer(os.path.join(args.dir, f"keel-{mib}"), keep_last=1)
        torch_path = os.path.join(args.dir, f"torch-{mib}.pt")
        step = [0]

        def keel_save():
            step[0] += 1
            ckpt.save(step[0], state, persist=False)  # memory only: what save() blocks on

        t_keel = timed(keel_save, args.repeat)
        t_torch = timed(lambda: torch.save(state, torch_path), args.repeat)
        src = torch.cat([t for t in state["model"].values()])
        dst = torch.empty_like(src)
        t_copy = timed(lambda: dst.copy_(src), args.repeat)
        t_load = timed(ckpt.load, args.repeat)
        assert ckpt.loaded_from == "memory"
        t_tload = timed(lambda: torch.load(torch_path), args.repeat)
        print(f"{mib:>5} MiB {t_keel:>9.3f}s {t_torch:>10.3f}s {t_keel / t_torch:>6.2f}x "
              f"{t_copy:>7.3f}s {nbytes / t_keel / 1e9:>10.2f} {nbytes / t_copy / 1e9:>12.2f} "
              f"{t_load:>9.3f}s {t_tload:>10.3f}s {t_tload / t_load:>7.2f}x", flush=True)
        os.remove(torch_path)
        del state, src, dst


if __name__ == "__main__":
    main()

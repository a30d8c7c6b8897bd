"""Worker for bench/ckpt_save.py (runs under `keel run --nproc-per-node 1`, so keel.ckpt uses
the agent's memory slots). For each state size, in one process:

- save: blocking time of keel.ckpt save (memory only: what save() blocks on; the agent
  persists in the background) vs torch.save of the same state to the same disk. The first
  save allocates the slot's pages ("1st save"); every later save copies into pages that are
  already mapped ("save").
- copy bandwidth: keel's save vs a plain memory copy of the same tensors (torch copy_ into
  warm buffers of the same size, all cores): the physical bound.
- save, torch.save and the copy run interleaved, --repeat rounds; the table shows each one's
  median and the median of the per-round ratios (noise on a shared VM hits all three alike).
- restore: keel load from memory vs torch.load of the file torch.save wrote (page cache warm,
  which favours torch.load); also each followed by reading every byte (a sum), so keel's
  zero-copy restore pays for touching its pages too.
"""

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


def touch(state):
    return sum(float(t.sum()) for t in state["model"].values())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--sizes-mib", default="256,1024")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count())
    print(f"{'state':>8} {'1st save':>9} {'save':>7} {'torch.save':>11} {'ratio':>6} "
          f"{'GB/s':>6} {'memcpy':>7} {'of bound':>8} {'load':>7} {'torch.load':>11} "
          f"{'speedup':>8} {'load+read':>10} {'torch+read':>11} {'speedup':>8}", flush=True)
    step = [0]  # one step sequence across sizes: the memory slots are the rank's, not per dir
    for mib in (int(s) for s in args.sizes_mib.split(",")):
        n = mib * 2**20 // 4
        # A model-like state: 64 tensors.
        state = {"model": {f"layer{i}.weight": torch.randn(n // 64) for i in range(64)}}
        nbytes = n * 4
        ckpt = keel.ckpt.Checkpointer(os.path.join(args.dir, f"keel-{mib}"), keep_last=1)
        torch_path = os.path.join(args.dir, f"torch-{mib}.pt")

        def keel_save():
            step[0] += 1
            ckpt.save(step[0], state, persist=False)

        t_first = timed(keel_save, 1)
        keel_save()  # the other slot's first save
        dst = [torch.empty_like(t) for t in state["model"].values()]  # warm, like a slot

        def plain_copy():
            for d, t in zip(dst, state["model"].values()):
                d.copy_(t)

        plain_copy()
        # Interleaved, so that the machine's noise hits all three alike; ratios are taken per
        # round, then the median.
        keel_t, torch_t, copy_t = [], [], []
        for _ in range(args.repeat):
            keel_t.append(timed(keel_save, 1))
            torch_t.append(timed(lambda: torch.save(state, torch_path), 1))
            copy_t.append(timed(plain_copy, 1))
        del dst
        t_keel, t_torch, t_copy = (statistics.median(x) for x in (keel_t, torch_t, copy_t))
        vs_torch = statistics.median(k / t for k, t in zip(keel_t, torch_t))
        of_bound = statistics.median(c / k for k, c in zip(keel_t, copy_t))
        t_load = timed(ckpt.load, args.repeat)
        got_step, got = ckpt.load()
        assert ckpt.loaded_from == "memory" and got_step == step[0], (ckpt.loaded_from, got_step)
        assert sum(t.numel() for t in got["model"].values()) == n
        del got
        t_tload = timed(lambda: torch.load(torch_path), args.repeat)
        t_load_read = timed(lambda: touch(ckpt.load()[1]), args.repeat)
        t_tload_read = timed(lambda: touch(torch.load(torch_path)), args.repeat)
        bw, bound = nbytes / t_keel / 1e9, nbytes / t_copy / 1e9
        print(f"{mib:>5} MiB {t_first:>8.3f}s {t_keel:>6.3f}s {t_torch:>10.3f}s "
              f"{vs_torch:>5.2f}x {bw:>6.2f} {bound:>7.2f} {of_bound:>7.0%} "
              f"{t_load:>6.3f}s {t_tload:>10.3f}s {t_tload / t_load:>7.0f}x "
              f"{t_load_read:>9.3f}s {t_tload_read:>10.3f}s "
              f"{t_tload_read / t_load_read:>7.1f}x", flush=True)
        os.remove(torch_path)
        del state


if __name__ == "__main__":
    main()

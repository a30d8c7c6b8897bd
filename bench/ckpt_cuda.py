#!/usr/bin/env python3
"""keel.ckpt save of CUDA state vs torch.save, and the device->host bound, same run (GPU only).

    python3 bench/ckpt_cuda.py [--sizes-mib 1024,4096] [--repeat 5]

keel's save copies each CUDA tensor once, device->host, straight into the page-locked memory
slot; the blocking time is compared with torch.save of the same state (to a file in /tmp,
page cache) and with copying the same tensors into page-locked host memory allocated by
torch (the bound). Runs against the agent stand-in (python/tests/agent_standin.py), since the
copy is the worker's side: the agent only hands out the slot and persists later.
"""

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python" / "tests"))

import torch  # noqa: E402

from agent_standin import StandInAgent  # noqa: E402


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes-mib", default="1024,4096")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    agent = StandInAgent()
    os.environ.update(agent.env())
    import keel.ckpt
    print(f"{'state':>9} {'keel save':>10} {'torch.save':>11} {'ratio':>6} {'keel GB/s':>10} "
          f"{'pinned D2H GB/s':>16} {'of bound':>9} {'1st save':>9}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        ckpt = keel.ckpt.Checkpointer(os.path.join(d, "ckpt"))
        step = [0]
        for mib in (int(s) for s in args.sizes_mib.split(",")):
            n = mib * 2**20 // 4
            state = {"model": {f"layer{i}": torch.randn(n // 64, device="cuda")
                               for i in range(64)}}

            def save():
                step[0] += 1
                ckpt.save(step[0], state, persist=False)

            t_first = timed(save, 1)
            save()
            t_keel = timed(save, args.repeat)
            path = os.path.join(d, "torch.pt")
            t_torch = timed(lambda: torch.save(state, path), args.repeat)
            os.remove(path)
            pinned = [torch.empty(n // 64, pin_memory=True) for _ in range(64)]

            def bound():
                for dst, src in zip(pinned, state["model"].values()):
                    dst.copy_(src, non_blocking=True)

            bound()
            t_bound = timed(bound, args.repeat)
            got_step, got = ckpt.load()
            assert got_step == step[0] and ckpt.loaded_from == "memory"
            assert torch.equal(got["model"]["layer63"], state["model"]["layer63"].cpu())
            nbytes = n * 4
            print(f"{mib:>5} MiB {t_keel:>9.3f}s {t_torch:>10.3f}s {t_keel / t_torch:>5.2f}x "
                  f"{nbytes / t_keel / 1e9:>10.1f} {nbytes / t_bound / 1e9:>16.1f} "
                  f"{t_bound / t_keel:>8.0%} {t_first:>8.3f}s", flush=True)
            del state, pinned, got
    agent.close()


if __name__ == "__main__":
    main()

"""Test worker for tests/test_ckpt_e2e.py (runs under `keel run --nproc-per-node 1`).

--mode kill-agent: saves a small state at step 10 and waits until the agent committed it,
  then saves a large state at step 20 (persisted in the background) and waits to be killed.
--mode too-big: saves a state larger than the shared-memory filesystem and reports the error.
"""

import argparse
import os
import time

import torch

import keel.ckpt


def small():
    return {"w": torch.arange(1000, dtype=torch.float32), "step": 10}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--mode", choices=["kill-agent", "too-big"], required=True)
    p.add_argument("--mib", type=int, default=512)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    ckpt = keel.ckpt.Checkpointer(args.ckpt)
    big = {"w": torch.ones(args.mib * 2**20 // 4)}
    if args.mode == "too-big":
        try:
            ckpt.save(1, big)
            print("saved", flush=True)
        except Exception as e:  # noqa: BLE001 - report whatever the error is
            print(f"save failed: {type(e).__name__}: {e}", flush=True)
        return
    ckpt.save(10, small())
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(args.ckpt, "step-10", "COMMITTED")):
        assert time.time() < deadline, "step 10 was never committed"
        time.sleep(0.01)
    print("committed 10", flush=True)
    ckpt.save(20, big)
    print("saved 20", flush=True)
    time.sleep(120)  # the test kills the agent while it persists step 20


if __name__ == "__main__":
    main()

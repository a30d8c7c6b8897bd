"""Test worker: deterministic DDP training that checkpoints with keel.ckpt and resumes.

Data for (step, rank) comes from a generator seeded by both, so a run that crashes and
resumes from a checkpoint must end with exactly the parameters of a run that never crashed.
--crash-at-step S makes rank 1 SIGKILL itself at step S on the first attempt.
"""

import argparse
import os
import signal
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import keel.ckpt


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--save-every", type=int, default=5)
    p.add_argument("--persist-every", type=int, default=1,
                   help="saves at multiples of this persist to disk; others stay in memory")
    p.add_argument("--crash-at-step", type=int, default=-1)
    p.add_argument("--step-sleep", type=float, default=0.0)
    p.add_argument("--tag", default="")
    args = p.parse_args()

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ckpt = keel.ckpt.Checkpointer(args.ckpt)
    step, state = ckpt.load()
    start = 1
    if step is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        start = step + 1
        if rank == 0:
            print(f"resumed from step {step} ({ckpt.loaded_from})", flush=True)
    ddp = DDP(model)
    for s in range(start, args.steps + 1):
        if rank == 1 and s == args.crash_at_step and attempt == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        g = torch.Generator().manual_seed(1000 * s + rank)
        x = torch.randn(8, 16, generator=g)
        y = torch.randn(8, 1, generator=g)
        loss = torch.nn.functional.mse_loss(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        time.sleep(args.step_sleep)
        if s % args.save_every == 0:
            ckpt.save(s, {"model": model.state_dict(), "optim": opt.state_dict(), "step": s},
                      persist=s % args.persist_every == 0)
    if rank == 0:
        torch.save(model.state_dict(), args.out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

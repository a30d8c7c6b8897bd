"""Test worker: a real torch DDP job (gloo) that leaves traces the end-to-end tests can read.

Each process writes DIR/r<rank>-c<restart>-w<world>.pid holding its pid once its process
group is up, then trains a tiny linear model for --steps steps (sleeping --step-sleep per
step, so a test can act mid-training). --fail-rank R --fail-code C makes rank R exit with C
after two steps, on every attempt.
"""

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--step-sleep", type=float, default=0.0)
    p.add_argument("--pid-dir", default="")
    p.add_argument("--fail-rank", type=int, default=-1)
    p.add_argument("--fail-code", type=int, default=3)
    p.add_argument("--report-steps", action="store_true")  # keel.report_step each step
    p.add_argument("--tag", default="")  # lets tests find stray processes by command line
    args = p.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    restart = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    if args.pid_dir:
        path = os.path.join(args.pid_dir, f"r{rank}-c{restart}-w{world}.pid")
        with open(path + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(path + ".tmp", path)
    torch.manual_seed(0)
    model = DDP(torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(args.steps):
        if rank == args.fail_rank and step == 2:
            print(f"rank {rank} failing with code {args.fail_code}", file=sys.stderr, flush=True)
            sys.exit(args.fail_code)
        loss = model(torch.randn(4, 8)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if args.report_steps:
            import keel
            keel.report_step(step + 1)
        time.sleep(args.step_sleep)
    dist.destroy_process_group()
    print(f"done rank {rank} world {world} restart {restart}", flush=True)


if __name__ == "__main__":
    main()

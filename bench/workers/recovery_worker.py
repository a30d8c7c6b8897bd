"""Worker for bench/train_recovery.py: a DDP job that timestamps its start and steps.

Writes into --out: start-r<rank>-c<attempt> (wall time when the process began, before torch
is imported), pid-r<rank>-c<attempt>, and step-r<rank>-c<attempt> (wall time when its first
training step completed). Runs unchanged under keel run and torchrun.
"""

import time

T0 = time.time()

import argparse  # noqa: E402
import os  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402


def put(out, name, value):
    with open(os.path.join(out, name + ".tmp"), "w") as f:
        f.write(str(value))
    os.rename(os.path.join(out, name + ".tmp"), os.path.join(out, name))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--step-sleep", type=float, default=0.05)
    args = p.parse_args()
    rank = int(os.environ["RANK"])
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    put(args.out, f"start-r{rank}-c{attempt}", T0)
    put(args.out, f"pid-r{rank}-c{attempt}", os.getpid())
    dist.init_process_group("gloo")
    model = DDP(torch.nn.Linear(64, 64))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(args.steps):
        loss = model(torch.randn(8, 64)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 0:
            put(args.out, f"step-r{rank}-c{attempt}", time.time())
        time.sleep(args.step_sleep)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

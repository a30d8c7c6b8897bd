"""Test worker: deterministic DDP training on dynamic shards (keel.data.ElasticSampler, shuffled)
with the model, optimizer and data position checkpointed by keel.ckpt.

Why a run that crashes ends bitwise identical to one that does not: DDP keeps the two ranks in
lockstep and every shard holds a whole number of batches, so both ranks ask for a shard at the
same step; the master hands out the epoch's shards in a seeded order, so the *pair* of shards
trained on at each step is fixed, only which rank gets which may change, and a 2-rank
all-reduce (a + b == b + a) does not see that. A restored data position hands the in-flight
shards out again from where the checkpointed model had consumed them.
--crash-at-step S makes rank 1 SIGKILL itself at step S on the first attempt.
"""

import argparse
import json
import os
import signal

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import keel.ckpt
from keel.data import ElasticSampler

RECORDS, BATCH, SHARD, EPOCHS = 2048, 8, 64, 2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--save-every", type=int, default=10)
    p.add_argument("--crash-at-step", type=int, default=-1)
    p.add_argument("--tag", default="")
    args = p.parse_args()

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    g = torch.Generator().manual_seed(7)
    xs, ys = torch.randn(RECORDS, 16, generator=g), torch.randn(RECORDS, 1, generator=g)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sampler = ElasticSampler("train", dataset_size=RECORDS, batch_size=BATCH, shuffle=True,
                             seed=3, epochs=EPOCHS, shard_size=SHARD)
    ckpt = keel.ckpt.Checkpointer(args.ckpt)
    step, state = ckpt.load()
    if step is None:
        step = 0
    else:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        sampler.load_state_dict(state["data"])
        if rank == 0:
            print(f"resumed from step {step} ({ckpt.loaded_from})", flush=True)
    ddp = DDP(model)
    seen = []
    for batch in sampler:
        step += 1
        if rank == 1 and step == args.crash_at_step and attempt == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        assert len(batch) == BATCH, (step, len(batch))
        seen.extend(batch)
        idx = torch.tensor(batch)
        loss = torch.nn.functional.mse_loss(ddp(xs[idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.save_every == 0:
            ckpt.save(step, {"model": model.state_dict(), "optim": opt.state_dict(),
                             "data": sampler.state_dict()}, persist=False)
    with open(f"{args.out}.rank-{rank}.json", "w") as f:
        json.dump({"steps": step, "seen": seen, "attempt": attempt}, f)
    if rank == 0:
        torch.save(model.state_dict(), args.out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

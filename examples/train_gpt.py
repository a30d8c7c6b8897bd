"""A small GPT-style character model trained with DDP (gloo on CPU, NCCL on GPUs).

An unmodified torchrun script: it reads the torchelastic environment through
init_process_group("env://") and nothing keel-specific. Run it with

    keel run --nproc-per-node 2 examples/train_gpt.py --steps 60

`--crash-rank R --crash-at-step S` makes rank R kill itself with SIGKILL at step S on the
first attempt only (TORCHELASTIC_RESTART_COUNT == 0), to show a restart. With `--ckpt-dir`,
model and optimizer are checkpointed every `--save-every` steps with keel.ckpt (plain
safetensors files, no pickle) and a restarted attempt resumes from the newest one.
"""

import argparse
import os
import signal
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

TEXT = (
    "keel keeps training jobs alive when machines fail. it restarts what failed, shrinks and "
    "grows the job, and hands out data as workers ask for it. "
) * 64


class TinyGPT(nn.Module):
    def __init__(self, vocab, dim=64, heads=4, layers=2, context=32):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(context, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(dim, vocab)
        mask = torch.triu(torch.full((context, context), float("-inf")), diagonal=1)
        self.register_buffer("mask", mask)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos[:t]
        x = self.blocks(x, mask=self.mask[:t, :t])
        return self.head(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--context", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--crash-rank", type=int, default=-1)
    p.add_argument("--crash-at-step", type=int, default=-1)
    p.add_argument("--ckpt-dir", default="")
    p.add_argument("--save-every", type=int, default=10)
    args = p.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    torch.manual_seed(0)

    chars = sorted(set(TEXT))
    data = torch.tensor([chars.index(c) for c in TEXT], dtype=torch.long)
    model = TinyGPT(len(chars), context=args.context).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    first = 1
    ckpt = None
    if args.ckpt_dir:
        import keel.ckpt  # only needed when checkpointing
        ckpt = keel.ckpt.Checkpointer(args.ckpt_dir)
        saved, state = ckpt.load()
        if saved is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optim"])
            first = saved + 1
    ddp = DDP(model, device_ids=[device.index] if cuda else None)

    if rank == 0:
        resumed = (f", resuming after step {first - 1} (checkpoint restored from "
                   f"{ckpt.loaded_from})" if first > 1 else ", from scratch")
        print(f"training on {world} worker(s), attempt {restart + 1}{resumed}", flush=True)
    start = time.time()
    for step in range(first, args.steps + 1):
        if rank == args.crash_rank and step == args.crash_at_step and restart == 0:
            print(f"rank {rank}: simulating a crash at step {step} (SIGKILL)", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        gen = torch.Generator().manual_seed(1000 * step + rank)  # each rank its own batches
        starts = torch.randint(0, len(data) - args.context - 1, (args.batch,), generator=gen)
        x = torch.stack([data[s:s + args.context] for s in starts]).to(device)
        y = torch.stack([data[s + 1:s + args.context + 1] for s in starts]).to(device)
        loss = F.cross_entropy(ddp(x).reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ckpt is not None and step % args.save_every == 0:
            ckpt.save(step, {"model": model.state_dict(), "optim": opt.state_dict(), "step": step})
        if rank == 0 and (step % 10 == 0 or step == args.steps):
            print(f"step {step}/{args.steps} loss {loss.item():.3f} "
                  f"({(time.time() - start) / (step - first + 1) * 1000:.0f} ms/step)", flush=True)
    dist.destroy_process_group()
    if rank == 0:
        print("training finished", flush=True)


if __name__ == "__main__":
    main()

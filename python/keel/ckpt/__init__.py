"""keel.ckpt: checkpoints of nested training state in safetensors files, without pickle.

    ckpt = keel.ckpt.Checkpointer("/data/ckpt")
    step, state = ckpt.load()        # newest committed step, or (None, None)
    ckpt.save(step, {"model": model.state_dict(), "optim": opt.state_dict(), "step": step})

Status (see docs/formats/checkpoint.md): saves persist synchronously to disk — every rank
writes DIR/step-<N>/rank-<R>.safetensors, then (after a barrier when torch.distributed is
initialized) rank 0 commits the step (COMMITTED + latest, atomically). The shared-memory tier
hosted by the agent (save in ~1 s, restore from memory after a crash) is not built yet.
"""

import json
import os
import shutil
import sys

import torch

from keel import _C
from keel.ckpt._state import flatten, unflatten

__all__ = ["Checkpointer"]


def _atomic_write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dist():
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), dist
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), None


class Checkpointer:
    """Saves and loads nested state under `directory` (see the module docstring).

    keep_last: committed steps to keep (older ones are deleted by rank 0); 0 keeps all.
    """

    def __init__(self, directory, keep_last=3):
        if not isinstance(keep_last, int) or keep_last < 0:
            raise ValueError(f"keep_last must be an int >= 0, got {keep_last!r}")
        self.directory = os.path.abspath(directory)
        self.keep_last = keep_last
        os.makedirs(self.directory, exist_ok=True)

    def _step_dir(self, step):
        return os.path.join(self.directory, f"step-{step}")

    def save(self, step, state, persist=True):
        """Writes `state` for `step` (an int >= 0). Every rank must call it for the step."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        if not persist:
            raise NotImplementedError(
                "persist=False needs the agent's shared-memory tier, which is not built yet")
        structure, tensors = flatten(state)
        rank, world, dist = _dist()
        entries = []
        for name, t, dtype_name in tensors:
            t = t.detach()
            if t.device.type != "cpu":
                t = t.cpu()
            t = t.contiguous()
            if t.dtype == torch.bool:
                t = t.view(torch.uint8)  # torch 1.13 cannot export bool through DLPack
            entries.append((name, t, dtype_name))
        step_dir = self._step_dir(step)
        os.makedirs(step_dir, exist_ok=True)
        _C.write_safetensors(os.path.join(step_dir, f"rank-{rank}.safetensors"), entries,
                             {"keel.structure": structure, "keel.step": str(step),
                              "keel.rank": str(rank), "keel.world_size": str(world)})
        if dist is not None:
            dist.barrier()  # every rank's file is durable before the step is committed
        if rank == 0:
            _atomic_write(os.path.join(step_dir, "COMMITTED"),
                          json.dumps({"step": step, "world_size": world}) + "\n")
            _atomic_write(os.path.join(self.directory, "latest"), f"{step}\n")
            self._retain()

    def _committed_steps(self):
        steps = []
        for entry in os.listdir(self.directory):
            if entry.startswith("step-") and entry[5:].isdigit() and os.path.exists(
                    os.path.join(self.directory, entry, "COMMITTED")):
                steps.append(int(entry[5:]))
        return sorted(steps, reverse=True)

    def _retain(self):
        if self.keep_last == 0:
            return
        for step in self._committed_steps()[self.keep_last:]:
            shutil.rmtree(self._step_dir(step), ignore_errors=True)

    def load(self):
        """Returns (step, state) of the newest committed step this rank can read intact,
        or (None, None). A corrupt or truncated file is reported and the previous committed
        step is used; steps without COMMITTED (half-written) are never loaded."""
        rank, _, dist = _dist()
        for step in self._committed_steps():
            loaded = self._load_step(step, rank)
            if dist is not None:
                # Every rank must resume from the same step: use it only if all could read it.
                ok = torch.tensor([1 if loaded is not None else 0])
                dist.all_reduce(ok, op=dist.ReduceOp.MIN)
                if ok.item() == 0:
                    continue
            if loaded is not None:
                return step, loaded
        return None, None

    def _load_step(self, step, rank):
        path = os.path.join(self._step_dir(step), f"rank-{rank}.safetensors")
        try:
            entries, metadata = _C.read_safetensors(path, True)
            tensors = {}
            for name, dtype_name, capsule in entries:
                t = torch.from_dlpack(capsule)
                tensors[name] = t.view(torch.bool) if dtype_name == "bool" else t
            return unflatten(metadata["keel.structure"], tensors)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            print(f"keel.ckpt: step {step} is unusable on rank {rank} ({e}); "
                  f"trying an older one", file=sys.stderr, flush=True)
            return None

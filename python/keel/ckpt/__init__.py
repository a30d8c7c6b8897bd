"""keel.ckpt: checkpoints of nested training state in safetensors files, without pickle.

    ckpt = keel.ckpt.Checkpointer("/data/ckpt")
    step, state = ckpt.load()        # newest consistent step, or (None, None); ckpt.loaded_from
    ckpt.save(step, {"model": model.state_dict(), "optim": opt.state_dict(), "step": step})
    ckpt.save(step, state, persist=False)   # memory only (needs `keel run`)

Inside `keel run` (any number of nodes), save() copies the state into one of the rank's two
shared-memory slots owned by the agent (they survive a worker crash) and returns; the agent
persists it to DIR/step-<N>/rank-<R>.safetensors in the background and the master commits the
step once every rank persisted it. load() after a restart restores the step the master chose
(the newest one every rank holds in memory) without copying, else the newest committed step
on disk whose checksum verifies. Elsewhere (plain python, torchrun) save() persists
synchronously: every rank writes its file, then (after a barrier when torch.distributed is
initialized) rank 0 commits. The engine is keel::ckpt::Checkpointer (C++); see
docs/formats/checkpoint.md.
"""

import os
import sys

import torch

from keel import _C
from keel.ckpt._state import flatten, unflatten

__all__ = ["Checkpointer"]


def _dist():
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), dist
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), None


def _warn(text):
    print(f"keel.ckpt: {text}", file=sys.stderr, flush=True)


class Checkpointer:
    """Saves and loads nested state under `directory` (see the module docstring).

    keep_last: committed steps to keep (older ones are deleted); 0 keeps all; None: the
    `keel run --keep-last` setting, else 3.
    copy_threads: threads copying into memory (0: one per core, at most 8).
    After load(), `loaded_from` is "memory", "disk" or None.
    """

    def __init__(self, directory, keep_last=None, copy_threads=0):
        if keep_last is not None and (isinstance(keep_last, bool) or
                                      not isinstance(keep_last, int) or keep_last < 0):
            raise ValueError(f"keep_last must be an int >= 0 or None, got {keep_last!r}")
        if isinstance(copy_threads, bool) or not isinstance(copy_threads, int) or copy_threads < 0:
            raise ValueError(f"copy_threads must be an int >= 0, got {copy_threads!r}")
        self._c = _C.Checkpointer(os.fspath(directory), -1 if keep_last is None else keep_last,
                                  copy_threads)
        self.directory = self._c.dir
        self.keep_last = self._c.keep_last
        self.loaded_from = None
        self._warned_memory_only = False

    def save(self, step, state, persist=True):
        """Saves `state` for `step` (an int >= 0). Every rank must call it for the step.
        Blocks only for the copy into memory when running under `keel run`."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        structure, tensors = flatten(state)
        metadata = {"keel.structure": structure}
        if self._c.in_agent_memory and any(t.device.type == "cuda" for _, t, _ in tensors):
            if self._save_by_copy(step, tensors, metadata, persist):
                return
        entries = []
        for name, t, dtype_name in tensors:
            t = t.detach()
            if t.device.type != "cpu":
                t = t.cpu()
            t = t.contiguous()
            if t.dtype == torch.bool:
                t = t.view(torch.uint8)  # torch 1.13 cannot export bool through DLPack
            entries.append((name, t, dtype_name))
        where = self._c.save(step, entries, metadata, persist)
        if where == "skipped" and not self._warned_memory_only:
            _warn("save(persist=False) needs `keel run` (the agent's memory tier); skipping "
                  "memory-only saves here")
            self._warned_memory_only = True
        if where == "disk" and not self._c.under_agent and self._c.world_size > 1:
            rank, world, dist = _dist()
            if dist is not None:
                dist.barrier()  # every rank's file is durable before the step is committed
            if rank == 0:
                _C.commit_checkpoint_step(self.directory, step, world, self.keep_last)

    def _save_by_copy(self, step, tensors, metadata, persist):
        """Copies every tensor with torch straight into the memory slot — for CUDA tensors one
        device->host copy into the page-locked slot, no intermediate host tensor. Returns
        False if the memory tier became unavailable."""
        layout = [(name, dtype_name, list(t.shape)) for name, t, dtype_name in tensors]
        try:
            dsts = self._c.begin_save(step, layout, metadata, True)
        except (ValueError, RuntimeError, OSError) as e:
            if self._c.in_agent_memory:  # a real error (e.g. no room), not a missing agent
                raise
            _warn(f"{e}; saving to disk")
            return False
        cuda = False
        for (_, t, dtype_name), capsule in zip(tensors, dsts):
            dst = torch.from_dlpack(capsule)
            src = t.detach()
            if dtype_name == "bool":
                src = src.view(torch.uint8)
            cuda = cuda or src.device.type == "cuda"
            dst.copy_(src, non_blocking=src.device.type == "cuda")
        if cuda:
            torch.cuda.synchronize()
        self._c.finish_save(persist)
        return True

    @staticmethod
    def _tensors(entries):
        tensors = {}
        for name, dtype_name, capsule in entries:
            t = torch.from_dlpack(capsule)
            tensors[name] = t.view(torch.bool) if dtype_name == "bool" else t
        return tensors

    def _from_memory(self):
        """(step, state) restored from the agent's memory, or None."""
        if not self._c.in_agent_memory:
            return None
        try:
            got = self._c.load_from_memory()
            if got is None:
                return None
            step, entries, metadata = got
            return step, unflatten(metadata["keel.structure"], self._tensors(entries))
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            _warn(f"the in-memory copy is unusable ({e}); trying disk")
            return None

    def committed_steps(self):
        """Committed steps on disk, newest first."""
        return self._c.committed_steps()

    def load(self):
        """Returns (step, state) of the newest consistent step, or (None, None): the step the
        master chose from memory, else the newest committed step this rank reads intact (a
        corrupt or truncated file is reported and the previous committed step is used; steps
        without COMMITTED are never loaded). Every rank must call it."""
        rank, _, dist = _dist()
        self.loaded_from = None
        found = self._from_memory()
        if dist is not None:
            # All ranks restore from memory, or none does (a rank whose copy was unusable).
            step = found[0] if found is not None else -1
            bounds = torch.tensor([step, -step])
            dist.all_reduce(bounds, op=dist.ReduceOp.MIN)
            if bounds[0].item() < 0 or bounds[0].item() != -bounds[1].item():
                found = None
        if found is not None:
            self.loaded_from = "memory"
            return found
        for step in self.committed_steps():
            loaded = self._load_step(step, rank)
            if dist is not None:
                # Every rank must resume from the same step: use it only if all could read it.
                ok = torch.tensor([1 if loaded is not None else 0])
                dist.all_reduce(ok, op=dist.ReduceOp.MIN)
                if ok.item() == 0:
                    continue
            if loaded is not None:
                self.loaded_from = "disk"
                return step, loaded
        return None, None

    def _load_step(self, step, rank):
        try:
            entries, metadata = self._c.load_from_disk(step)
            return unflatten(metadata["keel.structure"], self._tensors(entries))
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            _warn(f"step {step} is unusable on rank {rank} ({e}); trying an older one")
            return None

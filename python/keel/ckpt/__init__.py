"""keel.ckpt: checkpoints of nested training state in safetensors files, without pickle.

    ckpt = keel.ckpt.Checkpointer("/data/ckpt")
    step, state = ckpt.load()        # newest committed step, or (None, None)
    ckpt.save(step, {"model": model.state_dict(), "optim": opt.state_dict(), "step": step})

Inside a single-node `keel run`, save() copies the state into the agent's shared memory
(/dev/shm, it survives a worker crash) and returns; the agent persists it to
DIR/step-<N>/rank-<R>.safetensors in the background and commits the step once every rank's
file is durable. load() after a restart restores from memory when every rank holds the same
step, else from the newest committed step on disk. Elsewhere (plain python, torchrun,
multi-node keel jobs for now) save() persists synchronously: every rank writes its file, then
(after a barrier when torch.distributed is initialized) rank 0 commits. See
docs/formats/checkpoint.md.
"""

import os
import socket
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


def _agent_memory():
    """(shm_dir, socket_address) when the agent's memory tier serves this worker, else None."""
    shm = os.environ.get("KEEL_SHM_DIR")
    sock = os.environ.get("KEEL_AGENT_SOCKET")
    if not shm or not sock or os.environ.get("GROUP_WORLD_SIZE", "1") != "1":
        return None
    return shm, ("\0" + sock[1:]) if sock.startswith("@") else sock


class Checkpointer:
    """Saves and loads nested state under `directory` (see the module docstring).

    keep_last: committed steps to keep (older ones are deleted); 0 keeps all.
    After load(), `loaded_from` is "memory", "disk" or None.
    """

    def __init__(self, directory, keep_last=3):
        if not isinstance(keep_last, int) or keep_last < 0:
            raise ValueError(f"keep_last must be an int >= 0, got {keep_last!r}")
        self.directory = os.path.abspath(directory)
        self.keep_last = keep_last
        self.loaded_from = None
        self._warned_memory_only = False
        os.makedirs(self.directory, exist_ok=True)

    def _step_dir(self, step):
        return os.path.join(self.directory, f"step-{step}")

    def save(self, step, state, persist=True):
        """Writes `state` for `step` (an int >= 0). Every rank must call it for the step."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        structure, tensors = flatten(state)
        rank, world, dist = _dist()
        memory = _agent_memory()
        if not persist and memory is None:
            if not self._warned_memory_only:
                print("keel.ckpt: save(persist=False) needs `keel run` (the agent's memory "
                      "tier); skipping memory-only saves here", file=sys.stderr, flush=True)
                self._warned_memory_only = True
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
        metadata = {"keel.structure": structure, "keel.step": str(step), "keel.rank": str(rank),
                    "keel.world_size": str(world)}
        if memory is not None and self._save_to_memory(memory, step, rank, entries, metadata,
                                                       persist):
            return
        step_dir = self._step_dir(step)
        os.makedirs(step_dir, exist_ok=True)
        _C.write_safetensors(os.path.join(step_dir, f"rank-{rank}.safetensors"), entries,
                             metadata)
        if dist is not None:
            dist.barrier()  # every rank's file is durable before the step is committed
        if rank == 0:
            _C.commit_checkpoint_step(self.directory, step, world, self.keep_last)

    def _save_to_memory(self, memory, step, rank, entries, metadata, persist):
        """Copies into the agent's shared memory and hands persisting to the agent. Returns
        False (the caller then saves to disk itself) if the agent cannot be told."""
        shm_dir, address = memory
        need = sum(t.numel() * t.element_size() for _, t, _ in entries) + (1 << 20)
        st = os.statvfs(shm_dir)
        free = st.f_bavail * st.f_frsize
        if need > free:
            raise RuntimeError(
                f"keel.ckpt: {shm_dir} has {free / 2**20:.0f} MiB free but this save needs "
                f"{need / 2**20:.0f} MiB: enlarge /dev/shm (docker --shm-size, or mount -o "
                f"remount,size=...) or checkpoint less state")
        # Memory copy only: no checksum (the agent computes it when persisting), no fsync
        # (tmpfs). One thread: on this project's machine two threads were slower (tmpfs page
        # allocation contends; docs/results/ckpt.md).
        _C.write_safetensors(os.path.join(shm_dir, f"rank-{rank}.safetensors"), entries,
                             metadata, checksum=False, durable=False,
                             threads=1)
        message = f"ckpt {rank} {step} {1 if persist else 0} {self.keep_last} {self.directory}"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(message.encode(), address)
            return True
        except OSError as e:
            print(f"keel.ckpt: the agent cannot be reached ({e}); saving to disk directly",
                  file=sys.stderr, flush=True)
            return False

    def _load_from_memory(self, memory, rank, dist):
        """(step, state) from the agent's shared memory when every rank holds the same step."""
        path = os.path.join(memory[0], f"rank-{rank}.safetensors")
        step, state = -1, None
        if os.path.exists(path):
            try:
                entries, metadata = _C.read_safetensors(path, False)  # memory: no CRC
                state = unflatten(metadata["keel.structure"], self._tensors(entries))
                step = int(metadata["keel.step"])
            except (OSError, ValueError, RuntimeError, KeyError) as e:
                print(f"keel.ckpt: the in-memory copy is unusable ({e})", file=sys.stderr,
                      flush=True)
                step, state = -1, None
        if dist is not None:
            bounds = torch.tensor([step, -step])
            dist.all_reduce(bounds, op=dist.ReduceOp.MIN)
            if bounds[0].item() != -bounds[1].item():  # ranks hold different steps
                return None
        return (step, state) if step >= 0 else None

    @staticmethod
    def _tensors(entries):
        tensors = {}
        for name, dtype_name, capsule in entries:
            t = torch.from_dlpack(capsule)
            tensors[name] = t.view(torch.bool) if dtype_name == "bool" else t
        return tensors

    def _committed_steps(self):
        steps = []
        for entry in os.listdir(self.directory):
            if entry.startswith("step-") and entry[5:].isdigit() and os.path.exists(
                    os.path.join(self.directory, entry, "COMMITTED")):
                steps.append(int(entry[5:]))
        return sorted(steps, reverse=True)

    def load(self):
        """Returns (step, state) of the newest committed step this rank can read intact,
        or (None, None). A corrupt or truncated file is reported and the previous committed
        step is used; steps without COMMITTED (half-written) are never loaded."""
        rank, _, dist = _dist()
        self.loaded_from = None
        memory = _agent_memory()
        if memory is not None:
            found = self._load_from_memory(memory, rank, dist)
            if found is not None:
                self.loaded_from = "memory"
                return found
        for step in self._committed_steps():
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
        path = os.path.join(self._step_dir(step), f"rank-{rank}.safetensors")
        try:
            entries, metadata = _C.read_safetensors(path, True)
            return unflatten(metadata["keel.structure"], self._tensors(entries))
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            print(f"keel.ckpt: step {step} is unusable on rank {rank} ({e}); "
                  f"trying an older one", file=sys.stderr, flush=True)
            return None

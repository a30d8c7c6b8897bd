"""keel.data: dynamic data sharding — the master hands out shards, fast workers take more,
and the data position is checkpointed with the model (docs/formats/data-position.md).

    sampler = keel.data.ElasticSampler("train", dataset_size=len(ds), batch_size=32,
                                       shuffle=True, seed=0, epochs=3)
    loader = DataLoader(ds, batch_sampler=sampler)      # or iterate sampler for index batches
    ...
    ckpt.save(step, {"model": ..., "data": sampler.state_dict()})
    ...
    sampler.load_state_dict(state["data"])              # after a restart, before iterating

Inside `keel run` the shards come from the job's master (every rank must create the sampler
with the same arguments); elsewhere from a shard service inside this process (one process).
"""

import os
import time
from collections import deque

from keel import _C

__all__ = ["ElasticSampler"]


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be an int > 0, got {value!r}")
    return value


class ElasticSampler:
    """A batch sampler (yields lists of record indices) over shards handed out by keel.

    shard_size: records per shard (default 100 batches). Within a shard, records are shuffled
    with `seed` when `shuffle` is set; the shard order per epoch is shuffled too.
    Batches may span shards (and epochs); the last batch may be short. Ranks receive as many
    batches as their speed earns them: a DDP loop must tolerate uneven ends (for example
    torch.distributed.algorithms.Join).
    """

    _KEEP_LOG = 10000  # yielded batches remembered for state_dict(consumed_batches=...)

    def __init__(self, name, dataset_size, batch_size, shuffle=False, seed=0, epochs=1,
                 shard_size=None):
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        self.name = name
        self.dataset_size = _positive_int("dataset_size", dataset_size)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.epochs = _positive_int("epochs", epochs)
        self.shard_size = _positive_int("shard_size", shard_size or batch_size * 100)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.shuffle, self.seed = bool(shuffle), seed
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self._round = int(os.environ.get("KEEL_ROUND", "0"))
        master = os.environ.get("KEEL_MASTER_ADDR")
        self._local = not master
        if master:
            self._svc = _C.RemoteShards(master, os.environ.get("KEEL_TOKEN", ""))
        else:
            self._svc = _C.LocalShards()
        self._svc.register(name, dataset_size, self.shard_size, epochs, self.shuffle, seed)
        self._worker = f"rank {self.rank}"
        self._reset()
        self._checkpoints = 0

    def _reset(self):
        self._grants = {}  # grant id -> consumed position of its shard
        self._start = {}  # grant id -> the position it started at
        self._shard = {}  # grant id -> (epoch, index, length)
        self._touch = {}  # grant id -> [first, last] batch number that consumed from it
        self._log = deque(maxlen=self._KEEP_LOG)  # (batch number, {grant id: consumed after})
        self._yielded = 0

    def _order(self, epoch, index, begin, end):
        n = end - begin
        if not self.shuffle:
            return range(begin, end)
        perm = _C.IndexPermutation(n, (self.seed * 1_000_003 + epoch) * 1_000_033 + index)
        return [begin + i for i in perm.range(0, n)]

    def __iter__(self):
        batch, touched = [], {}
        while True:
            got = self._svc.next(self.name, self._worker)
            if got == "finished":
                break
            if got is None:
                # The rest is held by others (or by this batch, not yet reported): emit what
                # we have, then wait for shards they may hand back.
                if batch:
                    yield self._emit(batch, touched)
                    batch, touched = [], {}
                    continue
                time.sleep(0.02)
                continue
            gid, epoch, index, offset, begin, end = got
            order = self._order(epoch, index, begin, end)
            self._grants[gid] = self._start[gid] = offset
            self._shard[gid] = (epoch, index, end - begin)
            pos = offset
            while pos < end - begin:
                take = min(self.batch_size - len(batch), end - begin - pos)
                batch.extend(order[pos:pos + take])
                pos += take
                touched[gid] = pos
                if len(batch) == self.batch_size:
                    yield self._emit(batch, touched)
                    batch, touched = [], {}
        if batch:
            yield self._emit(batch, touched)

    def _emit(self, batch, touched):
        self._yielded += 1
        for gid, pos in touched.items():
            self._svc.report(self.name, gid, pos)
            self._grants[gid] = pos
            self._touch.setdefault(gid, [self._yielded, self._yielded])[1] = self._yielded
        self._log.append((self._yielded, dict(touched)))
        if self._yielded % 1000 == 0:  # forget finished grants no state_dict can ask about
            horizon = self._yielded - self._KEEP_LOG
            for gid in [g for g, (_, last) in self._touch.items() if last <= horizon]:
                if self._grants[gid] == self._shard[gid][2]:
                    for d in (self._grants, self._start, self._shard, self._touch):
                        del d[gid]
        return batch

    def _position_after(self, gid, k):
        """How far grant `gid` was consumed after batch k."""
        first, last = self._touch.get(gid, (k + 1, k + 1))
        if first > k:
            return self._start[gid]  # received after batch k (a prefetch)
        if last <= k:
            return self._grants[gid]
        for n, touched in reversed(self._log):
            if n <= k and gid in touched:
                return touched[gid]
        return self._start[gid]

    def __len__(self):
        """An estimate: batches this rank would get with an even share."""
        per_rank = -(-self.dataset_size * self.epochs // self.world_size)
        return -(-per_rank // self.batch_size)

    def state_dict(self, consumed_batches=None):
        """The job-wide data position (the same dict on every rank; every rank must call it
        at the same step). consumed_batches: how many of the batches this sampler yielded the
        model has trained on (when a DataLoader prefetches); default all of them."""
        consumed = dict(self._grants)
        unconsumed = []
        if consumed_batches is not None and consumed_batches != self._yielded:
            oldest = self._yielded - len(self._log) + 1
            if not isinstance(consumed_batches, int) or not oldest <= consumed_batches <= \
                    self._yielded:
                raise ValueError(f"consumed_batches={consumed_batches!r}: only batches "
                                 f"{oldest}-{self._yielded} are remembered")
            at = {gid: self._position_after(gid, consumed_batches) for gid in consumed}
            consumed = {}
            for gid, pos in at.items():
                epoch, index, length = self._shard[gid]
                if self._grants[gid] == length and pos < length:
                    unconsumed.append((epoch, index, pos))  # reported finished too early
                else:
                    consumed[gid] = pos
        self._checkpoints += 1
        epoch, cursor, pending = self._svc.save_position(
            self.name, self._checkpoints, self.rank, self.world_size, consumed, unconsumed)
        return {"dataset": self.name, "epoch": epoch, "cursor": cursor,
                "pending": [list(p) for p in pending]}

    def load_state_dict(self, state):
        """Continues from a position saved by state_dict (any world size)."""
        if not isinstance(state, dict) or state.get("dataset") != self.name:
            raise ValueError(f"not a data position of dataset {self.name!r}: {state!r:.200}")
        pending = [tuple(p) for p in state["pending"]]
        if self._local:
            self._round += 1  # in-process: every load applies
        self._svc.restore_position(self.name, self._round,
                                   (state["epoch"], state["cursor"], pending))
        self._reset()

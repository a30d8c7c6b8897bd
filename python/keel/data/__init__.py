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

Streams have no fixed size: a producer appends ranges of record offsets to named partitions,
and samplers yield batches of (partition, offset) pairs in append order:

    writer = keel.data.StreamWriter("clicks", shard_size=1024)
    writer.append("part-0", 0, 5000)                    # records [0, 5000) of part-0
    writer.close()                                      # the samplers end once all is read
    for batch in keel.data.ElasticSampler("clicks", batch_size=32, shard_size=1024,
                                          stream=True): ...
"""

import os
import time
from collections import deque

from keel import _C

__all__ = ["ElasticSampler", "StreamWriter"]

_services = {}


def _service(stream):
    """(service, in-process): the job master's shard service under keel run; elsewhere a
    fresh in-process one per sampler, except for streams, whose writer and samplers share
    the process's."""
    master = os.environ.get("KEEL_MASTER_ADDR")
    if not master and not stream:
        return _C.LocalShards(), True
    key = (master, *(os.environ.get(v, "") for v in (
        "KEEL_TOKEN", "KEEL_TLS_CA", "KEEL_TLS_CERT", "KEEL_TLS_KEY"))) if master else None
    if key not in _services:
        _services[key] = _C.RemoteShards(*key) if master else _C.LocalShards()
    return _services[key], not master


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be an int > 0, got {value!r}")
    return value


def _int(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    return value


class StreamWriter:
    """The producer of a stream: registers it and appends ranges of record offsets.

    Ranges of a partition must be contiguous; a range appended again is skipped (so a
    producer that restarts may append from the start). epochs: 1 (the stream ends when
    closed and consumed) or <= 0 (unbounded)."""

    def __init__(self, name, shard_size, epochs=1):
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        self.name = name
        self._svc, _ = _service(stream=True)
        self._svc.register(name, 0, _positive_int("shard_size", shard_size), _int("epochs", epochs),
                           False, 0, stream=True)

    def append(self, partition, begin, end):
        """Appends the partition's records [begin, end); returns how many were new."""
        return self._svc.append(self.name, partition, _int("begin", begin), _int("end", end))

    def close(self):
        """No more records: samplers end once everything appended is consumed."""
        self._svc.append(self.name, "_", 0, 0, last=True)


class ElasticSampler:
    """A batch sampler (yields lists of record indices) over shards handed out by keel.

    shard_size: records per shard (default 100 batches). Within a shard, records are shuffled
    with `seed` when `shuffle` is set; the shard order per epoch is shuffled too.
    epochs <= 0: unbounded. stream=True: a stream written by a StreamWriter (no dataset_size;
    batches hold (partition, offset) pairs in append order).
    Batches may span shards (and epochs); the last batch may be short. Ranks receive as many
    batches as their speed earns them: a DDP loop must tolerate uneven ends (for example
    torch.distributed.algorithms.Join).
    """

    _KEEP_LOG = 10000  # yielded batches remembered for state_dict(consumed_batches=...)

    def __init__(self, name, dataset_size=None, batch_size=None, shuffle=False, seed=0, epochs=1,
                 shard_size=None, stream=False):
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        self.name, self.stream = name, bool(stream)
        if self.stream and dataset_size is not None:
            raise ValueError("a stream has no dataset_size: its StreamWriter appends records")
        self.dataset_size = 0 if self.stream else _positive_int("dataset_size", dataset_size)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.epochs = _int("epochs", epochs)
        self.shard_size = _positive_int("shard_size", shard_size or batch_size * 100)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.shuffle, self.seed = bool(shuffle), seed
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self._round = int(os.environ.get("KEEL_ROUND", "0"))
        self._svc, self._local = _service(self.stream)
        self._svc.register(name, self.dataset_size, self.shard_size, self.epochs, self.shuffle, seed,
                           stream=self.stream)
        self._worker = f"rank {self.rank}"
        self._reset()
        self._checkpoints = 0

    def _reset(self):
        self._grants = {}  # grant id -> consumed position of its shard
        self._start = {}  # grant id -> the position it started at
        self._shard = {}  # grant id -> ((epoch, index, partition, begin, end), length)
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
            gid, epoch, index, offset, begin, end, partition = got
            if self.stream:
                order = [(partition, r) for r in range(begin, end)]
            else:
                order = self._order(epoch, index, begin, end)
            self._grants[gid] = self._start[gid] = offset
            self._shard[gid] = ((epoch, index, partition, begin, end), end - begin)
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
                if self._grants[gid] == self._shard[gid][1]:
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
        if self.stream or self.epochs <= 0:
            raise TypeError("an unbounded dataset or a stream has no length")
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
                (epoch, index, partition, begin, end), length = self._shard[gid]
                if self._grants[gid] == length and pos < length:  # reported finished too early
                    unconsumed.append((epoch, index, pos, partition, begin, end))
                else:
                    consumed[gid] = pos
        self._checkpoints += 1
        epoch, cursor, pending, partitions = self._svc.save_position(
            self.name, self._checkpoints, self.rank, self.world_size, consumed, unconsumed)
        if self.stream:
            return {"dataset": self.name, "stream": True, "partitions": dict(partitions),
                    "pending": [[p, b, e, o] for _, _, o, p, b, e in pending]}
        return {"dataset": self.name, "epoch": epoch, "cursor": cursor,
                "pending": [[e, i, o] for e, i, o, _, _, _ in pending]}

    def load_state_dict(self, state):
        """Continues from a position saved by state_dict (any world size)."""
        if not isinstance(state, dict) or state.get("dataset") != self.name or \
                bool(state.get("stream")) != self.stream:
            kind = "stream" if self.stream else "dataset"
            raise ValueError(f"not a data position of {kind} {self.name!r}: {state!r:.200}")
        try:
            if self.stream:
                position = (0, 0, [(0, 0, o, p, b, e) for p, b, e, o in state["pending"]],
                            sorted(state["partitions"].items()))
            else:
                position = (state["epoch"], state["cursor"],
                            [(e, i, o, "", 0, 0) for e, i, o in state["pending"]], [])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"malformed data position of {self.name!r} ({e}): {state!r:.200}")
        if self._local:
            self._round += 1  # in-process: every load applies
        self._svc.restore_position(self.name, self._round, position)
        self._reset()

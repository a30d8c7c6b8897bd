"""keel.data.ElasticSampler with the in-process shard service: every record once per epoch,
a checkpointed position resumes exactly (also when a DataLoader prefetched past it), bad
arguments are rejected. (The master's service is tested in keel/master/data_service_test.cc
and under keel run in tests/test_data_e2e.py.)"""

from collections import Counter

import pytest

import keel.data
from keel import _C
from keel.data import ElasticSampler, StreamWriter


def counts_per_epoch(batches, size):
    flat = [i for b in batches for i in b]
    return Counter(flat), len(flat)


def test_every_record_once_per_epoch_in_shuffled_shards():
    s = ElasticSampler("d", dataset_size=1000, batch_size=32, shuffle=True, seed=5, epochs=2,
                       shard_size=100)
    batches = list(s)
    c, n = counts_per_epoch(batches, 1000)
    assert n == 2000 and set(c.values()) == {2} and set(c) == set(range(1000))
    assert all(len(b) == 32 for b in batches[:-1])
    assert batches[0] != sorted(batches[0])  # shuffled within shards
    again = list(ElasticSampler("d", dataset_size=1000, batch_size=32, shuffle=True, seed=5,
                                epochs=2, shard_size=100))
    assert again == batches  # deterministic for a seed


@pytest.mark.parametrize("prefetched", [0, 3])
def test_a_saved_position_resumes_exactly(prefetched):
    def sampler():
        return ElasticSampler("d", dataset_size=1000, batch_size=30, shuffle=True, seed=1,
                              epochs=3, shard_size=70)

    s = sampler()
    it = iter(s)
    seen = [next(it) for _ in range(41)]
    for _ in range(prefetched):  # a DataLoader ran ahead; the model did not train on these
        next(it)
    state = s.state_dict(consumed_batches=41)
    assert state["dataset"] == "d" and state["pending"]
    resumed = sampler()  # "after a crash": a new process, a new service
    resumed.load_state_dict(state)
    rest = list(resumed)
    c, n = counts_per_epoch(seen + rest, 1000)
    assert n == 3000 and set(c.values()) == {3}


def test_bad_arguments_are_rejected_with_the_reason():
    with pytest.raises(ValueError, match="batch_size must be an int > 0"):
        ElasticSampler("d", dataset_size=10, batch_size=0)
    with pytest.raises(ValueError, match="dataset_size"):
        ElasticSampler("d", dataset_size=-1, batch_size=1)
    with pytest.raises(ValueError, match="name"):
        ElasticSampler("", dataset_size=10, batch_size=1)
    s = ElasticSampler("d", dataset_size=10, batch_size=1)
    with pytest.raises(ValueError, match="not a data position of dataset 'd'"):
        s.load_state_dict({"dataset": "other"})
    with pytest.raises(ValueError, match="does not fit"):
        s.load_state_dict({"dataset": "d", "epoch": 7, "cursor": 0, "pending": []})
    with pytest.raises(ValueError, match="only batches"):
        s.state_dict(consumed_batches=5)
    assert len(list(s)) == 10  # still usable


def test_index_permutation_binding():
    p = _C.IndexPermutation(10, 3)
    assert sorted(p.range(0, 10)) == list(range(10))
    with pytest.raises(ValueError, match="outside"):
        p.range(5, 11)


def test_long_runs_forget_finished_shards_and_still_resume_exactly(monkeypatch):
    monkeypatch.setattr(ElasticSampler, "_KEEP_LOG", 100)  # remember 100 batches, not 10,000

    def sampler():
        return ElasticSampler("d", dataset_size=30000, batch_size=8, shuffle=True, seed=2,
                              epochs=1, shard_size=20)

    s = sampler()
    it = iter(s)
    seen = [next(it) for _ in range(2500)]  # finished grants older than 100 batches: pruned
    assert len(s._grants) < 400  # of the 1,000 granted so far
    next(it)
    next(it)  # prefetched, not trained on
    state = s.state_dict(consumed_batches=2500)
    resumed = sampler()
    resumed.load_state_dict(state)
    c, n = counts_per_epoch(seen + list(resumed), 30000)
    assert n == 30000 and set(c.values()) == {1}


def test_a_stream_is_read_while_its_writer_appends_and_ends_when_closed():
    import threading

    w = StreamWriter("clicks-live", shard_size=50)

    def produce():
        for start in range(0, 2000, 130):
            w.append("p0", start, min(start + 130, 2000))
            w.append("p1", start // 2, min(start + 130, 2000) // 2)
        w.close()

    t = threading.Thread(target=produce)
    t.start()
    s = ElasticSampler("clicks-live", batch_size=16, shard_size=50, stream=True)
    seen = [r for batch in s for r in batch]
    t.join()
    assert Counter(seen) == Counter([("p0", i) for i in range(2000)] +
                                    [("p1", i) for i in range(1000)])
    with pytest.raises(TypeError, match="no length"):
        len(s)


def test_a_stream_position_resumes_exactly_on_a_new_service(monkeypatch):
    def start():
        w = StreamWriter("clicks", shard_size=40)
        for p in ("a", "b"):  # a producer that restarts appends from the start again
            w.append(p, 0, 500)
        w.close()
        return ElasticSampler("clicks", batch_size=12, shard_size=40, stream=True)

    monkeypatch.setattr(keel.data, "_services", {})
    s = start()
    it = iter(s)
    seen = [r for _ in range(30) for r in next(it)]
    next(it)  # prefetched: not trained on
    state = s.state_dict(consumed_batches=30)
    assert state["stream"] and state["partitions"] and state["pending"]
    list(it)  # trained on after the checkpoint, then lost in a crash
    monkeypatch.setattr(keel.data, "_services", {})  # a new process
    resumed = start()
    resumed.load_state_dict(state)
    rest = [r for batch in resumed for r in batch]
    assert Counter(seen + rest) == Counter([(p, i) for p in "ab" for i in range(500)])


def test_unbounded_epochs_go_on():
    s = ElasticSampler("forever", dataset_size=10, batch_size=4, epochs=0, shard_size=5)
    it = iter(s)
    flat = [r for _ in range(50) for r in next(it)]
    assert Counter(flat) == Counter({i: 20 for i in range(10)})
    with pytest.raises(TypeError, match="no length"):
        len(s)


def test_bad_stream_arguments_are_rejected_with_the_reason(monkeypatch):
    monkeypatch.setattr(keel.data, "_services", {})
    with pytest.raises(ValueError, match="a stream has no dataset_size"):
        ElasticSampler("st", dataset_size=10, batch_size=1, stream=True)
    w = StreamWriter("st", shard_size=10)
    with pytest.raises(ValueError, match="shard size 10"):
        ElasticSampler("st", batch_size=1, shard_size=20, stream=True)  # conflicts
    with pytest.raises(ValueError, match="shuffle must be off"):
        ElasticSampler("st3", batch_size=1, shard_size=5, stream=True, shuffle=True)
    with pytest.raises(ValueError, match="epochs must be 1"):
        StreamWriter("st4", shard_size=5, epochs=3)
    w.append("p", 0, 10)
    with pytest.raises(ValueError, match="records 10-20 are missing"):
        w.append("p", 20, 30)
    svc = keel.data._services[None]  # the process's shared service: no appends to a fixed one
    svc.register("fixed-one", 10, 5, 1, False, 0)
    with pytest.raises(ValueError, match="only streams take appended records"):
        svc.append("fixed-one", "p", 0, 1)
    s = ElasticSampler("st", batch_size=4, shard_size=10, stream=True)
    with pytest.raises(ValueError, match="not a data position of stream 'st'"):
        s.load_state_dict({"dataset": "st", "epoch": 0, "cursor": 0, "pending": []})
    with pytest.raises(ValueError, match="malformed data position"):
        s.load_state_dict({"dataset": "st", "stream": True, "pending": [[1]], "partitions": {}})
    it = iter(s)
    assert next(it) == [("p", 0), ("p", 1), ("p", 2), ("p", 3)]  # still usable

"""keel.data.ElasticSampler with the in-process shard service: every record once per epoch,
a checkpointed position resumes exactly (also when a DataLoader prefetched past it), bad
arguments are rejected. (The master's service is tested in keel/master/data_service_test.cc
and under keel run in tests/test_data_e2e.py.)"""

from collections import Counter

import pytest

from keel import _C
from keel.data import ElasticSampler


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

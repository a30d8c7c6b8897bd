"""keel.data under keel run: two ranks draw shards from the job's master; together they see
every record once per epoch, and the checkpoint barrier gives both the same position."""

import json
from collections import Counter

import sys

from test_train import ROOT, finish, keel, start_master, tag, tls_flags  # noqa: F401

WORKER = str(ROOT / "tests" / "workers" / "data_worker.py")


def test_two_ranks_share_the_dataset_through_the_master(keel_bin, tag, tmp_path):
    rc, out, err = finish(keel(keel_bin, "run", "--nproc-per-node", "2", WORKER, "--out",
                               str(tmp_path), "--tag", tag))
    assert rc == 0, err
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    counts = Counter(ranks[0]["seen"] + ranks[1]["seen"])
    assert set(counts) == set(range(5000)) and set(counts.values()) == {2}
    assert all(r["seen"] for r in ranks)  # both ranks got shards
    p0, p1 = ranks[0]["position"], ranks[1]["position"]
    assert p0 == p1 and p0["dataset"] == "e2e"
    streamed = Counter(tuple(r) for r in ranks[0]["streamed"] + ranks[1]["streamed"])
    assert streamed == Counter({("events", i): 1 for i in range(1000)})


def test_workers_reach_a_tls_master_for_shards(keel_bin, tag, tmp_path):
    tls = tls_flags(tmp_path)
    master, addr = start_master(keel_bin, "--nnodes", "1", *tls)  # mutual TLS
    try:
        rc, _, err = finish(keel(keel_bin, "agent", "--master", addr, "--token", "secret",
                                 "--nproc-per-node", "2", *tls, "--", sys.executable, WORKER, "--out",
                                 str(tmp_path), "--tag", tag))
        assert rc == 0, err
        assert finish(master, timeout=30)[0] == 0
    finally:
        if master.poll() is None:
            master.kill()
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert Counter(ranks[0]["seen"] + ranks[1]["seen"]) == Counter(
        {i: 2 for i in range(5000)})


SHARD_TRAIN = str(ROOT / "tests" / "workers" / "shard_train_worker.py")


def test_dynamic_shards_with_a_worker_killed_mid_epoch_end_bitwise_identical(keel_bin, tag,
                                                                            tmp_path):
    import torch

    def run(name, *extra):
        rc, out, err = finish(keel(keel_bin, "run", "--nproc-per-node", "2", SHARD_TRAIN,
                                   "--ckpt", str(tmp_path / name), "--out",
                                   str(tmp_path / f"{name}.pt"), "--tag", tag, *extra),
                              timeout=180)
        assert rc == 0, err
        seen = [json.loads((tmp_path / f"{name}.pt.rank-{r}.json").read_text()) for r in (0, 1)]
        return out, seen, torch.load(tmp_path / f"{name}.pt")

    _, clean_seen, clean = run("clean")
    # 2 epochs of 2048 records in batches of 8 over 2 ranks: 256 steps; step 150 is mid epoch 2.
    assert [s["steps"] for s in clean_seen] == [256, 256]
    assert Counter(clean_seen[0]["seen"] + clean_seen[1]["seen"]) == Counter(
        {i: 2 for i in range(2048)})
    out, crashed_seen, crashed = run("crashed", "--crash-at-step", "150")
    assert "resumed from step 140 (memory)" in out, out
    assert [s["attempt"] for s in crashed_seen] == [1, 1]
    assert [s["steps"] for s in crashed_seen] == [256, 256]
    # The restarted round consumed exactly what the checkpointed model had not: the 116 steps
    # after step 140, each record the number of times the clean run saw it after step 140.
    assert sum(len(s["seen"]) for s in crashed_seen) == 2 * 116 * 8
    assert list(clean) == list(crashed)
    for k in clean:
        assert torch.equal(clean[k], crashed[k]), k

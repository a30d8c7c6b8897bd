"""keel.data under keel run: two ranks draw shards from the job's master; together they see
every record once per epoch, and the checkpoint barrier gives both the same position."""

import json
from collections import Counter

from test_train import ROOT, finish, keel, tag  # noqa: F401

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

"""Test worker for tests/test_data_e2e.py: drains an ElasticSampler under keel run, saves the
job-wide data position once (every rank at its 10th batch) and writes what it saw."""

import argparse
import json
import os

from keel.data import ElasticSampler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    s = ElasticSampler("e2e", dataset_size=5000, batch_size=16, shuffle=True, seed=4, epochs=2,
                       shard_size=64)
    seen, position = [], None
    for n, batch in enumerate(s, 1):
        seen.extend(batch)
        if n == 10:
            position = s.state_dict()
    rank = os.environ["RANK"]
    with open(os.path.join(args.out, f"rank-{rank}.json"), "w") as f:
        json.dump({"seen": seen, "position": position}, f)


if __name__ == "__main__":
    main()

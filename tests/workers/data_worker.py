"""Test worker for tests/test_data_e2e.py: drains an ElasticSampler under keel run, saves the
job-wide data position once (every rank at its 10th batch), then reads a stream that rank 0
writes, and writes what it saw."""

import argparse
import json
import os

from keel.data import ElasticSampler, StreamWriter


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
    # A stream: rank 0 appends while both ranks read.
    reader = ElasticSampler("e2e-stream", batch_size=10, shard_size=32, stream=True)
    if rank == "0":
        writer = StreamWriter("e2e-stream", shard_size=32)
        for start in range(0, 1000, 75):
            writer.append("events", start, min(start + 75, 1000))
        writer.close()
    streamed = [r for batch in reader for r in batch]
    with open(os.path.join(args.out, f"rank-{rank}.json"), "w") as f:
        json.dump({"seen": seen, "position": position, "streamed": streamed}, f)


if __name__ == "__main__":
    main()

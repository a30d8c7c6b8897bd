#!/usr/bin/env python3
"""keel.ckpt save/restore vs torch.save/torch.load, same state, same disk, same run.

    /usr/bin/python3 bench/ckpt_save.py [--sizes-mib 256,1024,4096] [--dir /var/tmp/x]

Runs the measuring worker under `keel run` (so saves use the agent's in-memory tier) and
prints, per state size: median blocking time of keel save vs torch.save and their ratio, a
plain memory copy of the same bytes (the bound) with both bandwidths, and restore from memory
vs torch.load (page cache warm, which favours torch.load).
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes-mib", default="256,1024")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--dir", default="")
    p.add_argument("--keel", default=str(ROOT / "build" / "tools" / "keel" / "keel"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir or "/var/tmp") as d:
        env = dict(os.environ, KEEL_LOG_LEVEL="warn")
        return subprocess.call([args.keel, "run", "--nproc-per-node", "1",
                                str(ROOT / "bench" / "workers" / "ckpt_bench_worker.py"),
                                "--dir", d, "--sizes-mib", args.sizes_mib, "--repeat",
                                str(args.repeat)], env=env)


if __name__ == "__main__":
    sys.exit(main())

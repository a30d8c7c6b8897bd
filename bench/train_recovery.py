#!/usr/bin/env python3
"""Recovery latency after SIGKILL of one worker: keel run vs torchrun, same script, same run.

For each launcher and trial: start 2 workers (DDP, gloo), wait until both have completed a
step, SIGKILL rank 1, and measure from the kill
  - until every worker of the new attempt has started (its process is running), and
  - until the first training step of the new attempt has completed on every rank.
Prints per-trial times, medians and the keel/torchrun ratio.

    /usr/bin/python3 bench/train_recovery.py --trials 5

torchrun is Debian's (torch 1.13): --max_restarts 3, c10d rendezvous, --redirects 1 --tee 1
(its defaults crash at start on Python 3.11).
"""

import argparse
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKER = str(ROOT / "bench" / "workers" / "recovery_worker.py")
PY = "/usr/bin/python3"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher_cmd(name, keel_bin, out):
    worker = [WORKER, "--out", out, "--steps", "100", "--step-sleep", "0.05"]
    if name == "keel":
        return [keel_bin, "run", "--nproc-per-node", "2", "--max-restarts", "3", *worker]
    return [PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--max_restarts", "3",
            "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{free_port()}",
            "--redirects", "1", "--tee", "1", *worker]


def read(path, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            return float(path.read_text())
        time.sleep(0.005)
    raise TimeoutError(f"no {path.name} within {timeout} s")


def trial(name, keel_bin):
    with tempfile.TemporaryDirectory() as d:
        out = pathlib.Path(d)
        env = dict(os.environ, KEEL_LOG_LEVEL="warn")
        proc = subprocess.Popen(launcher_cmd(name, keel_bin, str(out)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        try:
            read(out / "step-r0-c0")
            read(out / "step-r1-c0")
            victim = int(read(out / "pid-r1-c0"))
            killed = time.time()
            os.kill(victim, signal.SIGKILL)
            started = max(read(out / f"start-r{r}-c1") for r in (0, 1))
            stepped = max(read(out / f"step-r{r}-c1") for r in (0, 1))
            rc = proc.wait(timeout=120)
            if rc != 0:
                raise RuntimeError(f"{name} exited {rc}")
            return started - killed, stepped - killed
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--keel", default=str(ROOT / "build" / "tools" / "keel" / "keel"))
    args = p.parse_args()
    results = {"keel": [], "torchrun": []}
    for t in range(args.trials):
        for name in ("keel", "torchrun"):  # interleaved, so machine noise hits both alike
            started, stepped = trial(name, args.keel)
            results[name].append((started, stepped))
            print(f"trial {t + 1} {name:8s} workers running after {started:6.2f} s, "
                  f"first step after {stepped:6.2f} s", flush=True)
    med = {n: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
           for n, v in results.items()}
    print()
    print(f"{'median over ' + str(args.trials) + ' trials':28s} {'workers running':>16s} "
          f"{'first step':>11s}")
    for n in ("keel", "torchrun"):
        print(f"{n:28s} {med[n][0]:15.2f}s {med[n][1]:10.2f}s")
    print(f"{'keel / torchrun':28s} {med['keel'][0] / med['torchrun'][0]:15.2f}x "
          f"{med['keel'][1] / med['torchrun'][1]:10.2f}x")


if __name__ == "__main__":
    sys.exit(main())

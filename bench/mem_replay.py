"""Allocator comparison on every trace in bench/traces/ plus synthetic ones (docs/results/memory.md).

Runs `keel mem replay --compare --json` on each trace (simulated backend: utilization and peak
reserved of the three policies, plus stitching with a lower --frag-limit, with keel's defaults
and with GMLake's own settings: --realloc-level 0 --chunk-rounding), then on the host backend
(real memfd mappings) for the allocation latency of the cached and stitched paths.
Prints markdown tables.

Usage: /usr/bin/python3 bench/mem_replay.py [--keel build/tools/keel/keel] [--out-dir DIR]
"""

import argparse
import json
import pathlib
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]

# name -> `keel mem generate` flags. Small enough for the host backend where marked.
SYNTHETIC = {
    "syn-gpt-zero3": [],
    "syn-gpt-zero3-ckpt": ["--checkpointing"],
    "syn-gpt-ckpt-sidestream": ["--checkpointing", "--gather-stream", "1", "--seed", "7"],
    "syn-gpt-small": ["--layers", "4", "--hidden", "1024", "--heads", "8", "--min-seq", "128",
                      "--max-seq", "1024", "--steps", "3"],
}
HOST_OK = {"syn-gpt-small"}


def replay(keel, trace, *flags):
    r = subprocess.run([keel, "mem", "replay", str(trace), "--json", *flags],
                       capture_output=True, text=True, check=True, timeout=600)
    return json.loads(r.stdout)


def mib(b):
    return f"{b / 1048576:.0f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keel", default=str(ROOT / "build" / "tools" / "keel" / "keel"))
    p.add_argument("--out-dir", default=None)
    p.add_argument("--frag-limit", default="2M", help="the lower stitching threshold row")
    a = p.parse_args()
    out = pathlib.Path(a.out_dir or tempfile.mkdtemp(prefix="keel-mem-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    traces = sorted((ROOT / "bench" / "traces").glob("*.trace.gz"))
    for name, flags in SYNTHETIC.items():
        path = out / f"{name}.trace.gz"
        subprocess.run([a.keel, "mem", "generate", str(path), *flags], check=True,
                       capture_output=True, timeout=600)
        traces.append(path)

    print("Simulated backend. Each cell: peak reserved MiB / utilization (peak active / peak "
          "reserved) / peak live requested / peak reserved")
    print("| trace | peak live MiB | caching | expandable | "
          f"stitching | stitching --frag-limit {a.frag_limit} (stitches) | "
          f"GMLake settings --frag-limit {a.frag_limit} (stitches) |")
    print("|---|---|---|---|---|---|---|")
    for t in traces:
        doc = replay(a.keel, t, "--compare")
        low = replay(a.keel, t, "--allocator", "stitching", "--frag-limit", a.frag_limit)
        gml = replay(a.keel, t, "--allocator", "stitching", "--frag-limit", a.frag_limit,
                     "--realloc-level", "0", "--chunk-rounding")
        live = doc["peak_live_bytes"]

        def cell(r):
            return (f"{mib(r['peak_reserved_bytes'])} / {100 * r['utilization']:.1f}% / "
                    f"{100 * live / r['peak_reserved_bytes']:.1f}%")

        cells = [cell(r) for r in doc["results"]]
        for doc2 in (low, gml):
            lr = doc2["results"][0]
            cells.append(f"{cell(lr)} ({lr['stitch_count']})")
        print(f"| {t.name} | {mib(doc['peak_live_bytes'])} | " + " | ".join(cells) + " |")

    print("\nHost backend (memfd + mmap), Allocate latency in ns, median / p99 "
          "[count]; stitching with --frag-limit", a.frag_limit)
    print("| trace | caching cached | expandable cached | stitching cached | "
          "stitching stitched | stitching grew |")
    print("|---|---|---|---|---|---|")
    for t in traces:
        if t.parent != ROOT / "bench" / "traces" and t.name.split(".")[0] not in HOST_OK:
            continue
        doc = replay(a.keel, t, "--compare", "--backend", "host")
        st = replay(a.keel, t, "--allocator", "stitching", "--backend", "host", "--frag-limit",
                    a.frag_limit)["results"][0]

        def lat(x):
            return f"{x['median_ns']:.0f} / {x['p99_ns']:.0f} [{x['count']}]" if x["count"] else "-"

        res = {r["policy"]: r for r in doc["results"]}
        print(f"| {t.name} | {lat(res['caching']['alloc_cached'])} | "
              f"{lat(res['expandable']['alloc_cached'])} | {lat(st['alloc_cached'])} | "
              f"{lat(st['alloc_stitched'])} | {lat(st['alloc_grew'])} |")


if __name__ == "__main__":
    main()

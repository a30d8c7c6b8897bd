"""Convert a PyTorch CUDA memory snapshot into a keel allocation trace.

A snapshot is what ``torch.cuda.memory._snapshot()`` returns (or ``_dump_snapshot`` pickles):
``{"segments": [...], "device_traces": [[entry, ...] per device]}``. Each trace entry has
``action``, ``addr``, ``size``, ``stream`` and, in newer PyTorch, ``time_us``. The rules
(docs/mem.md, "Recording"; ../shared/docs/reference/glake.md §5):

* ``alloc`` entries carry the *requested* size; they become ``a`` events.
* Memory is reusable at ``free_completed`` (not ``free_requested``); each one is paired with
  the latest unmatched ``alloc`` at the same address and becomes an ``f`` event. Frees with no
  matching alloc (blocks allocated before recording began) are dropped and counted.
* Blocks still allocated at dump time that the trace never saw allocated (``segments`` blocks
  in state ``active_allocated``) are added as allocations at time 0, so the replay starts
  from the real footprint.
* Streams (CUDA stream handles) are renumbered 0, 1, ... in order of first use; times are
  ``time_us`` relative to the first entry when present, else the entry's index, and never go
  backwards.

Usage: python3 snapshot_to_trace.py SNAPSHOT.pickle OUT.trace[.gz] [--device N]
       [--comment TEXT]...  Uses only the standard library.
"""

import argparse
import gzip
import pickle
import sys

MAGIC = "keel-alloc-trace 1"


class ConversionError(ValueError):
    pass


def convert(snapshot, device=0):
    """Returns (events, stats): events are tuples ("a", t, id, size, stream) / ("f", t, id)."""
    if not isinstance(snapshot, dict) or "device_traces" not in snapshot:
        raise ConversionError("not a PyTorch memory snapshot: no 'device_traces' key")
    traces = snapshot["device_traces"]
    if device < 0 or device >= len(traces):
        raise ConversionError(f"device {device} not in the snapshot ({len(traces)} device(s))")
    entries = traces[device]
    streams = {}
    live_at = {}  # address -> stack of ids of unmatched allocs
    events = []
    stats = {"allocs": 0, "frees": 0, "unmatched_frees": 0, "preexisting": 0, "skipped": 0}
    next_id = 1
    t0 = None
    last = 0

    def stream_index(s):
        return streams.setdefault(s, len(streams))

    body = []
    for i, e in enumerate(entries):
        action = e.get("action")
        if "time_us" in e and e["time_us"] is not None:
            t0 = e["time_us"] if t0 is None else t0
            t = max(last, int(e["time_us"]) - t0)
        else:
            t = max(last, i)
        last = t
        if action == "alloc":
            size = int(e.get("size", 0))
            if size <= 0:
                stats["skipped"] += 1
                continue
            ident = next_id
            next_id += 1
            live_at.setdefault(e["addr"], []).append(ident)
            body.append(("a", t, ident, size, stream_index(e.get("stream", 0))))
            stats["allocs"] += 1
        elif action == "free_completed":
            stack = live_at.get(e["addr"])
            if not stack:
                stats["unmatched_frees"] += 1
                continue
            body.append(("f", t, stack.pop()))
            stats["frees"] += 1
    # Blocks alive at the dump that the trace never allocated.
    for seg in snapshot.get("segments", []):
        if seg.get("device", device) != device:
            continue
        for b in seg.get("blocks", []):
            if b.get("state") != "active_allocated" or live_at.get(b.get("address")):
                continue
            size = int(b.get("requested_size") or b.get("size") or 0)
            if size <= 0:
                continue
            events.append(("a", 0, next_id, size, stream_index(seg.get("stream", 0))))
            next_id += 1
            stats["preexisting"] += 1
    events.extend(body)
    return events, stats


def format_trace(events, comments=()):
    lines = [MAGIC]
    lines += [f"# {c}" for c in comments]
    for e in events:
        lines.append(" ".join(str(x) for x in e))
    return "\n".join(lines) + "\n"


def write_trace(path, text):
    data = text.encode()
    if str(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("snapshot")
    p.add_argument("out")
    p.add_argument("--device", type=int, default=0)
    p.add_argument("--comment", action="append", default=[])
    a = p.parse_args(argv)
    try:
        with open(a.snapshot, "rb") as f:
            snap = pickle.load(f)
        events, stats = convert(snap, a.device)
    except (OSError, pickle.UnpicklingError, EOFError, ConversionError) as e:
        print(f"snapshot_to_trace: {a.snapshot}: {e}", file=sys.stderr)
        return 1
    comments = [f"source: PyTorch CUDA memory snapshot {a.snapshot} device {a.device}",
                "converted: snapshot_to_trace.py ({allocs} allocs, {frees} frees, "
                "{unmatched_frees} unmatched frees dropped, {preexisting} blocks alive "
                "before recording)".format(**stats)] + a.comment
    write_trace(a.out, format_trace(events, comments))
    print(f"{a.out}: {stats['allocs'] + stats['preexisting']} allocs, {stats['frees']} frees")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""snapshot_to_trace.py: PyTorch CUDA memory snapshots (the documented dict shape, built by
hand here since this machine has no GPU) into keel allocation traces."""

import gzip
import importlib.util
import pathlib
import pickle
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "keel" / "mem" / "snapshot_to_trace.py"
_spec = importlib.util.spec_from_file_location("snapshot_to_trace", SCRIPT)
s2t = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(s2t)

A, B = 0x7F0000000000, 0x7F0000200000
S0, S1 = 94000000001, 94000000777  # cudaStream_t handles


def entry(action, addr, size, stream=S0, **kw):
    return {"action": action, "addr": addr, "size": size, "stream": stream, "frames": [], **kw}


def snapshot():
    trace = [
        entry("free_completed", 0x1234, 512),           # allocated before recording: dropped
        entry("segment_alloc", A, 20 << 20),
        entry("alloc", A, 1000),
        entry("alloc", B, 3 << 20, stream=S1),
        entry("free_requested", A, 1000),                # not yet reusable: ignored
        entry("free_completed", A, 1000),
        entry("alloc", A, 2000),                         # address reused
        entry("free_completed", A, 2000),
        entry("oom", 0, 1 << 30, device_free=123),
        entry("alloc", A, 0),                            # zero size: skipped
    ]
    segments = [{"device": 0, "address": A, "total_size": 20 << 20, "stream": S0,
                 "blocks": [{"address": A + (8 << 20), "size": 4 << 20,
                             "requested_size": 4000000, "state": "active_allocated"},
                            {"address": B, "size": 3 << 20, "requested_size": 3 << 20,
                             "state": "active_allocated"},
                            {"address": A, "size": 1 << 20, "state": "inactive"}]}]
    return {"segments": segments, "device_traces": [trace]}


def test_pairs_frees_with_the_latest_alloc_at_the_address():
    events, stats = s2t.convert(snapshot())
    assert events == [
        ("a", 0, 4, 4000000, 0),  # alive at the dump, never allocated in the trace
        ("a", 2, 1, 1000, 0),
        ("a", 3, 2, 3 << 20, 1),
        ("f", 5, 1),
        ("a", 6, 3, 2000, 0),
        ("f", 7, 3),
    ]
    assert stats == {"allocs": 3, "frees": 2, "unmatched_frees": 1, "preexisting": 1,
                     "skipped": 1}


def test_nested_allocs_at_one_address_pair_last_in_first_out():
    snap = {"segments": [], "device_traces": [[entry("alloc", A, 10), entry("alloc", A, 20),
                                               entry("free_completed", A, 20),
                                               entry("free_completed", A, 10)]]}
    events, _ = s2t.convert(snap)
    assert [e for e in events if e[0] == "f"] == [("f", 2, 2), ("f", 3, 1)]


def test_times_come_from_time_us_and_never_go_back():
    trace = [entry("alloc", A, 10, time_us=1000), entry("alloc", B, 10, time_us=900),
             entry("free_completed", A, 10, time_us=1500)]
    events, _ = s2t.convert({"segments": [], "device_traces": [trace]})
    assert [e[1] for e in events] == [0, 0, 500]


def test_cli_writes_a_gzip_trace(tmp_path):
    pkl = tmp_path / "snap.pickle"
    pkl.write_bytes(pickle.dumps(snapshot()))
    out = tmp_path / "cuda.trace.gz"
    r = subprocess.run([sys.executable, str(SCRIPT), str(pkl), str(out), "--comment", "hello"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    text = gzip.decompress(out.read_bytes()).decode()
    lines = text.splitlines()
    assert lines[0] == "keel-alloc-trace 1"
    assert "# hello" in lines
    assert lines[-1] == "f 7 3"
    assert sum(1 for x in lines if x.startswith("a ")) == 4


@pytest.mark.parametrize("payload,message", [
    (b"not a pickle", "snap.pickle"),
    (pickle.dumps({"segments": []}), "no 'device_traces'"),
    (pickle.dumps({"device_traces": []}), "device 0 not in the snapshot"),
])
def test_cli_rejects_bad_snapshots(tmp_path, payload, message):
    pkl = tmp_path / "snap.pickle"
    pkl.write_bytes(payload)
    r = subprocess.run([sys.executable, str(SCRIPT), str(pkl), str(tmp_path / "o.trace")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert message in r.stderr
    assert not (tmp_path / "o.trace").exists()

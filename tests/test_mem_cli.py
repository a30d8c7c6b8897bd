"""`keel mem` as users run it: record a real PyTorch run through the LD_PRELOAD recorder,
replay it through all three allocators, generate synthetic traces, and reject bad input with
a non-zero exit and a message naming the problem."""

import gzip
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "workers" / "mem_tiny_train.py"


def keel(keel_bin, *args, timeout=60):
    return subprocess.run([keel_bin, "mem", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def events(path):
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    return lines[0], [l for l in lines if l[:1] in ("a", "f")], [l for l in lines if l[:1] == "#"]


@pytest.fixture(scope="module")
def recorded(keel_bin, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "tiny.trace.gz"
    r = keel(keel_bin, "record", "-o", out, "--min-bytes", "256K", "--",
             sys.executable, TINY)
    assert r.returncode == 0, r.stderr
    assert "trained" in r.stderr  # the program's own output passes through
    return out, r


def test_record_writes_a_real_trace_of_the_torch_run(recorded):
    out, r = recorded
    header, evs, comments = events(out)
    assert header == "keel-alloc-trace 1"
    assert any("command:" in c and "mem_tiny_train.py" in c for c in comments)
    allocs = [l.split() for l in evs if l[0] == "a"]
    frees = [l for l in evs if l[0] == "f"]
    # batch 1536 x 1024 floats = 6 MiB activations; every recorded size is >= 256 KiB.
    sizes = {int(a[3]) for a in allocs}
    assert 1536 * 1024 * 4 in sizes
    assert min(sizes) >= 256 << 10
    assert len(frees) >= len(allocs) // 2
    times = [int(l.split()[1]) for l in evs]
    assert times == sorted(times)
    assert f"{out}:" in r.stdout


def test_replay_compare_prints_all_three_allocators(keel_bin, recorded):
    out, _ = recorded
    r = keel(keel_bin, "replay", out, "--compare")
    assert r.returncode == 0, r.stderr
    for policy in ("caching", "expandable", "stitching"):
        assert f"\n{policy} " in r.stdout
    j = keel(keel_bin, "replay", out, "--compare", "--json", "--backend", "host")
    assert j.returncode == 0, j.stderr
    doc = json.loads(j.stdout)
    assert [x["policy"] for x in doc["results"]] == ["caching", "expandable", "stitching"]
    for x in doc["results"]:
        assert x["oom_count"] == 0 and x["backend"] == "host"
        assert x["peak_reserved_bytes"] >= x["peak_active_bytes"] >= doc["peak_live_bytes"]
        assert 0 < x["utilization"] <= 1
        assert x["allocs"] == doc["allocs"]


def test_record_reports_a_failing_program_and_still_writes(keel_bin, tmp_path):
    out = tmp_path / "fail.trace.gz"
    r = keel(keel_bin, "record", "-o", out, "--", sys.executable, TINY, "3")
    assert r.returncode == 1
    assert "exited with code 3" in r.stderr
    assert out.exists()


def test_generate_then_replay_with_an_oom(keel_bin, tmp_path):
    out = tmp_path / "gen.trace.gz"
    r = keel(keel_bin, "generate", out, "--steps", 2, "--layers", 4, "--hidden", 1024,
             "--checkpointing")
    assert r.returncode == 0, r.stderr
    r = keel(keel_bin, "replay", out, "--allocator", "caching", "--capacity", "1G")
    assert r.returncode == 0, r.stderr
    assert "first OOM at event" in r.stdout
    r = keel(keel_bin, "info", out)
    assert "checkpointing=true" in r.stdout


@pytest.mark.parametrize("args,code,message", [
    (["replay", "/no/such.trace"], 2, "/no/such.trace"),
    (["replay", "{trace}", "--allocator", "buddy"], 2, "buddy"),
    (["replay", "{trace}", "--capacity", "12X"], 2, "--capacity '12X' is not a size"),
    (["replay", "{trace}", "--capacity", "0"], 2, "--capacity must be greater than 0"),
    (["replay", "{trace}", "--compare", "--allocator", "caching"], 2, "excludes"),
    (["replay", "{trace}", "--realloc-level", "2"], 2, "--realloc-level"),
    (["replay", "{bad}"], 1, "bad.trace:3: free of id 9, which is not live"),
    (["replay", "{trunc}"], 1, "truncated gzip"),
    (["generate", "{tmp}/g.trace", "--min-seq", "900", "--max-seq", "100"], 2, "sequence range"),
    (["record", "-o", "{tmp}/r.trace.gz", "--min-bytes", "lots", "--", "true"], 2,
     "--min-bytes 'lots'"),
    (["record", "-o", "/no/dir/r.trace.gz", "--", "true"], 2, "does not exist"),
    (["record", "-o", "{tmp}/r.trace.gz"], 2, "no program given"),
    (["record", "-o", "{tmp}/r.trace.gz", "--", "/no/such/program"], 1, "/no/such/program"),
    (["frobnicate"], 2, "frobnicate"),
    ([], 2, "no command given"),
])
def test_bad_input_exits_non_zero_with_a_message(keel_bin, tmp_path, args, code, message):
    bad = tmp_path / "bad.trace"
    bad.write_text("keel-alloc-trace 1\na 0 1 100 0\nf 1 9\n")
    trunc = tmp_path / "t.trace.gz"
    trunc.write_bytes(gzip.compress(("keel-alloc-trace 1\n" + "".join(
        f"a {i} {i} 4096 0\n" for i in range(20000))).encode())[:3000])
    fill = {"trace": bad, "bad": bad, "trunc": trunc, "tmp": tmp_path}
    r = keel(keel_bin, *[a.format(**fill) for a in args])
    assert r.returncode == code, (r.stdout, r.stderr)
    assert message in r.stderr, r.stderr


@pytest.mark.parametrize("trace", sorted((ROOT / "bench" / "traces").glob("*.trace.gz")),
                         ids=lambda p: p.name)
def test_committed_traces_parse_and_replay(keel_bin, trace):
    info = keel(keel_bin, "info", trace)
    assert info.returncode == 0, info.stderr
    assert "# command: /usr/bin/python3" in info.stdout
    r = keel(keel_bin, "replay", trace, "--compare", "--json")
    assert r.returncode == 0, r.stderr
    assert all(x["oom_count"] == 0 for x in json.loads(r.stdout)["results"])


def test_record_through_a_shell_keeps_the_program_that_allocated(keel_bin, tmp_path):
    out = tmp_path / "sh.trace.gz"
    r = keel(keel_bin, "record", "-o", out, "--", "/bin/sh", "-c",
             f"{sys.executable} {TINY} && true")
    assert r.returncode == 0, r.stderr
    _, evs, _ = events(out)
    assert any(int(l.split()[3]) == 1536 * 1024 * 4 for l in evs if l[0] == "a")


def test_stitching_knobs_reach_the_allocator(keel_bin):
    # keel's stitching defaults (reAlloc, 512 B pBlocks) against GMLake's own settings on a
    # recorded trace, both stitching from 2 MiB: less reserved and fewer active bytes.
    trace = ROOT / "bench" / "traces" / "gpt-varlen.trace.gz"

    def run(*flags):
        r = keel(keel_bin, "replay", trace, "--frag-limit", "2M", "--json", *flags)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["results"][0]

    keel_default, gmlake = run(), run("--realloc-level", "0", "--chunk-rounding")
    assert keel_default["stitch_count"] > 0 and gmlake["stitch_count"] > 0
    assert keel_default["peak_reserved_bytes"] < gmlake["peak_reserved_bytes"]
    assert keel_default["peak_active_bytes"] < gmlake["peak_active_bytes"]
    assert run("--realloc-level", "0")["peak_reserved_bytes"] != keel_default["peak_reserved_bytes"]

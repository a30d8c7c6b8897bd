"""libkeel_mem_record.so on its own: exact events for every interposed function, called
through ctypes from a real process, plus threads, fork and the size threshold."""

import os
import pathlib
import subprocess
import sys

import pytest

BUILD = pathlib.Path(os.environ.get("KEEL_BUILD_DIR",
                                    pathlib.Path(__file__).resolve().parents[1] / "build"))
LIB = BUILD / "keel" / "mem" / "libkeel_mem_record.so"

PROGRAM = r"""
import ctypes, os, threading
libc = ctypes.CDLL(None)
libc.malloc.restype = libc.calloc.restype = libc.realloc.restype = ctypes.c_void_p
libc.aligned_alloc.restype = libc.memalign.restype = ctypes.c_void_p
libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
M = 1 << 20
out = []
a = libc.malloc(2 * M); out.append(a)
b = libc.calloc(3, M); out.append(b)
p = ctypes.c_void_p()
assert libc.posix_memalign(ctypes.byref(p), 64, 5 * M) == 0; out.append(p.value)
c = libc.aligned_alloc(4096, 4 * M); out.append(c)
d = libc.memalign(4096, 6 * M); out.append(d)
small = libc.malloc(1000); libc.free(ctypes.c_void_p(small))
r = libc.realloc(ctypes.c_void_p(a), 7 * M); out.append(r)
def worker():
    x = libc.malloc(8 * M); libc.free(ctypes.c_void_p(x))
t = threading.Thread(target=worker); t.start(); t.join()
pid = os.fork()
if pid == 0:
    x = libc.malloc(9 * M); libc.free(ctypes.c_void_p(x)); os._exit(0)
os.waitpid(pid, 0)
for q in (b, p.value, c, d, r):
    libc.free(ctypes.c_void_p(q))
print(" ".join(str(x) for x in out))
"""


@pytest.fixture(scope="module")
def lib():
    if not LIB.exists():
        raise pytest.UsageError(f"{LIB} not found: build the keel_mem_record target")
    return LIB


def test_records_every_interposed_function_threads_and_not_forked_children(lib, tmp_path):
    env = dict(os.environ, LD_PRELOAD=str(lib), KEEL_MEM_RECORD_OUT=str(tmp_path / "rec"))
    r = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    a, b, p, c, d, re = (int(x) for x in r.stdout.split())
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1  # the forked child did not write a trace
    lines = files[0].read_text().splitlines()
    assert lines[0] == "keel-alloc-trace 1"
    assert "min_bytes 1048576" in lines[1]
    ev = [l.split() for l in lines if l[:1] in ("a", "f")]
    M = 1 << 20
    allocs = [(int(e[2]), int(e[3])) for e in ev if e[0] == "a"]
    want = [(a, 2 * M), (b, 3 * M), (p, 5 * M), (c, 4 * M), (d, 6 * M), (re, 7 * M)]
    assert [x for x in allocs if x[1] != 8 * M and x[1] < 9 * M][-6:] == want
    assert not any(x[1] == 9 * M for x in allocs), "forked child recorded into the parent"
    # The thread's 8 MiB block has a thread index other than the main thread's.
    main_stream = {e[4] for e in ev if e[0] == "a" and int(e[2]) == a}
    thread_stream = {e[4] for e in ev if e[0] == "a" and int(e[3]) == 8 * M}
    assert thread_stream and thread_stream != main_stream
    frees = [int(e[2]) for e in ev if e[0] == "f"]
    assert a in frees  # realloc freed the old block
    for q in (b, p, c, d, re):
        assert q in frees
    times = [int(e[1]) for e in ev]
    assert times == sorted(times)


def test_min_bytes_threshold_and_pass_through_without_output(lib, tmp_path):
    env = dict(os.environ, LD_PRELOAD=str(lib), KEEL_MEM_RECORD_OUT=str(tmp_path / "rec"),
               KEEL_MEM_RECORD_MIN_BYTES=str(6 << 20))
    r = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (f,) = tmp_path.iterdir()
    sizes = {int(l.split()[3]) for l in f.read_text().splitlines() if l.startswith("a ")}
    assert sizes and min(sizes) >= 6 << 20
    env.pop("KEEL_MEM_RECORD_OUT")
    r = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(list(tmp_path.iterdir())) == 1

"""keel's stitching allocator inside PyTorch on a GPU (libkeel_torch_alloc.so through
torch.cuda.memory.CUDAPluggableAllocator). Skipped without a CUDA GPU.

The allocator must be installed before the process makes its first CUDA allocation, so each
check runs in a fresh python3. The library is found through $KEEL_TORCH_ALLOC, or in
$KEEL_BUILD_DIR/keel/mem/.
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def library():
    path = os.environ.get("KEEL_TORCH_ALLOC")
    if not path and os.environ.get("KEEL_BUILD_DIR"):
        path = os.path.join(os.environ["KEEL_BUILD_DIR"], "keel/mem/libkeel_torch_alloc.so")
    if not path or not os.path.exists(path):
        pytest.skip("libkeel_torch_alloc.so not found (set KEEL_TORCH_ALLOC or KEEL_BUILD_DIR)")
    return path


def run(body):
    script = textwrap.dedent(f"""
        import torch
        alloc = torch.cuda.memory.CUDAPluggableAllocator({library()!r}, "keel_malloc", "keel_free")
        torch.cuda.memory.change_current_allocator(alloc)
        """) + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_tensors_on_keel_memory_compute_like_on_the_cpu():
    out = run("""
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(512, 256, generator=g), torch.randn(256, 128, generator=g)
        c = (a.cuda() @ b.cuda()).cpu()
        assert torch.allclose(c, a @ b, atol=1e-3), (c - a @ b).abs().max()
        print("ok")
    """)
    assert "ok" in out


def test_a_large_request_is_served_from_fragmented_free_memory():
    # Eight 96 MiB blocks (a segment each), every other one freed: 384 MiB free in 96 MiB
    # pieces. A 600 MiB request (over the 512 MiB frag limit) is then served by stitching the
    # free pieces with a new 216 MiB shortfall (reAlloc). Every byte must hold what was
    # written, through the stitched mapping and through the survivors' own.
    out = run("""
        mib = 1 << 20
        blocks = [torch.full((96 * mib // 4,), float(i), device="cuda") for i in range(8)]
        for i in range(0, 8, 2):
            blocks[i] = None
        big = torch.arange(600 * mib // 4, device="cuda", dtype=torch.float32)
        assert big[-1].item() == 600 * mib // 4 - 1
        assert torch.equal(big.cpu(), torch.arange(600 * mib // 4, dtype=torch.float32))
        for i in range(1, 8, 2):  # the survivors were not overwritten
            assert torch.all(blocks[i] == i).item(), i
        torch.cuda.synchronize()
        print("ok")
    """)
    assert "ok" in out


def test_out_of_memory_is_torchs_error_and_the_process_goes_on():
    out = run("""
        try:
            torch.empty(1 << 50, dtype=torch.uint8, device="cuda")
        except RuntimeError as e:  # torch.cuda.OutOfMemoryError where torch maps it
            print("oom", type(e).__name__)
        x = torch.ones(1000, device="cuda")
        assert x.sum().item() == 1000
        print("ok")
    """)
    assert "oom" in out and "ok" in out

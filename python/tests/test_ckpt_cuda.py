"""keel.ckpt with CUDA tensors (skipped without a GPU): one device->host copy straight into
the page-locked memory slot, restored bit for bit; the slot file is a safetensors file any
reader loads. Runs against the agent stand-in (python/tests/agent_standin.py)."""

import pytest
import torch

from agent_standin import standin_agent as agent  # noqa: F401 (a fixture)
from keel.ckpt import Checkpointer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def cuda_state(seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return {
        "model": {"w": torch.randn(1024, 1024, device="cuda", generator=g),
                  "b": torch.randn(4096, device="cuda", generator=g).to(torch.bfloat16),
                  "h": torch.randn(7, 3, device="cuda", generator=g).half()},
        "mask": torch.rand(1001, device="cuda", generator=g) > 0.5,
        "ids": torch.arange(10, device="cuda") * seed,
        "strided": torch.randn(64, 32, device="cuda", generator=g).t(),
        "cpu": torch.arange(5),
        "step": seed,
    }


def on_cpu(x):
    if isinstance(x, dict):
        return {k: on_cpu(v) for k, v in x.items()}
    return x.cpu() if isinstance(x, torch.Tensor) else x


def assert_same(expected, got):
    assert expected.keys() == got.keys()
    for k, v in expected.items():
        if isinstance(v, dict):
            assert_same(v, got[k])
        elif isinstance(v, torch.Tensor):
            assert got[k].device.type == "cpu" and got[k].dtype == v.dtype, k
            assert got[k].shape == v.shape and torch.equal(got[k], v), k
        else:
            assert got[k] == v, k


def test_cuda_state_round_trips_through_the_memory_slot(agent, tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    for step in (1, 2, 3):  # both slots, then one reused in place
        ckpt.save(step, cuda_state(step), persist=False)
    step, got = ckpt.load()
    assert step == 3 and ckpt.loaded_from == "memory"
    assert_same(on_cpu(cuda_state(3)), got)
    # Any safetensors reader loads the slot (here the `safetensors` package, if present).
    safetensors = pytest.importorskip("safetensors.torch")
    slot = [i for i, s in enumerate(agent.steps) if s == 3][0]
    flat = safetensors.load_file(f"{agent.shm_dir}/rank-0.slot-{slot}.safetensors")
    assert torch.equal(flat["model/w"], cuda_state(3)["model"]["w"].cpu())
    assert torch.equal(flat["mask"], cuda_state(3)["mask"].cpu())

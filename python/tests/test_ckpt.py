"""keel.ckpt: nested state round trips, rejection of unsupported values, committed steps,
corruption fallback, retention, and an independent safetensors reader from the spec."""

import json
import math
import os
import struct

import pytest
import torch

from keel.ckpt import Checkpointer

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.int16,
          torch.int32, torch.int64, torch.uint8, torch.bool]


def state_with_everything():
    g = torch.Generator().manual_seed(0)
    tensors = {str(dt).removeprefix("torch."): (torch.randn(3, 4, generator=g) * 50).to(dt)
               for dt in DTYPES}
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    return {
        "tensors": tensors,
        "model": model.state_dict(),
        "optim": opt.state_dict(),  # int keys, tuples (betas), None, bools
        "step": 7, "big": 2**70, "neg": -3, "pi": math.pi, "nan": float("nan"),
        "inf": float("-inf"), "name": "run-ü", "flag": True, "nothing": None,
        "nested": [1, (2.5, "x", [torch.arange(3)]), {}], "scalar": torch.tensor(3.5),
        "view": torch.arange(12).reshape(3, 4).t(),  # non-contiguous
    }


def same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and \
            torch.equal(a.view(torch.uint8) if a.dtype == torch.bool else a,
                        b.view(torch.uint8) if b.dtype == torch.bool else b)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


def test_nested_state_round_trips_bitwise(tmp_path):
    ckpt = Checkpointer(tmp_path)
    assert ckpt.load() == (None, None)
    state = state_with_everything()
    ckpt.save(10, state)
    step, loaded = ckpt.load()
    assert step == 10
    assert same(state, loaded)
    assert (tmp_path / "latest").read_text() == "10\n"
    assert json.loads((tmp_path / "step-10" / "COMMITTED").read_text()) == \
        {"step": 10, "world_size": 1}


def test_unsupported_values_are_rejected_naming_the_key_path(tmp_path):
    ckpt = Checkpointer(tmp_path)
    cases = [
        ({"model": {"w": object()}}, r"state\['model'\]\['w'\]: values of type builtins.object"),
        ({"a": [1, {2, 3}]}, r"state\['a'\]\[1\]: values of type builtins.set"),
        ({"opt": {(1, 2): 3}}, r"state\['opt'\]: dict key \(1, 2\)"),
        ({"c": torch.zeros(2, dtype=torch.complex64)}, r"state\['c'\]: tensors of dtype"),
    ]
    for state, pattern in cases:
        with pytest.raises(TypeError, match=pattern):
            ckpt.save(1, state)
    assert ckpt.load() == (None, None)  # nothing was committed
    with pytest.raises(ValueError, match="step must be an int"):
        ckpt.save(-1, {})
    ckpt.save(1, {"w": torch.ones(1)}, persist=False)  # outside keel run: skipped, said once
    assert ckpt.load() == (None, None)


def test_corrupt_or_truncated_newest_step_falls_back_to_the_previous(tmp_path, capfd):
    ckpt = Checkpointer(tmp_path, keep_last=0)
    for step in (1, 2, 3):
        ckpt.save(step, {"w": torch.full((64,), float(step)), "step": step})
    newest = tmp_path / "step-3" / "rank-0.safetensors"
    data = bytearray(newest.read_bytes())
    data[-5] ^= 0x10  # one bit of tensor data
    newest.write_bytes(bytes(data))
    step, state = ckpt.load()
    assert step == 2 and torch.equal(state["w"], torch.full((64,), 2.0))
    assert "step 3 is unusable" in capfd.readouterr().err
    middle = tmp_path / "step-2" / "rank-0.safetensors"
    middle.write_bytes(middle.read_bytes()[:-7])  # truncated
    step, state = ckpt.load()
    assert step == 1 and state["step"] == 1
    assert "truncated" in capfd.readouterr().err


def test_half_written_steps_are_never_loaded(tmp_path):
    ckpt = Checkpointer(tmp_path)
    ckpt.save(5, {"w": torch.ones(2)})
    os.makedirs(tmp_path / "step-9")
    (tmp_path / "step-9" / "rank-0.safetensors.tmp").write_bytes(b"partial")
    assert ckpt.load()[0] == 5


def test_keep_last_retains_the_newest_committed_steps(tmp_path):
    ckpt = Checkpointer(tmp_path, keep_last=2)
    for step in range(5):
        ckpt.save(step, {"s": step})
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("step-")) == \
        ["step-3", "step-4"]
    with pytest.raises(ValueError, match="keep_last"):
        Checkpointer(tmp_path, keep_last=-1)


def test_files_are_plain_safetensors_read_by_an_independent_reader(tmp_path):
    """Parses keel's file with only the safetensors spec: u64 LE header size, JSON header,
    tensors at data_offsets after the header."""
    w = torch.randn(3, 5).to(torch.bfloat16)
    ids = torch.arange(6, dtype=torch.int64)
    Checkpointer(tmp_path).save(1, {"model": {"w": w}, "ids": ids})
    raw = (tmp_path / "step-1" / "rank-0.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    spec = {"BF16": torch.bfloat16, "I64": torch.int64}
    got = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        got[name] = torch.frombuffer(bytearray(data[begin:end]),
                                     dtype=spec[info["dtype"]]).reshape(info["shape"])
    assert torch.equal(got["model/w"], w) and torch.equal(got["ids"], ids)
    assert json.loads(header["__metadata__"]["keel.structure"])["D"][0][0] == "model"

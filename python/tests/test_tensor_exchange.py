"""Tensors cross from torch into keel's C++ and back through DLPack, without copies."""

import pytest
import torch

import keel
from keel import _C

DTYPES = [torch.float32, torch.bfloat16, torch.int64, torch.float16, torch.float64,
          torch.int32, torch.int8, torch.uint8]


def dtype_name(dtype):
    return str(dtype).removeprefix("torch.")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
def test_cpp_sees_the_tensor_in_place(dtype):
    t = torch.arange(6).to(dtype).reshape(2, 3)
    info = _C.tensor_info(t)
    assert info["dtype"] == dtype_name(dtype)
    assert info["shape"] == [2, 3]
    assert info["strides"] == [3, 1]
    assert info["data_ptr"] == t.data_ptr()  # the same memory: no copy was made
    assert info["device"] == "cpu"
    assert info["contiguous"] is True
    assert _C.tensor_sum(t) == pytest.approx(t.double().sum().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64], ids=dtype_name)
def test_strided_views_are_read_in_place(dtype):
    base = (torch.arange(12) * 3 - 7).to(dtype).reshape(3, 4)
    for view in (base.t(), base[1:, ::2], base[:, 1]):
        info = _C.tensor_info(view)
        assert info["data_ptr"] == view.data_ptr()
        assert info["strides"] == list(view.stride())
        assert info["contiguous"] == view.is_contiguous()
        assert _C.tensor_sum(view) == pytest.approx(view.double().sum().item())


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
def test_cpp_writes_land_in_the_torch_tensor(dtype):
    t = torch.zeros(4, 5, dtype=dtype)
    _C.fill_(t, 3)
    assert torch.equal(t, torch.full((4, 5), 3, dtype=dtype))
    if dtype.is_floating_point:
        _C.fill_(t, 1.5)  # exactly representable in every float type
        assert torch.equal(t, torch.full((4, 5), 1.5, dtype=dtype))


def test_bfloat16_writes_round_to_nearest_even():
    t = torch.zeros(3, dtype=torch.bfloat16)
    value = 1.0 + 3.0 / 256  # halfway between two bfloat16 values
    _C.fill_(t, value)
    assert torch.equal(t, torch.tensor([value] * 3, dtype=torch.float32).to(torch.bfloat16))


def test_non_contiguous_write_is_refused_and_changes_nothing():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    before = t.clone()
    with pytest.raises(ValueError, match="contiguous"):
        _C.fill_(t.t(), 0)
    assert torch.equal(t, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64], ids=dtype_name)
def test_cpp_owned_buffers_become_torch_tensors_without_copy(dtype):
    capsule = _C.arange(5, dtype_name(dtype))
    t = torch.from_dlpack(capsule)
    assert t.dtype == dtype
    assert torch.equal(t, torch.arange(5).to(dtype))
    assert t.data_ptr() % 64 == 0
    t.add_(1)  # torch owns it now and may write it
    assert _C.tensor_sum(t) == pytest.approx(15)
    with pytest.raises(Exception):
        torch.from_dlpack(capsule)  # a capsule is consumed once
    with pytest.raises(ValueError, match="already consumed"):
        _C.tensor_info(capsule)


def test_unconsumed_capsules_and_empty_tensors_are_fine():
    for _ in range(1000):
        _C.arange(1000, "float32")  # dropped unconsumed: freed by the capsule destructor
    assert torch.from_dlpack(_C.arange(0, "float32")).numel() == 0


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="expected a tensor .* got int"):
        _C.tensor_info(42)
    with pytest.raises(ValueError, match="n must be >= 0"):
        _C.arange(-1, "float32")
    with pytest.raises(ValueError, match="unknown dtype 'float128'"):
        _C.arange(3, "float128")
    with pytest.raises(ValueError, match="unsupported DLPack dtype"):
        _C.tensor_info(torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(ValueError, match="cannot export"):
        _C.tensor_info(torch.zeros(2, requires_grad=True))  # torch refuses: detach() first
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        _C.set_log_level("loud")
    # The module still works after every error.
    assert _C.tensor_sum(torch.ones(3)) == 3


def test_package_reports_build_facts():
    assert keel.__version__ == _C.__version__
    assert keel.build_info["version"] == keel.__version__
    assert set(keel.build_info) >= {"commit", "build_type", "with_cuda"}

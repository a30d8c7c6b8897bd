"""keel.optim on CUDA tensors (skipped without a GPU): the torch-ops path that CUDA takes, step
for step against the same optimizer on the CPU (whose two paths test_optim.py checks against
torch's optimizers and the papers' equations), for float32, bfloat16 and float16 parameters,
dense and sparse gradients; torch's own AdamW on the GPU; state_dict round trips; WSAM."""

import pytest
import torch

import keel.optim as ko

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CONFIGS = {
    "adamw": (ko.AdamW, dict(lr=1e-2, weight_decay=0.1)),
    "adamw-amsgrad": (ko.AdamW, dict(lr=1e-2, amsgrad=True)),
    "agd": (ko.AGD, dict(lr=1e-3, delta=1e-5, weight_decay=0.01)),
    "adagrad": (ko.Adagrad, dict(lr=0.1, weight_decay=0.01)),
    "group_adam": (ko.GroupAdam, dict(lr=1e-2, l1=1e-3, l2=1e-3, l21=1e-2)),
    "group_ftrl": (ko.GroupFTRL, dict(lr=0.1, l1=1e-3, l2=1e-3, l21=1e-2)),
    "group_adagrad": (ko.GroupAdagrad, dict(lr=0.1, l21=1e-2)),
}
# One rounding of the parameter's dtype per step may differ between devices (float math on
# the GPU is not bit-identical to the CPU's): tolerances are a few units of that dtype.
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-6), torch.bfloat16: dict(rtol=3e-2, atol=3e-2),
       torch.float16: dict(rtol=4e-3, atol=4e-3)}


def run(cls, kw, device, dtype, steps=6, sparse=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(64, 16, generator=g)
    grads = [torch.randn(64, 16, generator=g) for _ in range(steps)]
    p = torch.nn.Parameter(w0.to(device=device, dtype=dtype))
    opt = cls([p], impl="torch", **kw) if device == "cpu" else cls([p], **kw)
    for i, gr in enumerate(grads):
        if sparse:
            rows = torch.tensor(sorted({(i * 7 + k * 13) % 64 for k in range(9)}))
            values = gr[rows].to(dtype)
            p.grad = torch.sparse_coo_tensor(rows[None], values, p.shape).to(device)
        else:
            p.grad = gr.to(device=device, dtype=dtype)
        opt.step()
    return p.detach().cpu().float(), opt


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_steps_match_the_cpu(name, dtype):
    cls, kw = CONFIGS[name]
    want, _ = run(cls, kw, "cpu", dtype)
    got, opt = run(cls, kw, "cuda", dtype)
    torch.testing.assert_close(got, want, **TOL[dtype])
    for state in opt.state.values():  # slots stay float32 on the parameter's device
        for v in state.values():
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                assert v.device.type == "cuda" and v.dtype == torch.float32


@pytest.mark.parametrize("name", ["adamw", "adagrad", "group_adam", "group_ftrl"])
def test_cuda_sparse_gradients_match_the_cpu(name):
    cls, kw = CONFIGS[name]
    want, _ = run(cls, kw, "cpu", torch.float32, sparse=True)
    got, _ = run(cls, kw, "cuda", torch.float32, sparse=True)
    torch.testing.assert_close(got, want, **TOL[torch.float32])


def test_adamw_matches_torchs_own_on_the_gpu():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(1000, device="cuda"))
    b = torch.nn.Parameter(a.detach().clone())
    oa = ko.AdamW([a], lr=1e-2, weight_decay=0.1)
    ob = torch.optim.AdamW([b], lr=1e-2, weight_decay=0.1)
    for _ in range(20):
        grad = torch.randn(1000, device="cuda")
        a.grad, b.grad = grad.clone(), grad.clone()
        oa.step()
        ob.step()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["adamw", "agd", "group_adam"])
def test_cuda_state_dict_round_trip_continues_identically(name):
    cls, kw = CONFIGS[name]
    torch.manual_seed(1)
    grads = [torch.randn(32, 8, device="cuda") for _ in range(8)]
    p = torch.nn.Parameter(torch.randn(32, 8, device="cuda"))
    q = torch.nn.Parameter(p.detach().clone())
    op, oq = cls([p], **kw), cls([q], **kw)
    for g in grads[:4]:
        p.grad, q.grad = g.clone(), g.clone()
        op.step()
        oq.step()
    saved = oq.state_dict()
    oq = cls([q], **kw)
    oq.load_state_dict(saved)
    for g in grads[4:]:
        p.grad, q.grad = g.clone(), g.clone()
        op.step()
        oq.step()
    assert torch.equal(p, q)


def test_wsam_on_the_gpu_matches_the_cpu():
    def train(device):
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(13, 17), torch.nn.Tanh(),
                                torch.nn.Linear(17, 5)).to(device)
        opt = ko.WSAM(m.parameters(), ko.AdamW, rho=0.05, gamma=0.9, lr=1e-2, model=m,
                      impl="torch")  # the CPU side: the same torch-ops math
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            x, y = torch.randn(8, 13, generator=g).to(device), torch.randn(8, 5, generator=g)

            def closure():
                loss = torch.nn.functional.mse_loss(m(x), y.to(device))
                loss.backward()
                return loss
            opt.step(closure)
        return [p.detach().cpu() for p in m.parameters()]

    for got, want in zip(train("cuda"), train("cpu")):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)

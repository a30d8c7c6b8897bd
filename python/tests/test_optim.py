"""keel.optim against independent implementations: torch's own AdamW/Adagrad, and the AGD,
Group Adam, Group FTRL and SAM/WSAM equations written out here from the papers' math (not from
keel's code). Both keel paths run: the C++ kernels (impl="cpp") and the torch-ops math that
CUDA uses (impl="torch")."""

import copy
import math

import pytest
import torch

import keel.optim as ko

IMPLS = ["cpp", "torch"]


def model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(13, 17), torch.nn.Tanh(), torch.nn.Linear(17, 5))
    return m.to(dtype)


def batches(n, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 13, generator=g).to(dtype), torch.randn(8, 5, generator=g).to(dtype))
            for _ in range(n)]


def train(m, opt, data, scheduler=None):
    for x, y in data:
        opt.zero_grad()
        torch.nn.functional.mse_loss(m(x).float(), y.float()).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def assert_close(a, b, rtol=2e-5, atol=1e-6):
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.float(), pb.float(), rtol=rtol, atol=atol)


# ---------------------------------------------------------------- AdamW and Adagrad vs torch


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adamw_matches_torch_adamw_with_groups_and_scheduler(impl, amsgrad):
    mine, ref = model(), model()

    def groups(m):
        return [{"params": m[0].parameters(), "lr": 3e-3},
                {"params": m[2].parameters(), "weight_decay": 0.1}]

    opt = ko.AdamW(groups(mine), lr=1e-2, amsgrad=amsgrad, impl=impl)
    ref_opt = torch.optim.AdamW(groups(ref), lr=1e-2, amsgrad=amsgrad)
    data = batches(150)
    train(mine, opt, data, torch.optim.lr_scheduler.StepLR(opt, 40, 0.5))
    train(ref, ref_opt, data, torch.optim.lr_scheduler.StepLR(ref_opt, 40, 0.5))
    assert_close(mine, ref)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", [dict(), dict(lr_decay=0.01, weight_decay=0.05,
                                                  initial_accumulator_value=0.3)])
def test_adagrad_matches_torch_adagrad(impl, options):
    mine, ref = model(), model()
    train(mine, ko.Adagrad(mine.parameters(), lr=0.05, impl=impl, **options), batches(100))
    train(ref, torch.optim.Adagrad(ref.parameters(), lr=0.05, **options), batches(100))
    assert_close(mine, ref)


@pytest.mark.parametrize("impl", IMPLS)
def test_sparse_adagrad_matches_torch_sparse_adagrad(impl):
    def emb():
        torch.manual_seed(3)
        return torch.nn.Embedding(50, 8, sparse=True)

    mine, ref = emb(), emb()
    opt = ko.Adagrad(mine.parameters(), lr=0.1, impl=impl)
    ref_opt = torch.optim.Adagrad(ref.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        ids = torch.randint(0, 50, (16,), generator=g)
        for m, o in ((mine, opt), (ref, ref_opt)):
            o.zero_grad()
            m(ids).pow(2).sum().backward()
            o.step()
    torch.testing.assert_close(mine.weight, ref.weight, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_sparse_adamw_updates_only_the_rows_in_the_batch_lazily(impl):
    torch.manual_seed(4)
    emb = torch.nn.Embedding(40, 4, sparse=True)
    w = emb.weight.detach().double().clone()
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    opt = ko.AdamW(emb.parameters(), lr=0.01, weight_decay=0.1, impl=impl)
    g = torch.Generator().manual_seed(1)
    for t in range(1, 41):
        ids = torch.randint(0, 20, (6,), generator=g)  # rows 20..39 never touched
        opt.zero_grad()
        (emb(ids) * torch.arange(4.0)).sum().backward()
        opt.step()
        rows = ids.unique()
        grad = torch.zeros(40, 4, dtype=torch.float64)
        grad.index_add_(0, ids, torch.arange(4.0, dtype=torch.float64).expand(6, 4))
        for r in rows.tolist():
            w[r] *= 1 - 0.01 * 0.1
            m[r] = 0.9 * m[r] + 0.1 * grad[r]
            v[r] = 0.999 * v[r] + 0.001 * grad[r] ** 2
            w[r] -= 0.01 / (1 - 0.9**t) * m[r] / (v[r].sqrt() / math.sqrt(1 - 0.999**t) + 1e-8)
    torch.testing.assert_close(emb.weight.detach().double(), w, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- AGD


def agd_reference(params, steps_grads, lr, betas, delta, wd=0.0, decouple=True, fixed=False,
                  amsgrad=False, clip=None, win=False):
    """AGD from the paper's equations, in float64: w -= lr * m_hat / max(sqrt(b_hat), delta),
    b the EMA of (m_hat_t - m_hat_{t-1})^2."""
    b1, b2 = betas
    w = [p.detach().double().clone() for p in params]
    m = [torch.zeros_like(x) for x in w]
    b = [torch.zeros_like(x) for x in w]
    bmax = [torch.zeros_like(x) for x in w]
    z = [x.clone() for x in w]
    prev_mhat = [None] * len(w)
    for t, grads in enumerate(steps_grads, start=1):
        for i, g in enumerate(grads):
            g = g.double()
            if not win:
                if decouple:
                    w[i] *= (1 - wd) if fixed else (1 - lr * wd)
                else:
                    g = g + wd * w[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            mhat = m[i] / (1 - b1**t)
            s = mhat if t == 1 else mhat - prev_mhat[i]
            prev_mhat[i] = mhat
            b[i] = b2 * b[i] + (1 - b2) * s * s
            bb = b[i]
            if amsgrad:
                bmax[i] = torch.maximum(bmax[i], b[i])
                bb = bmax[i]
            bhat = bb / (1 - b2**t)
            # u = m / max(sqrt(b), delta sqrt(bc2)), clipped, scaled by lr sqrt(bc2)/bc1
            u = m[i] / torch.clamp(bb.sqrt(), min=delta * math.sqrt(1 - b2**t))
            if clip is not None:
                u = u.clamp(-clip, clip)
            eta = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
            if win:
                z[i] = (z[i] - eta * u) / (1 + wd * eta)
                tau = 1 / (3 + 2 * eta * wd)
                w[i] = tau * w[i] - 2 * tau * eta * u + 2 * tau * z[i]
            else:
                assert clip is not None or torch.allclose(
                    eta * u, lr * mhat / torch.clamp(bhat.sqrt(), min=delta))
                w[i] = w[i] - eta * u
    return w


AGD_OPTIONS = [
    dict(),
    dict(delta=1e-14),
    dict(delta=1e-2),  # mostly SGD mode
    dict(weight_decay=0.1),
    dict(weight_decay=0.1, fixed_decay=True),
    dict(weight_decay=0.01, weight_decouple=False),
    dict(amsgrad=True),
    dict(clip=0.5, delta=1e-8),
    dict(win=True, weight_decay=0.05),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", AGD_OPTIONS, ids=lambda o: ",".join(o) or "defaults")
def test_agd_matches_the_equations(impl, options):
    m = model()
    params = list(m.parameters())
    kw = dict(lr=3e-3, betas=(0.9, 0.99), delta=1e-5)
    kw.update(options)
    ref_kw = dict(kw, decouple=kw.pop("weight_decouple", True), fixed=kw.pop("fixed_decay",
                                                                             False))
    ref_kw.pop("weight_decouple", None)
    ref_kw.pop("fixed_decay", None)
    ref_kw["wd"] = ref_kw.pop("weight_decay", 0.0)
    opt = ko.AGD(params, impl=impl, weight_decouple=ref_kw["decouple"],
                 fixed_decay=ref_kw["fixed"], **kw)
    start = copy.deepcopy(params)
    grads = []
    for x, y in batches(80):
        opt.zero_grad()
        torch.nn.functional.mse_loss(m(x), y).backward()
        grads.append([p.grad.clone() for p in params])
        opt.step()
    want = agd_reference(start, grads, **ref_kw)
    for p, w in zip(params, want):
        torch.testing.assert_close(p.detach().double(), w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_agd_first_step_is_sign_and_sgd_mode_is_lr_over_delta(impl):
    p = torch.nn.Parameter(torch.zeros(1000))
    opt = ko.AGD([p], lr=0.01, delta=1e-5, impl=impl)
    p.grad = torch.randn(1000)
    opt.step()
    torch.testing.assert_close(p.detach(), -0.01 * p.grad.sign())
    # A gradient that never changes: b decays to 0, so the step becomes SGD at lr/delta.
    q = torch.nn.Parameter(torch.zeros(8))
    opt = ko.AGD([q], lr=1e-3, betas=(0.0, 0.5), delta=1.0, impl=impl)
    for _ in range(60):
        q.grad = torch.full((8,), 0.25)
        before = q.detach().clone()
        opt.step()
    torch.testing.assert_close(before - q.detach(), torch.full((8,), 1e-3 * 0.25 / 1.0))


def test_agd_win_starts_z_at_the_weights_not_zero():
    p = torch.nn.Parameter(torch.full((16,), 5.0))
    opt = ko.AGD([p], lr=1e-3, win=True, weight_decay=0.0)
    p.grad = torch.full((16,), 1e-3)
    opt.step()
    # z = w0 keeps w near 5 - eta*u*4/3 (z = 0 would give w ~ 5/3).
    assert (p.detach() - 5.0).abs().max() < 0.01


def test_agd_does_not_modify_the_gradient_with_coupled_decay():
    p = torch.nn.Parameter(torch.ones(4))
    opt = ko.AGD([p], weight_decay=0.5, weight_decouple=False)
    p.grad = torch.full((4,), 0.1)
    opt.step()
    assert torch.equal(p.grad, torch.full((4,), 0.1))


# ---------------------------------------------------------------- Group Adam / FTRL


def group_adam_reference(w, steps, lr, b1=0.9, b2=0.999, eps=1e-8, l1=0.0, l2=0.0, l21=0.0):
    """tfplus v4 Group Adam in float64, row by row, with a per-row first-update flag.
    steps: [(rows, grads)]."""
    w = w.double().clone()
    m, v, z = torch.zeros_like(w), torch.zeros_like(w), torch.zeros_like(w)
    seen = set()
    d = w.shape[1]
    for t, (rows, grads) in enumerate(steps, start=1):
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        for r, g in zip(rows.tolist(), grads.double()):
            m[r] = b1 * m[r] + (1 - b1) * g
            v_new = b2 * v[r] + (1 - b2) * g * g
            sigma = v_new.sqrt() + eps if r not in seen else v_new.sqrt() - v[r].sqrt()
            seen.add(r)
            z[r] += alpha * m[r] - sigma * w[r]
            v[r] = v_new
            u = z[r].clamp(-lr * l1, lr * l1) - z[r]
            threshold = lr * l21 * math.sqrt(d)
            if u.norm() > threshold:
                w[r] = (1 - threshold / u.norm()) * u / (v[r].sqrt() + eps + 2 * lr * l2)
            else:
                w[r] = 0
    return w


def sparse_steps(num_rows, dim, n, seed, hot=None):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        rows = torch.randperm(num_rows if hot is None else hot, generator=g)[:num_rows // 3]
        out.append((rows.sort().values, torch.randn(len(rows), dim, generator=g)))
    return out


def run_sparse(opt_cls, w0, steps, **kw):
    p = torch.nn.Parameter(w0.clone())
    opt = opt_cls([p], **kw)
    for rows, grads in steps:
        p.grad = torch.sparse_coo_tensor(rows[None], grads, p.shape)
        opt.step()
    return p.detach(), opt


@pytest.mark.parametrize("impl", IMPLS)
def test_group_adam_without_penalty_is_lazy_adam(impl):
    torch.manual_seed(5)
    w0 = torch.randn(30, 8)
    steps = sparse_steps(30, 8, 100, seed=2)
    got, _ = run_sparse(ko.GroupAdam, w0, steps, lr=0.01, impl=impl)
    # Lazy TF-style Adam: w -= lr sqrt(bc2)/bc1 * m / (sqrt(v) + eps), touched rows only.
    w, m, v = w0.double().clone(), torch.zeros(30, 8, dtype=torch.float64), torch.zeros(
        30, 8, dtype=torch.float64)
    for t, (rows, grads) in enumerate(steps, start=1):
        g = grads.double()
        m[rows] = 0.9 * m[rows] + 0.1 * g
        v[rows] = 0.999 * v[rows] + 0.001 * g * g
        w[rows] -= 0.01 * math.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m[rows] / (v[rows].sqrt()
                                                                              + 1e-8)
    torch.testing.assert_close(got.double(), w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("penalty", [dict(l21=2.0), dict(l1=0.02, l2=0.1, l21=0.02),
                                     dict(l1=0.5)])
def test_group_adam_with_penalty_matches_the_equations(impl, penalty):
    torch.manual_seed(6)
    w0 = torch.randn(24, 16) * 0.1
    steps = sparse_steps(24, 16, 60, seed=3)
    got, opt = run_sparse(ko.GroupAdam, w0, steps, lr=0.05, impl=impl, **penalty)
    want = group_adam_reference(w0, steps, lr=0.05, **penalty)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)
    zero_rows = (want == 0).all(dim=1)
    assert torch.equal((got == 0).all(dim=1), zero_rows)
    if penalty.get("l21", 0) >= 1:
        assert zero_rows.any()  # the penalty really bites in this configuration
        assert opt.zero_rows() == zero_rows.float().mean().item()


@pytest.mark.parametrize("impl", IMPLS)
def test_group_adam_zeroes_a_row_iff_the_group_test_says_so_and_revives_it(impl):
    p = torch.nn.Parameter(torch.zeros(2, 4))
    opt = ko.GroupAdam([p], lr=0.1, l21=0.1, impl=impl)
    # Step 1 from w = 0: u = -alpha m with alpha m = 0.0316 g / |g| * (g's share of m), against
    # the threshold lr l21 sqrt(4) = 0.02: row 0 (|u| = 6e-5) zeroes, row 1 (0.063) stays.
    p.grad = torch.tensor([[1e-3] * 4, [10.0] * 4])
    opt.step()
    assert torch.equal(p.detach()[0], torch.zeros(4)) and (p.detach()[1] != 0).all()
    # A huge l21 zeroes every touched row...
    q = torch.nn.Parameter(torch.randn(5, 3))
    opt2 = ko.GroupAdam([q], lr=0.1, l21=1e6, impl=impl)
    q.grad = torch.sparse_coo_tensor(torch.tensor([[1, 3]]), torch.randn(2, 3), (5, 3))
    before = q.detach().clone()
    opt2.step()
    assert torch.equal(q.detach()[[1, 3]], torch.zeros(2, 3))
    assert torch.equal(q.detach()[[0, 2, 4]], before[[0, 2, 4]])  # ...and only those
    # Row 0 of the first optimizer revives once its accumulated z passes the threshold.
    for _ in range(200):
        p.grad = torch.tensor([[-3.0] * 4, [0.0] * 4])
        opt.step()
        if (p.detach()[0] != 0).all():
            break
    assert (p.detach()[0] > 0).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_group_adagrad_without_penalty_is_adagrad(impl):
    torch.manual_seed(7)
    mine, ref = model(), model()
    train(mine, ko.GroupAdagrad(mine.parameters(), lr=0.05, impl=impl), batches(80))
    train(ref, torch.optim.Adagrad(ref.parameters(), lr=0.05, initial_accumulator_value=0.1,
                                   eps=0.0), batches(80))
    assert_close(mine, ref, rtol=1e-4, atol=1e-5)


def group_ftrl_reference(w, steps, lr, power, n0, l1, l2, l21, shrink):
    w = w.double().clone()
    n = torch.full_like(w, n0)
    z = -(n0 ** -power) / lr * w
    d = w.shape[1]
    for rows, grads in steps:
        for r, g in zip(rows.tolist(), grads.double()):
            g = g + 2 * shrink * w[r]
            n_new = n[r] + g * g
            z[r] += g - (n_new ** -power - n[r] ** -power) / lr * w[r]
            n[r] = n_new
            u = z[r].clamp(-l1, l1) - z[r]
            if u.norm() > l21 * math.sqrt(d):
                w[r] = (1 - l21 * math.sqrt(d) / u.norm()) * u / (n[r] ** -power / lr + 2 * l2)
            else:
                w[r] = 0
    return w


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("power", [-0.5, -0.3])
def test_group_ftrl_matches_the_equations(impl, power):
    torch.manual_seed(8)
    w0 = torch.randn(20, 8) * 0.1
    steps = sparse_steps(20, 8, 50, seed=4)
    kw = dict(lr=0.1, l1=0.01, l2=0.01, l21=0.05, l2_shrinkage=0.01)
    got, _ = run_sparse(ko.GroupFTRL, w0, steps, lr_power=power, impl=impl, **kw)
    want = group_ftrl_reference(w0, steps, kw["lr"], power, 0.1, kw["l1"], kw["l2"], kw["l21"],
                                kw["l2_shrinkage"])
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)
    assert torch.equal((got == 0).all(dim=1), (want == 0).all(dim=1))


# ---------------------------------------------------------------- common behaviour

ALL = [
    (ko.AdamW, dict(lr=1e-2, amsgrad=True)),
    (ko.AGD, dict(lr=1e-3, amsgrad=True, win=True, weight_decay=0.01)),
    (ko.Adagrad, dict(lr=0.05)),
    (ko.GroupAdam, dict(lr=1e-2, l21=1e-3)),
    (ko.GroupFTRL, dict(lr=0.05, l21=1e-3)),
]


@pytest.mark.parametrize("cls,kw", ALL, ids=lambda x: getattr(x, "__name__", ""))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_state_dict_round_trip_resumes_identically(cls, kw, dtype):
    unbroken = model(dtype=dtype)
    opt = cls(unbroken.parameters(), **kw)
    data = batches(40, dtype=dtype)
    train(unbroken, opt, data[:20])
    saved_model = copy.deepcopy(unbroken.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    train(unbroken, opt, data[20:])

    resumed = model(seed=99, dtype=dtype)
    resumed.load_state_dict(saved_model)
    opt2 = cls(resumed.parameters(), **kw)
    opt2.load_state_dict(saved_opt)
    for state in opt2.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and value.is_floating_point():
                assert value.dtype == torch.float32, key  # not cast to the parameter's dtype
    train(resumed, opt2, data[20:])
    for a, b in zip(unbroken.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("cls,kw", ALL, ids=lambda x: getattr(x, "__name__", ""))
def test_cpp_and_torch_paths_agree_on_bfloat16(cls, kw):
    a, b = model(dtype=torch.bfloat16), model(dtype=torch.bfloat16)
    train(a, cls(a.parameters(), impl="cpp", **kw), batches(30, dtype=torch.bfloat16))
    train(b, cls(b.parameters(), impl="torch", **kw), batches(30, dtype=torch.bfloat16))
    assert_close(a, b, rtol=2e-2, atol=2e-2)  # one bfloat16 ulp where float32 rounding differs


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cls,kw", ALL, ids=lambda x: getattr(x, "__name__", ""))
def test_sparse_gradient_over_every_row_equals_the_dense_update(cls, kw, impl):
    torch.manual_seed(10)
    w0 = torch.randn(12, 5)
    dense, sparse = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    opt_d, opt_s = cls([dense], impl=impl, **kw), cls([sparse], impl=impl, **kw)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        grad = torch.randn(12, 5, generator=g)
        dense.grad = grad.clone()
        perm = torch.randperm(12, generator=g)  # uncoalesced order: the optimizer sorts it out
        sparse.grad = torch.sparse_coo_tensor(perm[None], grad[perm], (12, 5))
        opt_d.step()
        opt_s.step()
    assert torch.equal(dense, sparse)


def test_more_threads_give_the_same_bits():
    # Inputs made once: torch's own kernels may round differently with other thread counts.
    start = torch.linspace(-1, 1, 300_001)
    grads = [torch.sin(torch.arange(300_001.0) * (step + 1)) for step in range(3)]
    results = []
    for threads in (1, 3):
        torch.set_num_threads(threads)
        try:
            p = torch.nn.Parameter(start.clone())
            opt = ko.AGD([p], lr=1e-3, amsgrad=True)
            for g in grads:
                p.grad = g.clone()
                opt.step()
            results.append(p.detach().clone())
        finally:
            torch.set_num_threads(1)
    assert torch.equal(results[0], results[1])


def test_bfloat16_parameters_keep_float32_state_and_follow_float32_math():
    torch.manual_seed(9)
    p = torch.nn.Parameter(torch.randn(300).bfloat16())
    w = p.detach().float().clone()
    m, v = torch.zeros(300), torch.zeros(300)
    opt = ko.AdamW([p], lr=1e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    for t in range(1, 21):
        grad = torch.randn(300, generator=g).bfloat16()
        p.grad = grad
        opt.step()
        m = 0.9 * m + 0.1 * grad.float()
        v = 0.999 * v + 0.001 * grad.float() ** 2
        w = (w - 1e-2 / (1 - 0.9**t) * m / (v.sqrt() / math.sqrt(1 - 0.999**t) + 1e-8))
        w = w.bfloat16().float()  # the parameter is stored in bfloat16 after every step
    assert opt.state[p]["exp_avg"].dtype == torch.float32
    torch.testing.assert_close(p.detach().float(), w, rtol=1e-2, atol=1e-2)
    assert (p.detach().float() == w).float().mean() > 0.95


@pytest.mark.parametrize("bad", [
    lambda p: ko.AdamW(p, lr=-1.0),
    lambda p: ko.AdamW(p, betas=(1.0, 0.9)),
    lambda p: ko.AGD(p, delta=0.0),
    lambda p: ko.AGD(p, clip=-1.0),
    lambda p: ko.GroupAdam(p, l21=-0.1),
    lambda p: ko.GroupFTRL(p, lr=0.0),
    lambda p: ko.GroupFTRL(p, lr_power=0.5),
    lambda p: ko.Adagrad(p, initial_accumulator_value=-1.0),
    lambda p: ko.AdamW(p, impl="gpu"),
    lambda p: ko.WSAM(p, torch.optim.SGD, gamma=1.0, lr=0.1),
    lambda p: ko.WSAM(p, torch.optim.SGD, rho=-1.0, lr=0.1),
])
def test_bad_options_raise_value_error_naming_the_option(bad):
    with pytest.raises(ValueError, match=r"invalid \w+"):
        bad([torch.nn.Parameter(torch.zeros(3))])


def test_bad_kernel_input_is_rejected_and_nothing_changes():
    from keel import _C
    p, g = torch.ones(8), torch.ones(8)
    m, v = torch.zeros(8), torch.zeros(8)
    with pytest.raises(ValueError, match="unknown option 'lr_typo'"):
        _C.optim_step("adamw", {"lr_typo": 1.0}, [(p, g, [m, v], 1, None, None)])
    with pytest.raises(ValueError, match="unknown kind 'adam'"):
        _C.optim_step("adam", {}, [(p, g, [m, v], 1, None, None)])
    with pytest.raises(ValueError, match="float32 with 8 elements"):
        _C.optim_step("adamw", {}, [(p, g, [m, torch.zeros(7)], 1, None, None)])
    with pytest.raises(ValueError, match="not contiguous"):
        _C.optim_step("adamw", {}, [(torch.ones(8, 2)[:, 0], g, [m, v], 1, None, None)])
    with pytest.raises(ValueError, match="row 9 out of range"):
        _C.optim_step("adamw", {}, [(torch.ones(4, 2), torch.ones(2, 2), [torch.zeros(4, 2)] * 2,
                                     1, torch.tensor([1, 9]), None)])
    with pytest.raises(ValueError, match="appears twice"):
        _C.optim_step("adamw", {}, [(torch.ones(4, 2), torch.ones(2, 2), [torch.zeros(4, 2)] * 2,
                                     1, torch.tensor([1, 1]), None)])
    assert torch.equal(p, torch.ones(8)) and torch.equal(m, torch.zeros(8))


def test_float16_parameters_fall_back_to_the_torch_math():
    p = torch.nn.Parameter(torch.ones(5, dtype=torch.float16))
    opt = ko.AdamW([p], lr=0.1)
    p.grad = torch.ones(5, dtype=torch.float16)
    opt.step()
    assert (p.detach() < 1).all()
    with pytest.raises(ValueError, match="impl='cpp' needs"):
        q = torch.nn.Parameter(torch.ones(5, dtype=torch.float16))
        q.grad = torch.ones(5, dtype=torch.float16)
        ko.AdamW([q], impl="cpp").step()


# ---------------------------------------------------------------- WSAM


def sam_like_reference(m, data, lr, momentum, rho, gamma, decouple):
    """WSAM written out: g at w, e = rho g/|g|, g~ at w+e, then SGD-momentum on
    g + alpha (g~ - g) (coupled) or on g followed by w -= lr alpha (g~ - g) (decoupled)."""
    alpha = gamma / (1 - gamma)
    params = list(m.parameters())
    buf = [torch.zeros_like(p) for p in params]

    def grads(x, y):
        for p in params:
            p.grad = None
        torch.nn.functional.mse_loss(m(x), y).backward()
        return [p.grad.clone() for p in params]

    for x, y in data:
        g = grads(x, y)
        norm = torch.norm(torch.stack([t.norm() for t in g]))
        e = [rho * t / (norm + 1e-12) for t in g]
        with torch.no_grad():
            for p, d in zip(params, e):
                p.add_(d)
        gs = grads(x, y)
        with torch.no_grad():
            for i, (p, d) in enumerate(zip(params, e)):
                p.sub_(d)
                step_grad = g[i] + alpha * (gs[i] - g[i]) if not decouple else g[i]
                buf[i] = momentum * buf[i] + step_grad if buf[i].abs().sum() > 0 or True else 0
                p.sub_(lr * buf[i])
                if decouple:
                    p.sub_(lr * alpha * (gs[i] - g[i]))


def wsam_train(m, opt, data, pre_backward=False):
    for x, y in data:
        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(m(x), y)
            loss.backward()
            return loss
        if pre_backward:  # the reference README's mistake: backward before step(closure)
            torch.nn.functional.mse_loss(m(x), y).backward()
        opt.step(closure)


@pytest.mark.parametrize("decouple", [True, False])
@pytest.mark.parametrize("gamma", [0.5, 0.9])
def test_wsam_matches_the_equations(decouple, gamma):
    mine, ref = model(), model()
    data = batches(30)
    opt = ko.WSAM(mine.parameters(), torch.optim.SGD, rho=0.1, gamma=gamma, decouple=decouple,
                  lr=0.05, momentum=0.9)
    wsam_train(mine, opt, data)
    sam_like_reference(ref, data, lr=0.05, momentum=0.9, rho=0.1, gamma=gamma,
                       decouple=decouple)
    assert_close(mine, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(gamma=0.0, rho=0.1), dict(gamma=0.9, rho=0.0)])
def test_wsam_with_gamma_or_rho_zero_is_the_base_optimizer(kw):
    mine, ref = model(), model()
    data = batches(30)
    wsam_train(mine, ko.WSAM(mine.parameters(), torch.optim.SGD, lr=0.05, momentum=0.9, **kw),
               data)
    train(ref, torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9), data)
    assert_close(mine, ref, rtol=1e-5, atol=1e-7)


def test_wsam_coupled_equals_decoupled_for_plain_sgd_and_ignores_stale_gradients():
    a, b, c = model(), model(), model()
    data = batches(20)
    wsam_train(a, ko.WSAM(a.parameters(), torch.optim.SGD, decouple=True, lr=0.05), data)
    wsam_train(b, ko.WSAM(b.parameters(), torch.optim.SGD, decouple=False, lr=0.05), data)
    wsam_train(c, ko.WSAM(c.parameters(), torch.optim.SGD, decouple=True, lr=0.05), data,
               pre_backward=True)
    assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert_close(a, c, rtol=0, atol=0)


def test_wsam_wraps_keel_optimizers_and_schedulers_see_its_groups():
    m = model()
    opt = ko.WSAM(m.parameters(), ko.AGD, lr=1e-3, delta=1e-14)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)
    wsam_train(m, opt, batches(3))
    sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == 5e-4
    with pytest.raises(ValueError, match="needs a closure"):
        opt.step()


def test_wsam_freezes_batchnorm_statistics_in_the_second_pass():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6),
                              torch.nn.Linear(6, 1))
    plain = copy.deepcopy(net)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    opt = ko.WSAM(net.parameters(), torch.optim.SGD, lr=0.0, model=net)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        return loss

    opt.step(closure)
    plain(x)  # one forward pass: what the statistics must look like
    torch.testing.assert_close(net[1].running_mean, plain[1].running_mean)
    assert net[1].momentum == plain[1].momentum


def _wsam_ddp_worker(rank, world, port, out):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    torch.manual_seed(0)
    net = torch.nn.parallel.DistributedDataParallel(model())
    opt = ko.WSAM(net.parameters(), torch.optim.SGD, rho=0.1, gamma=0.9, lr=0.05, momentum=0.9,
                  model=net)
    for x, y in batches(10, seed=10 + rank):  # different data on each rank
        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            return loss
        opt.step(closure)
    torch.save([p.detach() for p in net.parameters()], f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_wsam_under_ddp_keeps_ranks_identical(tmp_path):
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_wsam_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    start = list(model().parameters())
    for pa, pb, p0 in zip(a, b, start):
        assert torch.equal(pa, pb)       # pass-1 gradients were averaged after the perturbation
        assert not torch.equal(pa, p0)   # and training moved the weights

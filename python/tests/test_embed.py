"""keel.embed from Python: lookups and updates through the C++ table (DLPack, no copies),
the Embedding module inside a model trained with torch, admission, eval-mode lookups, bad
input errors, and concurrent use from Python threads (the GIL is released)."""

import threading

import pytest
import torch

import keel.embed as ke


def test_lookup_shape_and_deterministic_init():
    a = ke.Table(dim=8, init="normal(0,0.1)", seed=3)
    b = ke.Table(dim=8, init="normal(0,0.1)", seed=3)
    ids = torch.tensor([[5, 7, 5], [1 << 40, -3, 7]])
    ra = a.lookup(ids)
    assert ra.shape == (2, 3, 8) and ra.dtype == torch.float32
    torch.testing.assert_close(ra, b.lookup(ids.flip(0)).flip(0), rtol=0, atol=0)
    assert torch.equal(ra[0, 0], ra[0, 2])            # same id, same row
    assert not torch.equal(ra[0, 0], ra[0, 1])
    assert 0.02 < ra.std().item() < 0.3
    c = ke.Table(dim=8, init="normal(0,0.1)", seed=4)
    assert not torch.equal(c.lookup(ids), ra)


def test_sgd_updates_exactly_the_rows_given_and_sums_repeats():
    t = ke.Table(dim=4, optimizer="sgd", lr=0.5)
    ids = torch.tensor([1, 2, 3])
    t.lookup(ids)
    t.apply_gradients(torch.tensor([1, 1, 3]), torch.ones(3, 4))
    got = t.lookup(ids, train=False)
    torch.testing.assert_close(got, torch.tensor([[-1.0] * 4, [0.0] * 4, [-0.5] * 4]))
    s = t.stats()
    assert s["dram_rows"] == 3 and s["step"] == 1 and s["admissions"] == 3


def test_admission_and_eval_lookups():
    t = ke.Table(dim=2, optimizer="sgd", lr=1.0, admit_after=2, init="uniform(1,1)")
    ids = torch.tensor([10])
    assert torch.equal(t.lookup(ids), torch.zeros(1, 2))        # first sighting: zeros
    t.apply_gradients(ids, torch.ones(1, 2))                     # dropped
    assert torch.equal(t.lookup(ids, train=False), torch.zeros(1, 2))  # eval: not a sighting
    assert torch.equal(t.lookup(ids), torch.ones(1, 2))         # second sighting: admitted
    assert t.stats()["admissions"] == 1 and t.stats()["rejected"] == 1


def model_and_data(update):
    torch.manual_seed(0)
    table = ke.Table(dim=8, optimizer="adagrad", lr=0.5, init="normal(0,0.1)", seed=1)
    emb = ke.Embedding(table, update=update)
    head = torch.nn.Linear(8, 1)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 50, (64,), generator=g)
    y = (ids % 2).float()  # learnable from the id's row alone
    return table, emb, head, ids, y


def train(emb, head, ids, y, steps, accumulate=1):
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    losses = []
    for _ in range(steps):
        for _ in range(accumulate):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                head(emb(ids)).squeeze(-1), y)
            loss.backward()
        opt.step()
        opt.zero_grad()
        if emb.update == "step":
            emb.step()
        losses.append(loss.item())
    return losses


def test_embedding_module_trains_with_the_tables_optimizer():
    table, emb, head, ids, y = model_and_data("backward")
    assert list(emb.parameters()) == []  # dense optimizers never see the table
    losses = train(emb, head, ids, y, 60)
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert table.stats()["step"] == 60
    emb.eval()
    with torch.no_grad():
        before = table.stats()["lookups"]
        emb(ids)
        assert table.stats()["step"] == 60 and table.stats()["lookups"] > before


def test_update_on_step_applies_accumulated_gradients_once():
    table, emb, head, ids, y = model_and_data("step")
    train(emb, head, ids, y, 5, accumulate=3)
    assert table.stats()["step"] == 5  # one table step per emb.step(), not per backward


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="dim 0"):
        ke.Table(dim=0)
    with pytest.raises(ValueError, match="2XB"):
        ke.Table(dim=4, dram_budget="2XB")
    with pytest.raises(ValueError, match="optimizer 'lamb'"):
        ke.Table(dim=4, optimizer="lamb")
    with pytest.raises(ValueError, match="unknown optimizer option 'momentum'"):
        ke.Table(dim=4, momentum=0.9)
    with pytest.raises(ValueError, match="gauss"):
        ke.Table(dim=4, init="gauss(0,1)")
    t = ke.Table(dim=4)
    with pytest.raises(ValueError, match="integer"):
        t.lookup(torch.tensor([1.5]))
    with pytest.raises(ValueError, match=r"grads must be \[2, 4\]"):
        t.apply_gradients(torch.tensor([1, 2]), torch.ones(2, 3))
    with pytest.raises(ValueError, match="update must be"):
        ke.Embedding(t, update="later")
    assert t.lookup(torch.tensor([1])).shape == (1, 4)  # still usable


def test_threads_look_up_and_update_concurrently(tmp_path):
    t = ke.Table(dim=4, optimizer="sgd", lr=1.0, dram_budget=4096, ssd_path=str(tmp_path / "ssd"),
                 shards=4)
    ids = torch.arange(100)
    t.lookup(ids)

    def work():
        for _ in range(50):
            t.lookup(ids)
            t.apply_gradients(ids, torch.ones(100, 4))
    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert torch.equal(t.lookup(ids, train=False), torch.full((100, 4), -200.0))
    s = t.stats()
    assert s["dram_rows"] + s["ssd_rows"] == 100 and s["evictions"] > 0


def test_save_load_round_trip_continues_training_identically(tmp_path):
    def make(ssd):
        return ke.Table(dim=8, optimizer="adam", lr=0.05, init="normal(0,0.1)", seed=9,
                        dram_budget="16KiB", ssd_path=str(tmp_path / ssd), shards=4)

    a = make("ssd-a")
    g = torch.Generator().manual_seed(0)

    def step(t, seed):
        gg = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, 500, (64,), generator=gg)
        t.lookup(ids)
        t.apply_gradients(ids, torch.randn(64, 8, generator=gg))

    for i in range(20):
        step(a, i)
    a.save(tmp_path / "ckpt")
    for i in range(20, 25):
        step(a, i)
    a.save(tmp_path / "ckpt", incremental=True)
    b = make("ssd-b")
    b.load(tmp_path / "ckpt")
    ids = torch.arange(500)
    assert torch.equal(a.lookup(ids, train=False), b.lookup(ids, train=False))
    assert b.stats()["step"] == 25 and b.stats()["ssd_rows"] > 0
    for i in range(25, 30):
        step(a, i)
        step(b, i)
    assert torch.equal(a.lookup(ids, train=False), b.lookup(ids, train=False))
    with pytest.raises(ValueError, match="dim 8"):
        ke.Table(dim=4, optimizer="adam").load(tmp_path / "ckpt")
    del g


SAVER = """
import sys, torch, keel.embed as ke
t = ke.Table(dim=16, optimizer="adagrad", lr=0.1, init="normal(0,1)", seed=1)
ids = torch.arange(200_000)
t.lookup(ids)
for r in range(10**6):
    t.apply_gradients(ids[r % 7::7], torch.full((len(ids[r % 7::7]), 16), 0.25))
    t.save(sys.argv[1], incremental=r % 2 == 1)
    print(r, flush=True)
"""


def test_process_killed_mid_save_leaves_the_previous_save_loadable(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    build = os.environ.get("KEEL_BUILD_DIR")
    env = {**os.environ}
    if build:
        env["PYTHONPATH"] = os.path.join(build, "python")
    p = subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path / "ckpt")],
                         stdout=subprocess.PIPE, text=True, env=env)
    done = [p.stdout.readline() for _ in range(3)]
    assert done[-1].strip() == "2", done
    time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    t = ke.Table(dim=16, optimizer="adagrad", lr=0.1, init="normal(0,1)", seed=1)
    t.load(tmp_path / "ckpt")
    steps = t.stats()["step"]
    assert steps >= 3
    # Replay `steps` rounds: the loaded rows are exactly that state.
    want = ke.Table(dim=16, optimizer="adagrad", lr=0.1, init="normal(0,1)", seed=1)
    ids = torch.arange(200_000)
    want.lookup(ids)
    for r in range(steps):
        want.apply_gradients(ids[r % 7::7], torch.full((len(ids[r % 7::7]), 16), 0.25))
    sample = torch.randint(0, 200_000, (5000,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(t.lookup(sample, train=False), want.lookup(sample, train=False))

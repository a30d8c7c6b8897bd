"""End-to-end keel.ckpt under real keel processes: commits through the master across nodes,
restore from memory across nodes, the agent killed while persisting, a too-small /dev/shm.
(Single-node resume tests are in test_train.py.)"""

import json
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest

from test_train import ROOT, finish, get, keel, start_master, tag, wait_for  # noqa: F401

RESUME = str(ROOT / "tests" / "workers" / "resume_worker.py")
CKPT_WORKER = str(ROOT / "tests" / "workers" / "ckpt_worker.py")


def test_two_nodes_commit_through_the_master_and_resume_from_memory_bitwise(keel_bin, tag,
                                                                            tmp_path):
    import torch

    # The reference: the same training without a failure, on one node.
    rc, _, err = finish(keel(keel_bin, "run", "--nproc-per-node", "2", RESUME, "--ckpt",
                             str(tmp_path / "clean"), "--out", str(tmp_path / "clean.pt"),
                             "--tag", tag))
    assert rc == 0, err

    master, addr, http = start_master(keel_bin, "--nnodes", "2", "--job", "ck", http=True)
    ckpt = tmp_path / "ckpt"
    cmd = ["--master", addr, "--token", "secret", "--", sys.executable, RESUME, "--ckpt",
           str(ckpt), "--out", str(tmp_path / "crashed.pt"), "--crash-at-step", "17",
           "--step-sleep", "0.05", "--tag", tag]
    agents = [keel(keel_bin, "agent", *cmd) for _ in range(2)]
    try:
        # While it runs: the master commits steps and exports checkpoint metrics.
        deadline = time.time() + 60
        job = {}
        while time.time() < deadline:
            job = json.loads(get(http + "/api/job")[1])
            if int(job.get("checkpoint", {}).get("committed_step", "0")) >= 20:
                break
            time.sleep(0.05)
        ck = job["checkpoint"]
        assert int(ck["committed_step"]) >= 20, job
        assert ck["committed_dir"] == str(ckpt)
        assert int(ck["saves"]) >= 4 and int(ck["persisted_files"]) >= 4
        metrics = get(http + "/metrics")[1]
        assert 'keel_ckpt_committed_step{job="ck"}' in metrics
        assert 'keel_ckpt_saves_total{job="ck"}' in metrics
        assert 'keel_ckpt_dropped_steps_total{job="ck"}' in metrics
        outs = [finish(a) for a in agents]
        for rc, _, err in outs:
            assert rc == 0, err
        out = "".join(o for _, o, _ in outs)
        # Rank 1 died at step 17; both nodes' workers restored step 15 from memory, as the
        # master decided from both agents' reports.
        assert "[rank 0]: resumed from step 15 (memory)" in out
        assert finish(master, timeout=30)[0] == 0
    finally:
        for p in (master, *agents):
            if p.poll() is None:
                p.kill()
    for rank in (0, 1):
        assert (ckpt / "step-30" / f"rank-{rank}.safetensors").exists()
    assert (ckpt / "step-30" / "COMMITTED").exists()
    assert (ckpt / "latest").read_text() == "30\n"
    clean, crashed = torch.load(tmp_path / "clean.pt"), torch.load(tmp_path / "crashed.pt")
    assert list(clean) == list(crashed)
    for k in clean:
        assert torch.equal(clean[k], crashed[k]), k


def test_agent_killed_while_persisting_leaves_the_previous_step_committed(keel_bin, tag,
                                                                        tmp_path):
    ckpt = tmp_path / "ckpt"
    run = keel(keel_bin, "run", "--nproc-per-node", "1", CKPT_WORKER, "--ckpt", str(ckpt),
               "--mode", "kill-agent", "--mib", "768", "--tag", tag)
    try:
        wait_for(str(ckpt / "step-20" / "rank-0.safetensors.tmp"), timeout=120)
        run.kill()  # master and agent (one process): SIGKILL mid-write
        run.wait(timeout=10)
    finally:
        if run.poll() is None:
            run.kill()
    assert not (ckpt / "step-20" / "COMMITTED").exists()
    assert (ckpt / "step-10" / "COMMITTED").exists()
    assert (ckpt / "latest").read_text() == "10\n"
    # A new job loads step 10 from disk (the partial step 20 is ignored) with the same bytes,
    # and its agent removes the dead agent's shared memory.
    shm_before = {d for d in os.listdir("/dev/shm") if d.startswith("keel-")}
    assert shm_before, "the killed agent's slots should still be there"
    loader = tmp_path / "load.py"
    loader.write_text(
        "import torch, keel.ckpt\n"
        f"c = keel.ckpt.Checkpointer({str(ckpt)!r})\n"
        "step, state = c.load()\n"
        "assert torch.equal(state['w'], torch.arange(1000, dtype=torch.float32))\n"
        "print('loaded', step, c.loaded_from, state['step'])\n")
    rc, out, err = finish(keel(keel_bin, "run", "--nproc-per-node", "1", str(loader)))
    assert rc == 0, err
    assert "[rank 0]: loaded 10 disk 10" in out
    assert not shm_before & {d for d in os.listdir("/dev/shm") if d.startswith("keel-")}


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_too_small_shared_memory_gives_a_clear_error_not_sigbus(keel_bin, tag, tmp_path):
    shm = tmp_path / "shm"
    shm.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(shm)], check=True)
    try:
        rc, out, err = finish(keel(keel_bin, "run", "--nproc-per-node", "1", CKPT_WORKER,
                                   "--ckpt", str(tmp_path / "ckpt"), "--mode", "too-big",
                                   "--mib", "64", "--tag", tag,
                                   env=dict(os.environ, KEEL_SHM_ROOT=str(shm))))
    finally:
        subprocess.run(["umount", "-l", str(shm)], check=False)
    assert rc == 0, err  # the worker caught the error: no SIGBUS
    assert "[rank 0]: save failed:" in out
    assert "the shared-memory filesystem is full" in out and "Enlarge /dev/shm" in out


def test_keep_last_flag_sets_the_retention_of_every_worker(keel_bin, tag, tmp_path):
    ckpt = tmp_path / "ckpt"
    rc, out, err = finish(keel(keel_bin, "run", "--nproc-per-node", "2", "--keep-last", "1",
                               RESUME, "--ckpt", str(ckpt), "--out", str(tmp_path / "f.pt"),
                               "--tag", tag))
    assert rc == 0, err
    steps = sorted(d for d in os.listdir(ckpt) if d.startswith("step-"))
    assert steps == ["step-30"], steps
    rc, _, err = finish(keel(keel_bin, "run", "--keep-last", "-2", RESUME, "--ckpt", str(ckpt),
                             "--out", str(tmp_path / "f.pt")))
    assert rc == 2 and "--keep-last must be >= 0" in err


def test_a_cpp_program_checkpoints_and_resumes_from_memory(keel_bin, tag, tmp_path):
    prog = str(pathlib.Path(keel_bin).parent.parent.parent / "examples" /
               "keel_example_ckpt_train")
    runs = {}
    for name, crash in (("clean", []), ("crashed", ["--crash-at", "12"])):
        rc, out, err = finish(keel(keel_bin, "run", "--no-python", prog, "--ckpt",
                                   str(tmp_path / name), *crash))
        assert rc == 0, err
        runs[name] = out
    assert "[rank 0]: crashing at step 12" in runs["crashed"]
    assert "[rank 0]: resumed from step 10 (memory)" in runs["crashed"]
    assert "(1 restart(s))" not in runs["clean"]
    checksum = [re.search(r"done: checksum (\S+)", o).group(1) for o in runs.values()]
    assert checksum[0] == checksum[1]
    assert (tmp_path / "crashed" / "latest").read_text() == "30\n"

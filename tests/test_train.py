"""End-to-end: keel run / keel master / keel agent running real torch DDP jobs (gloo).

Every test starts real keel processes and real PyTorch workers, and checks afterwards that
no worker process is left behind.
"""

import glob
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKER = str(ROOT / "tests" / "workers" / "ddp_worker.py")
EXAMPLE = str(ROOT / "examples" / "train_gpt.py")


@pytest.fixture
def tag():
    """A unique word put on every worker's command line; no process may carry it at the end."""
    t = f"keeltest-{uuid.uuid4().hex[:12]}"
    yield t
    deadline = time.time() + 10
    while time.time() < deadline and stray(t):
        time.sleep(0.1)
    left = stray(t)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"orphan worker processes left behind: {left}"


def stray(t):
    out = subprocess.run(["pgrep", "-f", t], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def keel(keel_bin, *args, **kw):
    return subprocess.Popen([keel_bin, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(pattern, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = glob.glob(pattern)
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {pattern}")


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def start_master(keel_bin, *args, http=False):
    m = keel(keel_bin, "master", "--port", "0", "--token", "secret", *args,
             *(["--http-port", "0"] if http else []))
    line = m.stdout.readline()
    match = re.search(r"listening on port (\d+)", line)
    assert match, f"master did not start: {line!r} {m.stderr.read() if m.poll() else ''}"
    addr = f"127.0.0.1:{match.group(1)}"
    if not http:
        return m, addr
    http_port = re.search(r"http on port (\d+)", m.stdout.readline()).group(1)
    return m, addr, f"http://127.0.0.1:{http_port}"


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_one_node_two_workers_trains_the_example(keel_bin, tag, tmp_path):
    script = tmp_path / tag / "train_gpt.py"  # the tag in the path marks the workers' argv
    script.parent.mkdir()
    script.symlink_to(EXAMPLE)
    rc, out, err = finish(keel(keel_bin, "run", "--nproc-per-node", "2", str(script),
                               "--steps", "20", "--batch", "4"))
    assert rc == 0, err
    assert "[rank 0]: training on 2 worker(s)" in out
    assert "[rank 0]: training finished" in out
    assert "job succeeded: all 2 workers of round 1 exited 0 (0 restart(s))" in err


def test_sigkill_of_one_worker_restarts_all_and_completes(keel_bin, tag, tmp_path):
    proc = keel(keel_bin, "run", "--nproc-per-node", "2", WORKER, "--steps", "150",
                "--step-sleep", "0.02", "--pid-dir", str(tmp_path), "--tag", tag)
    victim = int(open(wait_for(str(tmp_path / "r1-c0-w2.pid"))[0]).read())
    peer = int(open(wait_for(str(tmp_path / "r0-c0-w2.pid"))[0]).read())
    os.kill(victim, signal.SIGKILL)
    rc, out, err = finish(proc)
    assert rc == 0, err
    assert "worker rank 1 killed by signal 9 (SIGKILL)" in err
    assert "(1 restart(s))" in err
    assert os.path.exists(tmp_path / "r0-c1-w2.pid") and os.path.exists(tmp_path / "r1-c1-w2.pid")
    assert "done rank 0 world 2 restart 1" in out and "done rank 1 world 2 restart 1" in out
    assert not alive(peer)  # the surviving rank of round 1 was stopped, not left running


def test_too_many_failures_fail_the_job_naming_rank_and_exit_code(keel_bin, tag):
    rc, out, err = finish(keel(keel_bin, "run", "--nproc-per-node", "2", "--max-restarts", "1",
                               WORKER, "--fail-rank", "1", "--fail-code", "3", "--tag", tag))
    assert rc == 1, err
    assert "more than --max-restarts 1" in err
    assert "rank 1 (local rank 1)" in err and "exited with code 3" in err
    assert "rank 1 failing with code 3" in err  # the worker's last stderr lines
    assert err.count("starting 2 worker(s)") == 2  # first attempt + one restart


def test_wrong_token_is_rejected_and_changes_nothing(keel_bin, tag, tmp_path):
    master, addr = start_master(keel_bin, "--nnodes", "1")
    try:
        rc, _, err = finish(keel(keel_bin, "agent", "--master", addr, "--token", "wrong",
                                 "--", sys.executable, WORKER, "--tag", tag), timeout=60)
        assert rc == 1
        assert "wrong job token" in err
        assert master.poll() is None  # the master keeps serving
        rc, out, err = finish(keel(keel_bin, "agent", "--master", addr, "--token", "secret",
                                   "--nproc-per-node", "2", "--", sys.executable, WORKER,
                                   "--pid-dir", str(tmp_path), "--tag", tag))
        assert rc == 0, err
        assert "done rank 1 world 2 restart 0" in out  # the rejected agent never counted
        assert finish(master, timeout=30)[0] == 0
    finally:
        if master.poll() is None:
            master.kill()


def test_sigkill_of_an_agent_shrinks_the_world_and_the_job_completes(keel_bin, tag, tmp_path):
    master, addr = start_master(keel_bin, "--nnodes", "1:2", "--rdzv-last-call", "1")
    agents = [keel(keel_bin, "agent", "--master", addr, "--token", "secret", "--",
                   sys.executable, WORKER, "--steps", "200", "--step-sleep", "0.02",
                   "--pid-dir", str(tmp_path), "--tag", tag) for _ in range(2)]
    try:
        wait_for(str(tmp_path / "r0-c0-w2.pid"))
        wait_for(str(tmp_path / "r1-c0-w2.pid"))
        # Find which agent runs rank 1 and kill that agent outright.
        rank1 = int(open(tmp_path / "r1-c0-w2.pid").read())
        ppid = int(open(f"/proc/{rank1}/stat").read().rsplit(")", 1)[1].split()[1])
        victim = next(a for a in agents if a.pid == ppid)
        survivor = next(a for a in agents if a.pid != ppid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        rc, out, err = finish(survivor)
        assert rc == 0, err
        assert "done rank 0 world 1 restart 0" in out  # smaller world; not a failure
        assert finish(master, timeout=30)[0] == 0
        deadline = time.time() + 5
        while alive(rank1) and time.time() < deadline:
            time.sleep(0.05)
        assert not alive(rank1)  # the killed agent's worker died with it
    finally:
        for p in [master, *agents]:
            if p.poll() is None:
                p.kill()


def test_a_second_agent_grows_the_world(keel_bin, tag, tmp_path):
    master, addr = start_master(keel_bin, "--nnodes", "1:2", "--rdzv-last-call", "0.5")
    cmd = ["--master", addr, "--token", "secret", "--", sys.executable, WORKER, "--steps",
           "150", "--step-sleep", "0.02", "--pid-dir", str(tmp_path), "--tag", tag]
    first = keel(keel_bin, "agent", *cmd)
    second = None
    try:
        wait_for(str(tmp_path / "r0-c0-w1.pid"))  # one node, world of one worker
        second = keel(keel_bin, "agent", *cmd)
        wait_for(str(tmp_path / "r1-c0-w2.pid"))  # the world grew to two nodes
        for p in (first, second):
            rc, out, err = finish(p)
            assert rc == 0, err
        assert finish(master, timeout=30)[0] == 0
    finally:
        for p in (master, first, second):
            if p is not None and p.poll() is None:
                p.kill()


def test_bad_flags_exit_2_naming_the_flag(keel_bin):
    cases = [
        (["run", "--nnodes", "3:1", WORKER], "--nnodes"),
        (["run", "--nproc-per-node", "0", WORKER], "--nproc-per-node"),
        (["run"], "no training script"),
        (["run", "--bogus", WORKER], "--bogus"),
        (["agent", WORKER], "--master"),
        (["master", "--port", "70000"], "--port"),
        (["master", "--nnodes", "2:4", "--node-unit", "3"], "--node-unit"),
    ]
    for args, expected in cases:
        r = subprocess.run([keel_bin, *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (args, r.stderr)
        assert expected in r.stderr, (args, r.stderr)


def test_status_http_metrics_and_reported_steps(keel_bin, tag, tmp_path):
    master, addr, http = start_master(keel_bin, "--nnodes", "1", "--job", "obs", http=True)
    agent = keel(keel_bin, "agent", "--master", addr, "--token", "secret", "--nproc-per-node",
                 "2", "--heartbeat-interval", "0.2", "--", sys.executable, WORKER, "--steps",
                 "400", "--step-sleep", "0.02", "--report-steps", "--pid-dir", str(tmp_path),
                 "--tag", tag)
    try:
        pid0 = int(open(wait_for(str(tmp_path / "r0-c0-w2.pid"))[0]).read())
        deadline = time.time() + 30
        job = {}
        while time.time() < deadline:
            job = json.loads(get(http + "/api/job")[1])
            pids = [w["pid"] for n in job["nodes"] for w in n["workers"]]
            if int(job["global_step"]) >= 20 and pid0 in pids:
                break
            time.sleep(0.1)
        assert int(job["global_step"]) >= 20, job
        assert job["snapshot"]["state"] == "JOB_STATE_RUNNING"
        assert job["nodes"][0]["state"] == "running" and len(job["nodes"][0]["workers"]) == 2
        assert "token" not in json.dumps(job) and "secret" not in json.dumps(job)

        assert get(http + "/healthz") == (200, "ok\n")
        code, metrics = get(http + "/metrics")
        assert code == 200
        assert 'keel_job_state{job="obs",state="running"} 1' in metrics
        assert 'keel_job_world_size{job="obs"} 2' in metrics
        assert re.search(r'keel_job_global_step\{job="obs"\} (\d+)', metrics)
        assert re.search(r'keel_worker_rss_bytes\{job="obs",node="[^"]+",rank="1"\} \d+', metrics)
        code, body = get(http + "/nope")
        assert code == 404 and "no such endpoint '/nope'" in json.loads(body)["error"]
        req = urllib.request.Request(http + "/api/job", data=b"x", method="POST")
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("POST accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 405

        r = subprocess.run([keel_bin, "status", "--master", addr, "--token", "secret"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert "job obs: running, round 1, 2 worker(s)" in r.stdout
        assert f"pid {pid0}" in r.stdout
        r = subprocess.run([keel_bin, "status", "--master", addr, "--token", "bad"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "PERMISSION_DENIED" in r.stderr

        rc, _, err = finish(agent)
        assert rc == 0, err
        assert finish(master, timeout=30)[0] == 0
    finally:
        for p in (master, agent):
            if p.poll() is None:
                p.kill()


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def two_hosts():
    """Two network namespaces joined by a veth pair: 10.254.77.1 and 10.254.77.2 (the test's
    own hosts; nothing outside them is addressed)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (ip netns)")
    suffix = f"{os.getpid() % 100000}"
    hosts = [f"keelA{suffix}", f"keelB{suffix}"]
    veths = [f"kva{suffix}", f"kvb{suffix}"]
    try:
        for ns in hosts:
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", veths[0], "type", "veth", "peer", "name", veths[1])
        for i, (ns, veth) in enumerate(zip(hosts, veths)):
            sh("ip", "link", "set", veth, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"10.254.77.{i + 1}/24", "dev", veth)
            sh("ip", "-n", ns, "link", "set", veth, "up")
        yield list(zip(hosts, veths, ["10.254.77.1", "10.254.77.2"]))
    finally:
        for ns in hosts:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_job_across_two_hosts_in_network_namespaces(keel_bin, tag, tmp_path, two_hosts):
    (ns_a, veth_a, ip_a), (ns_b, veth_b, ip_b) = two_hosts
    master = subprocess.Popen(["ip", "netns", "exec", ns_a, keel_bin, "master", "--port", "0",
                               "--token", "secret", "--nnodes", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    agents = []
    try:
        port = re.search(r"listening on port (\d+)", master.stdout.readline()).group(1)
        for ns, veth in ((ns_a, veth_a), (ns_b, veth_b)):
            # gloo binds to the interface named here rather than the hostname's address
            env = dict(os.environ, GLOO_SOCKET_IFNAME=veth)
            agents.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, keel_bin, "agent", "--master", f"{ip_a}:{port}",
                 "--token", "secret", "--", sys.executable, WORKER, "--steps", "20",
                 "--pid-dir", str(tmp_path), "--tag", tag],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        outputs = [finish(a) for a in agents]
        for rc, out, err in outputs:
            assert rc == 0, err
        joined = "".join(out for _, out, _ in outputs)
        assert "done rank 0 world 2 restart 0" in joined and "done rank 1 world 2" in joined
        # MASTER_ADDR (rank 0's store) was group rank 0's real address, never loopback.
        addrs = set(re.findall(r"master (\d+\.\d+\.\d+\.\d+):\d+\)",
                               outputs[0][2] + outputs[1][2]))
        assert len(addrs) == 1 and addrs <= {ip_a, ip_b}, addrs
        rc, _, err = finish(master, timeout=30)
        assert rc == 0, err
    finally:
        for p in [master, *agents]:
            if p.poll() is None:
                p.kill()


def test_agent_that_loses_the_master_stops_its_workers_and_exits_nonzero(keel_bin, tag,
                                                                        tmp_path):
    master, addr = start_master(keel_bin, "--nnodes", "1")
    agent = keel(keel_bin, "agent", "--master", addr, "--token", "secret", "--master-timeout",
                 "2", "--heartbeat-interval", "0.2", "--", sys.executable, WORKER, "--steps",
                 "100000", "--step-sleep", "0.02", "--pid-dir", str(tmp_path), "--tag", tag)
    try:
        worker = int(open(wait_for(str(tmp_path / "r0-c0-w1.pid"))[0]).read())
        master.kill()
        master.wait()
        lost = time.time()
        rc, _, err = finish(agent, timeout=60)
        assert rc == 1, err
        assert time.time() - lost < 20
        assert "lost the master" in err
        assert not alive(worker)
    finally:
        for p in (master, agent):
            if p.poll() is None:
                p.kill()


def test_log_dir_keeps_each_ranks_output(keel_bin, tag, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    rc, out, err = finish(keel(keel_bin, "run", "--nproc-per-node", "2", "--log-dir", str(logs),
                               WORKER, "--steps", "3", "--tag", tag))
    assert rc == 0, err
    assert "[rank 1]: done rank 1 world 2 restart 0" in out  # still streamed with a prefix
    for rank in (0, 1):
        text = (logs / f"rank-{rank}.log").read_text()
        assert text.startswith(f"==== round 1, rank {rank} ====\n")
        assert f"done rank {rank} world 2 restart 0" in text
    r = subprocess.run([keel_bin, "run", "--log-dir", "/dev/null/x", WORKER],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot open worker log '/dev/null/x/rank-0.log'" in r.stderr


def tls_flags(tmp_path):
    """A test CA and a node certificate for localhost; the --tls-* flags that use them."""
    certs = tmp_path / "certs"
    certs.mkdir()
    script = (
        "set -e; openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1"
        " -subj /CN=keel-test-ca; openssl req -newkey rsa:2048 -nodes -keyout node.key"
        " -out node.csr -subj /CN=localhost; printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n'"
        " > san.ext; openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
        " -out node.pem -days 1 -extfile san.ext")
    subprocess.run(["sh", "-c", script], cwd=certs, check=True, capture_output=True, timeout=60)
    return ["--tls-cert", str(certs / "node.pem"), "--tls-key", str(certs / "node.key"),
            "--tls-ca", str(certs / "ca.pem")]


def test_tls_master_and_agent(keel_bin, tag, tmp_path):
    tls = tls_flags(tmp_path)
    master, addr = start_master(keel_bin, "--nnodes", "1", *tls)  # mutual TLS
    try:
        plain = keel(keel_bin, "agent", "--master", addr, "--token", "secret",
                     "--master-timeout", "2", "--", sys.executable, WORKER, "--tag", tag)
        rc, _, err = finish(plain, timeout=60)
        assert rc == 1  # a plaintext agent cannot reach a TLS master
        rc, out, err = finish(keel(keel_bin, "agent", "--master", addr, "--token", "secret",
                                   *tls, "--", sys.executable, WORKER, "--steps", "3",
                                   "--tag", tag))
        assert rc == 0, err
        assert "done rank 0 world 1 restart 0" in out
        assert finish(master, timeout=30)[0] == 0
    finally:
        if master.poll() is None:
            master.kill()


def test_ctrl_c_stops_workers_gracefully_and_exits_130(keel_bin, tag, tmp_path):
    proc = keel(keel_bin, "run", "--nproc-per-node", "2", WORKER, "--steps", "100000",
                "--step-sleep", "0.02", "--pid-dir", str(tmp_path), "--tag", tag)
    pids = [int(open(wait_for(str(tmp_path / f"r{r}-c0-w2.pid"))[0]).read()) for r in (0, 1)]
    proc.send_signal(signal.SIGINT)
    rc, _, err = finish(proc, timeout=60)
    assert rc == 130, err
    assert "SIGINT received; stopping workers" in err
    assert not any(alive(p) for p in pids)


def test_sigterm_to_the_master_fails_the_job_and_stops_every_agent(keel_bin, tag, tmp_path):
    master, addr = start_master(keel_bin, "--nnodes", "1")
    agent = keel(keel_bin, "agent", "--master", addr, "--token", "secret", "--", sys.executable,
                 WORKER, "--steps", "100000", "--step-sleep", "0.02", "--pid-dir",
                 str(tmp_path), "--tag", tag)
    try:
        worker = int(open(wait_for(str(tmp_path / "r0-c0-w1.pid"))[0]).read())
        master.send_signal(signal.SIGTERM)
        rc, _, err = finish(agent, timeout=60)
        assert rc == 1, err
        assert "job failed: the master received SIGTERM" in err
        assert not alive(worker)
        rc, _, err = finish(master, timeout=30)
        assert rc == 1 and "the master received SIGTERM" in err
    finally:
        for p in (master, agent):
            if p.poll() is None:
                p.kill()


RESUME = str(ROOT / "tests" / "workers" / "resume_worker.py")


def test_resume_from_checkpoint_ends_bitwise_identical_to_an_unbroken_run(keel_bin, tag,
                                                                          tmp_path):
    import torch

    finals = []
    for name, crash in (("clean", -1), ("crashed", 17)):
        rc, out, err = finish(keel(keel_bin, "run", "--nproc-per-node", "2", RESUME, "--ckpt",
                                   str(tmp_path / name / "ckpt"), "--out",
                                   str(tmp_path / f"{name}.pt"), "--crash-at-step", str(crash),
                                   "--tag", tag))
        assert rc == 0, err
        finals.append(torch.load(tmp_path / f"{name}.pt"))
        if crash > 0:
            assert "(1 restart(s))" in err
            assert "[rank 0]: resumed from step 15 (memory)" in out  # saved every 5 steps
    clean, crashed = finals
    assert list(clean) == list(crashed)
    for k in clean:
        assert torch.equal(clean[k], crashed[k]), k


def test_memory_only_saves_restore_after_a_crash_and_are_persisted_at_the_breakpoint(
        keel_bin, tag, tmp_path):
    import torch

    ckpt = tmp_path / "ckpt"
    rc, out, err = finish(keel(keel_bin, "run", "--nproc-per-node", "2", RESUME, "--ckpt",
                               str(ckpt), "--out", str(tmp_path / "final.pt"), "--save-every",
                               "1", "--persist-every", "1000", "--crash-at-step", "17",
                               "--tag", tag))
    assert rc == 0, err
    # Step 16 was only ever in memory; the restarted workers found it there ...
    assert "[rank 0]: resumed from step 16 (memory)" in out
    # ... and the agent persisted it when it stopped the workers (breakpoint save), and the
    # newest step when the job ended.
    assert (ckpt / "step-16" / "COMMITTED").exists()
    assert (ckpt / "latest").read_text() == "30\n"
    for rank in (0, 1):
        raw = (ckpt / "step-30" / f"rank-{rank}.safetensors").read_bytes()
        assert b'"keel.step":"30"' in raw
    assert torch.load(tmp_path / "final.pt")  # the run finished
    assert not [d for d in os.listdir("/dev/shm") if tag in d]
    leftovers = subprocess.run(["sh", "-c", "ls -d /dev/shm/keel-* 2>/dev/null"],
                               capture_output=True, text=True).stdout.split()
    assert not leftovers, leftovers  # the agent removed its checkpoint memory

"""A stand-in for the keel agent's checkpoint-slot protocol (docs/formats/checkpoint.md), for
tests and GPU checks on machines where keel's agent cannot run (e.g. a GPU box without keel's
gRPC dependencies). It serves one local rank over an abstract datagram socket with the
agent's slot rules (never the newest complete slot) and never persists. The real agent is
keel/agent/ckpt_host.cc, tested end to end in tests/test_ckpt_e2e.py."""

import os
import socket
import tempfile
import threading
import uuid

import pytest


class StandInAgent:
    def __init__(self):
        self.shm_dir = tempfile.mkdtemp(prefix="keel-standin-", dir="/dev/shm")
        self.name = f"keel-standin-{uuid.uuid4().hex[:12]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.settimeout(0.1)
        self.steps = [None, None]  # complete step per slot
        self.requests = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def env(self):
        return {"KEEL_SHM_DIR": self.shm_dir, "KEEL_AGENT_SOCKET": "@" + self.name,
                "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}

    def _reply(self, words):
        if words[0] == "ckpt-begin":
            a, b = self.steps
            slot = 0 if a is None or (b is not None and a < b) else 1
            self.steps[slot] = None
            return f"ok {slot}"
        if words[0] == "ckpt-saved":
            self.steps[int(words[2])] = int(words[3])
            return "ok"
        if words[0] == "ckpt-restore":
            held = [(s, i) for i, s in enumerate(self.steps) if s is not None]
            if not held:
                return "ok -1 -1"
            step, slot = max(held)
            return f"ok {slot} {step}"
        return "error unknown request"

    def _serve(self):
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            text = data.decode()
            self.requests.append(text)
            self.sock.sendto(self._reply(text.split()).encode(), addr)

    def close(self):
        self._stop = True
        self._thread.join()
        self.sock.close()
        for f in os.listdir(self.shm_dir):
            os.remove(os.path.join(self.shm_dir, f))
        os.rmdir(self.shm_dir)


@pytest.fixture
def standin_agent(monkeypatch):
    """A StandInAgent whose environment the process's keel.ckpt Checkpointers will use."""
    a = StandInAgent()
    for k, v in a.env().items():
        monkeypatch.setenv(k, v)
    yield a
    a.close()

"""keel.report_step outside keel is a no-op; bad steps are rejected; inside, it reaches the
agent's socket (checked end to end in tests/test_train.py)."""

import os
import socket

import pytest

import keel


def test_report_step_outside_keel_does_nothing(monkeypatch):
    import keel._progress as progress
    monkeypatch.delenv("KEEL_AGENT_SOCKET", raising=False)
    monkeypatch.setattr(progress, "_sock", None)
    assert keel.report_step(5) is None
    assert progress._sock is None  # no socket was even created


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None, True])
def test_report_step_rejects_non_steps(bad):
    with pytest.raises(ValueError, match="non-negative int"):
        keel.report_step(bad)


def test_report_step_sends_rank_and_step_to_the_agent_socket(monkeypatch):
    name = f"keel-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    try:
        monkeypatch.setenv("KEEL_AGENT_SOCKET", "@" + name)
        monkeypatch.setenv("RANK", "3")
        keel.report_step(42)
        server.settimeout(5)
        assert server.recv(64) == b"step 3 42"
    finally:
        server.close()


def test_report_step_survives_a_missing_agent(monkeypatch):
    monkeypatch.setenv("KEEL_AGENT_SOCKET", "@keel-no-such-agent-socket")
    keel.report_step(1)  # best effort: no exception

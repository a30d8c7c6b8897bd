"""keel.report_step: tell the job master how far training got.

Inside a `keel run` / `keel agent` worker, the step goes to the local agent over a Unix
datagram socket (KEEL_AGENT_SOCKET; never blocks, costs one syscall), and the agent forwards
the highest step to the master with its heartbeat: `keel status`, /metrics and /api/job show
it. Outside keel it does nothing, so scripts run unchanged under plain python or torchrun.
"""

import os
import socket

_sock = None


def report_step(step):
    """Reports that this worker finished training step `step` (a non-negative int)."""
    global _sock
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"report_step: step must be a non-negative int, got {step!r}")
    address = os.environ.get("KEEL_AGENT_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract socket namespace
    if _sock is None:
        _sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        _sock.setblocking(False)
    try:
        _sock.sendto(f"step {os.environ.get('RANK', '0')} {step}".encode(), address)
    except OSError:
        pass  # the agent is gone or busy: progress reports are best effort

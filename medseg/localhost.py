"""Local child services (the headless browser of the review pages; in the tests, Orthanc and a
`medseg listen` node): a free loopback port to start one on, and stopping one for good."""

from __future__ import annotations

import socket
import subprocess


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Terminate ``process``; kill it if it has not ended within ``timeout_s``, and reap it."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

"""Run the real operator (`python -m modelpilot.operator`) as a process against the test control plane."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import free_port, running, wait_for_http


@contextmanager
def operator_process(kubeconfig: Path, namespace: str, log: Path, **settings: str) -> Iterator[subprocess.Popen[bytes]]:
    """The operator watching `namespace`, with fast polls; extra MODELPILOT_* settings as keyword arguments."""
    health_port = free_port()
    env = {
        "KUBECONFIG": str(kubeconfig),
        "MODELPILOT_NAMESPACES": namespace,
        "MODELPILOT_HEALTH_PORT": str(health_port),
        "MODELPILOT_METRICS_PORT": "0",
        "MODELPILOT_RETRY_BACKOFF_SECONDS": "1",
        "MODELPILOT_RETRY_BACKOFF_MAX_SECONDS": "2",
        "MODELPILOT_LOG_FORMAT": "text",
        **{f"MODELPILOT_{key.upper()}": value for key, value in settings.items()},
    }
    args = [sys.executable, "-m", "modelpilot.operator"]
    with running(args, log=log, env=env, ready_url=f"http://127.0.0.1:{health_port}/healthz", timeout=60) as process:
        yield process


def kill_hard(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the operator: no cleanup handlers, as in a node failure or an OOM kill."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


__all__ = ["kill_hard", "operator_process", "wait_for_http"]

"""`modelpilot-serve` closes what a production server closes: raw sockets on loopback against the real process.

Idle connections, half-sent heads and bodies, oversized heads and a full house each get an answer (or a
close) within the configured limits, and /metrics answers on its own port only.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api.inference.models import LoggedModels
from tests.support.mlflow_server import MlflowServer
from tests.support.processes import free_port, running

HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
KEEP_ALIVE = 1.0
MAX_HEADER_BYTES = 8192
MAX_CONCURRENCY = 8


@dataclass(frozen=True)
class Served:
    """Where the server under test listens."""

    port: int
    metrics_port: int

    @property
    def url(self) -> str:
        """Base URL of the prediction port."""
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def served(mlflow: MlflowServer, logged: LoggedModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One `modelpilot-serve` process with short limits."""
    port, metrics_port = free_port(), free_port()
    env = {
        "MLFLOW_TRACKING_URI": mlflow.url,
        "MODELPILOT_MODEL_URI": f"models:/{logged.moe_pt2}/1",
        "MODELPILOT_HOST": "127.0.0.1",
        "MODELPILOT_PORT": str(port),
        "MODELPILOT_METRICS_PORT": str(metrics_port),
        "MODELPILOT_GRPC_PORT": str(free_port()),
        "MODELPILOT_HEADER_TIMEOUT_SECONDS": str(HEAD_TIMEOUT),
        "MODELPILOT_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "MODELPILOT_KEEP_ALIVE_SECONDS": str(KEEP_ALIVE),
        "MODELPILOT_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        "MODELPILOT_MAX_CONCURRENCY": str(MAX_CONCURRENCY),
        "MODELPILOT_ACCESS_LOG": "false",
    }
    serve = str(Path(sys.executable).parent / "modelpilot-serve")
    log = tmp_path_factory.mktemp("limits") / "serve.log"
    with running([serve], log=log, env=env, ready_url=f"http://127.0.0.1:{port}/readyz", timeout=120):
        yield Served(port, metrics_port)
    assert "Traceback" not in log.read_text()


def _connect(served: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    sock.settimeout(10)
    return sock


def _read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    start = time.monotonic()
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        received += data
    return received, time.monotonic() - start


def test_a_connection_that_never_sends_is_closed_after_the_head_timeout(served: Served) -> None:
    with _connect(served) as sock:
        received, waited = _read_until_closed(sock)
    assert received == b""
    assert waited < HEAD_TIMEOUT + 2


def test_a_half_sent_head_gets_408(served: Served) -> None:
    with _connect(served) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        received, waited = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert waited < HEAD_TIMEOUT + 2


def test_a_half_sent_body_gets_408(served: Served) -> None:
    with _connect(served) as sock:
        sock.sendall(b'POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"instances": ')
        received, waited = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert waited < BODY_TIMEOUT + 2


def test_an_idle_keep_alive_connection_is_closed(served: Served) -> None:
    with _connect(served) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received, waited = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert waited < KEEP_ALIVE + 2


def test_a_head_over_the_limit_gets_431(served: Served) -> None:
    with _connect(served) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2 * MAX_HEADER_BYTES + b"\r\n\r\n")
        received, _ = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 431 ")


def test_an_endless_header_is_cut_off_early(served: Served) -> None:
    """A 64 MB header is refused after a few hundred kilobytes, not buffered whole."""
    sent = 0
    with _connect(served) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert sent < 8 * 1024 * 1024
    assert httpx.get(f"{served.url}/healthz").status_code == 200


def test_requests_beyond_the_concurrency_limit_get_503(served: Served) -> None:
    idle = [_connect(served) for _ in range(MAX_CONCURRENCY)]
    try:
        with _connect(served) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            received, _ = _read_until_closed(sock)
        assert received.startswith(b"HTTP/1.1 503 ")
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 5
    while httpx.get(f"{served.url}/healthz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"{served.url}/healthz").status_code == 200


def test_metrics_answer_on_their_own_port_only(served: Served) -> None:
    scrape = httpx.get(f"http://127.0.0.1:{served.metrics_port}/metrics")
    assert scrape.status_code == 200
    assert "modelpilot_model_ready" in scrape.text
    assert httpx.get(f"{served.url}/metrics").status_code == 404
    assert httpx.get(f"http://127.0.0.1:{served.metrics_port}/healthz").status_code == 404

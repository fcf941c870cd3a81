"""Schema-driven fuzzing of a running `modelpilot-serve` from the OpenAPI description it serves.

schemathesis reads `/openapi.json` (the prediction routes answered at the ASGI edge included) and
sends bodies that fit it and bodies that break it, to every operation, against a real server on
loopback. Throughout: no answer is a 5xx, /healthz keeps answering within a second, and the server's
memory stays bounded. Examples per operation are few so the run stays well under a minute.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode

from tests.api.inference.models import LoggedModels
from tests.support.mlflow_server import MlflowServer
from tests.support.processes import free_port, running

EXAMPLES_PER_OPERATION = 6
REPO_ROOT = Path(__file__).resolve().parents[3]
RSS_GROWTH_LIMIT_MIB = 200


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class HealthWatch:
    """Polls /healthz every 100 ms in a thread; records every answer slower than a second or not 200."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures: list[str] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _poll(self) -> None:
        with httpx.Client(timeout=1.0) as client:
            while not self._stop.wait(0.1):
                self.polls += 1
                try:
                    status = client.get(f"{self.url}/healthz").status_code
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                    continue
                if status != 200:
                    self.failures.append(f"HTTP {status}")


@pytest.fixture(scope="module", params=["moe_pt2", "rules_pyfunc"])
def fuzzed_server(
    request: pytest.FixtureRequest, mlflow: MlflowServer, logged: LoggedModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int, Path]]:
    """A real server for a tensor model and one for a mixed-type pyfunc model: (url, pid, log)."""
    port = free_port()
    env = {
        "MLFLOW_TRACKING_URI": mlflow.url,
        "MODELPILOT_MODEL_URI": f"models:/{getattr(logged, request.param)}/1",
        "MODELPILOT_HOST": "127.0.0.1",
        "MODELPILOT_PORT": str(port),
        "MODELPILOT_METRICS_PORT": str(free_port()),
        "MODELPILOT_GRPC_PORT": str(free_port()),
        "MODELPILOT_ACCESS_LOG": "false",
        # The pyfunc test model's class lives in tests/; the server unpickles it from there.
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    serve = str(Path(sys.executable).parent / "modelpilot-serve")
    log = tmp_path_factory.mktemp(f"fuzz-{request.param}") / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with running([serve], log=log, env=env, ready_url=f"{url}/readyz", timeout=120) as process:
        yield url, process.pid, log


@pytest.mark.timeout(300)
def test_no_request_the_openapi_description_allows_or_breaks_gets_a_5xx(fuzzed_server: tuple[str, int, Path]) -> None:
    url, pid, log = fuzzed_server
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    paths = {operation.path for operation in operations}
    assert {"/invocations", "/v1/models/{name}/predict", "/v2/models/{name}/infer"} <= paths
    assert "/v1/models/{name}/predict_batch" in paths
    # Operations a client can put something into: a body or a path parameter (the bare probes take nothing).
    operations = [o for o in operations if o.body or o.path_parameters]
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    rss_before = _rss_mib(pid)
    with HealthWatch(url) as health, requests.Session() as session:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @settings(
                    max_examples=EXAMPLES_PER_OPERATION,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy(generation_mode=mode))
                def call(case: Case[Any]) -> None:
                    response = case.call(base_url=url, session=session, timeout=30)
                    statuses[response.status_code] += 1
                    if response.status_code >= 500:
                        server_errors.append(f"{case.method} {case.formatted_path}: {response.status_code}")

                with contextlib.suppress(Unsatisfiable):  # nothing to break in an operation without inputs
                    call()
        rss_after = _rss_mib(pid)
    assert not server_errors, server_errors[:10]
    assert statuses[200] > 0, statuses
    assert sum(n for code, n in statuses.items() if 400 <= code < 500) > 0, statuses
    assert health.polls > 0
    assert not health.failures, health.failures[:5]
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_MIB, (rss_before, rss_after)
    text = log.read_text()
    assert "Traceback" not in text
    assert '"level":"error"' not in text

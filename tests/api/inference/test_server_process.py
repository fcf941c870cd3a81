"""`modelpilot-serve` as the pod runs it: env settings, uvicorn, JSON logs, graceful shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import orjson

from tests.api.inference.models import LoggedModels, sample_rows
from tests.support.mlflow_server import MlflowServer
from tests.support.processes import free_port, running


def test_served_process_answers_then_finishes_in_flight_requests_on_sigterm(
    mlflow: MlflowServer, logged: LoggedModels, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "MLFLOW_TRACKING_URI": mlflow.url,
        "MODELPILOT_MODEL_URI": f"models:/{logged.moe_pt2}@champion",
        "MODELPILOT_TRACK": "canary",
        "MODELPILOT_HOST": "127.0.0.1",
        "MODELPILOT_PORT": str(port),
        "MODELPILOT_METRICS_PORT": str(free_port()),
        "MODELPILOT_GRPC_PORT": str(free_port()),
        "MODELPILOT_FAULT_LATENCY_MS": "1500",
    }
    serve = str(Path(sys.executable).parent / "modelpilot-serve")
    log = tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with running([serve], log=log, env=env, ready_url=f"{url}/readyz", timeout=120) as process:
        assert httpx.get(f"{url}/readyz").status_code == 200
        answers: list[httpx.Response] = []
        body = {"instances": sample_rows(2).tolist()}
        slow = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{url}/v1/models/{logged.moe_pt2}/predict", json=body, timeout=30)
            )
        )
        slow.start()
        threading.Event().wait(0.5)  # the request is now sleeping inside the server
        os.killpg(process.pid, signal.SIGTERM)
        slow.join(timeout=30)
        # uvicorn re-raises the signal it handled once shutdown is complete.
        assert process.wait(timeout=30) in {0, -signal.SIGTERM}
    assert answers
    assert answers[0].status_code == 200
    assert (answers[0].json()["track"], answers[0].json()["version"]) == ("canary", "1")  # alias resolved
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "modelpilot.access"]
    assert any(line["route"] == "/v1/models/{name}/predict" and line["status"] == 200 for line in access)
    assert all(line["request_id"] for line in access)
    assert any("shutting down" in line["message"] for line in lines)


def test_served_process_has_telemetry_off_by_default() -> None:
    code = (
        "import os, modelpilot.inference; "
        "print(os.environ.get('MLFLOW_DISABLE_TELEMETRY'), os.environ.get('DO_NOT_TRACK'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"}}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["true", "true"]

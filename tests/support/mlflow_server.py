"""A real `mlflow server` on loopback: sqlite backend store, proxied local artifact store."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port, running

MLFLOW_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    # The server's background job runner (several huey worker processes) is not used here and slows start-up.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    # Webhook subscriptions are cached by the server; tests create them and expect deliveries at once.
    "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    # Webhooks to the operator's receiver on loopback.
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
}


@dataclass(frozen=True)
class MlflowServer:
    """Where a running MLflow tracking server listens and keeps its files."""

    url: str
    port: int
    root: Path


@contextmanager
def mlflow_server(root: Path, port: int | None = None) -> Iterator[MlflowServer]:
    """Start `mlflow server` with its state under `root`; stop it on exit."""
    port = port or free_port()
    root.mkdir(parents=True, exist_ok=True)
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    args = [
        mlflow_bin,
        "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running(args, log=root / "mlflow.log", env=MLFLOW_ENV, ready_url=f"{url}/health", timeout=180):
        yield MlflowServer(url=url, port=port, root=root)

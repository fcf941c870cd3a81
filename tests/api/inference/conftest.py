"""Fixtures: the test models logged once per session, and in-process servers for each of them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import pytest
from starlette.testclient import TestClient

from modelpilot.inference.app import create_app
from modelpilot.inference.http import ServingEdge
from modelpilot.inference.model import ServedModel
from modelpilot.inference.settings import Settings
from tests.api.inference.models import LoggedModels, log_all
from tests.support.mlflow_server import MlflowServer

# Pickle-format test models load only while this is true (MLflow 3.17 defaults to true; set, not assumed).
os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"


@pytest.fixture(scope="session")
def logged(mlflow: MlflowServer) -> LoggedModels:
    """The four test models, registered as version 1 each."""
    return log_all(mlflow.url)


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    """Poll /readyz until 200; fail with its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            return
        if response.json().get("status") == "failed":
            raise AssertionError(f"model failed to load: {response.json()}")
        time.sleep(0.05)
    raise AssertionError(f"not ready after {timeout}s: {client.get('/readyz').json()}")


def settings_for(mlflow: MlflowServer, name: str, **overrides: Any) -> Settings:
    """Settings that serve `models:/<name>/1` from the test tracking server."""
    values: dict[str, Any] = {"model_uri": f"models:/{name}/1", "tracking_uri": mlflow.url, "access_log": False}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def served(mlflow: MlflowServer, logged: LoggedModels) -> Iterator[dict[str, TestClient]]:
    """One running in-process server per test model, keyed by registry name."""
    clients: dict[str, TestClient] = {}
    try:
        for name in (logged.moe_pt2, logged.moe_pickle, logged.moe_columns, logged.rules_pyfunc):
            client = TestClient(create_app(settings_for(mlflow, name)), raise_server_exceptions=False)
            client.__enter__()
            clients[name] = client
        for client in clients.values():
            wait_ready(client)
        yield clients
    finally:
        for client in clients.values():
            client.__exit__(None, None, None)


@pytest.fixture
def app_with(served: dict[str, TestClient], logged: LoggedModels) -> Iterator[Callable[..., TestClient]]:
    """A fresh app around the already loaded pt2 model, with other settings (auth, limits, faults)."""
    opened: list[TestClient] = []
    app: ServingEdge = served[logged.moe_pt2].app  # type: ignore[assignment]
    model: ServedModel = app.state.plane.model

    def build(access_stream: BinaryIO | None = None, **overrides: Any) -> TestClient:
        settings = model.settings.model_copy(update=overrides)
        app = create_app(settings, model=model, access_stream=access_stream)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield build
    for client in opened:
        client.__exit__(None, None, None)

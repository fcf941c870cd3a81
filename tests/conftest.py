"""Shared fixtures; each test folder (unit, api, cluster) sets its marker here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.support.cluster import Cluster
from tests.support.mlflow_server import MLFLOW_ENV, MlflowServer, mlflow_server
from tests.support.postgres import PostgresServer, postgres_server

for _name, _value in MLFLOW_ENV.items():
    os.environ.setdefault(_name, _value)

# No per-example deadline: on a shared 2-core machine a wall-clock limit of 200 ms measures the machine's load,
# not the code (the benchmarks measure speed). Properties still fail on any wrong answer.
settings.register_profile("modelpilot", deadline=None)
settings.load_profile("modelpilot")

_MARKERS = {"unit", "api", "cluster", "e2e"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test after the folder it lives in: tests/unit, tests/api, tests/cluster, tests/e2e."""
    for item in items:
        parts = set(Path(str(item.path)).parts)
        for marker in _MARKERS & parts:
            item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server on loopback, shared by the session."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL on loopback, shared by the session; `stop()`/`start()` take it away and back."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def modelpilot_crd(cluster: Cluster) -> dict[str, Any]:
    """The ModelDeployment CRD, generated from the spec models, installed and Established (cluster tests)."""
    from tests.support.cluster import install_this_crd

    return install_this_crd(cluster.api_client)

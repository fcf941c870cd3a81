"""Shared fixtures; each test folder (unit, api, cluster) sets its marker here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mlflow_server import MLFLOW_ENV, MlflowServer, mlflow_server

for _name, _value in MLFLOW_ENV.items():
    os.environ.setdefault(_name, _value)

_MARKERS = {"unit", "api", "cluster"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test after the folder it lives in: tests/unit, tests/api, tests/cluster."""
    for item in items:
        parts = set(Path(str(item.path)).parts)
        for marker in _MARKERS & parts:
            item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server on loopback, shared by the session."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server

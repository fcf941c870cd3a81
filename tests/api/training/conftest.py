"""Fixtures that run the training entrypoint as a process against the session's MLflow server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.training.runner import TrainRunner
from tests.support.mlflow_server import MlflowServer


@pytest.fixture(scope="session")
def bytecode_cache() -> Path:
    """A bytecode cache kept between sessions, so a process does not recompile torch and MLflow from source
    when the environment turns bytecode writing off (it is separate from the environment's own files)."""
    cache = Path.home() / ".cache" / "modelpilot" / "pycache"
    cache.mkdir(parents=True, exist_ok=True)
    return cache


@pytest.fixture
def train(mlflow: MlflowServer, bytecode_cache: Path, tmp_path: Path) -> TrainRunner:
    """Run modelpilot-train with args and extra env against the session's MLflow server."""
    return TrainRunner(mlflow.url, bytecode_cache, tmp_path)

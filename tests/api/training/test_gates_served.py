"""A model trained by modelpilot-train is a pt2 export, and the server still answers its gating weights: from the
gates program the training logs inside the model, equal to the eager module's gates."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from modelpilot.inference.app import create_app
from modelpilot.inference.artifacts_pt2 import unvouched_record
from modelpilot.inference.settings import Settings
from modelpilot.training.data import FEATURES
from tests.api.inference.conftest import wait_ready
from tests.support.mlflow_server import MlflowServer
from tests.support.trained_model import (
    TrainedModel,
    eager_module,
    model_dir,
    sample_flows,
    torch_gates,
    train_small_model,
)

ROWS = sample_flows(7)


@pytest.fixture(scope="module")
def trained(mlflow: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return train_small_model(mlflow.url, "ids-gates", tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="module")
def server(mlflow: MlflowServer, trained: TrainedModel) -> Iterator[TestClient]:
    settings = Settings(
        model_uri=f"models:/{trained.name}/{trained.version}", tracking_uri=mlflow.url, access_log=False
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client, timeout=120)
        yield client


def test_the_logged_model_carries_its_gates_program(mlflow: MlflowServer, trained: TrainedModel) -> None:
    files = model_dir(trained, mlflow.url)
    assert (files / "extra_files" / "gates.pt2").is_file()
    assert (files / "data" / "model.pt2").is_file()  # the model itself is still the pt2 forward program
    # Served with MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false, the gates program loads after the same check as the
    # model's archive: every record of it is vouched for.
    assert unvouched_record(files / "extra_files" / "gates.pt2", torch) is None


def test_predict_returns_the_eager_modules_gates_for_a_trained_pt2_model(
    server: TestClient, mlflow: MlflowServer, trained: TrainedModel
) -> None:
    response = server.post(
        f"/v1/models/{trained.name}/predict", json={"instances": ROWS.tolist(), "return_gates": True}
    )
    assert response.status_code == 200, response.text
    gates = np.array(response.json()["gates"])
    assert gates.shape == (len(ROWS), trained.experts)
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(gates, torch_gates(eager_module(trained, mlflow.url), ROWS), rtol=1e-5, atol=1e-6)
    described = server.get(f"/v1/models/{trained.name}").json()
    assert described["gates"] is True, described


def test_open_inference_protocol_parameters_return_gates(server: TestClient, trained: TrainedModel) -> None:
    tensor = {"name": "input", "shape": list(ROWS.shape), "datatype": "FP32", "data": ROWS.ravel().tolist()}
    response = server.post(
        f"/v2/models/{trained.name}/infer", json={"inputs": [tensor], "parameters": {"return_gates": True}}
    )
    assert response.status_code == 200, response.text
    outputs = {output["name"]: output for output in response.json()["outputs"]}
    assert outputs["gates"]["shape"] == [len(ROWS), trained.experts]
    gates = np.array(outputs["gates"]["data"]).reshape(len(ROWS), trained.experts)
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, rtol=1e-5)
    metadata = server.get(f"/v2/models/{trained.name}").json()
    assert "gates" in [output["name"] for output in metadata["outputs"]], metadata


def test_records_by_feature_name_answer_with_gates(server: TestClient, trained: TrainedModel) -> None:
    records = [dict(zip(FEATURES, row, strict=True)) for row in ROWS[:3].tolist()]
    response = server.post(f"/v1/models/{trained.name}/predict", json={"records": records, "return_gates": True})
    assert response.status_code == 200, response.text
    assert len(response.json()["gates"]) == 3
    assert json.dumps(response.json()["classes"])  # the classes of the same rows come along

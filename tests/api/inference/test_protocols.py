"""Every endpoint and encoding against real models loaded from a real MLflow registry."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from tests.api.inference.models import FEATURE_COLUMNS, LoggedModels, make_moe, sample_rows

ROWS = sample_rows(5)
COLUMNS = [f"c{i}" for i in range(20)]


def expected_logits(rows: np.ndarray[Any, Any] = ROWS) -> np.ndarray[Any, Any]:
    with torch.no_grad():
        logits: np.ndarray[Any, Any] = make_moe()(torch.from_numpy(rows)).numpy()
    return logits


def expected_gates(rows: np.ndarray[Any, Any] = ROWS) -> np.ndarray[Any, Any]:
    with torch.no_grad():
        return make_moe().gates(torch.from_numpy(rows)).numpy()


def _csv(header: list[str], rows: np.ndarray[Any, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows.tolist())
    return buffer.getvalue()


MLFLOW_BODIES = {
    "dataframe_split": {"dataframe_split": {"columns": COLUMNS, "data": ROWS.tolist()}},
    "dataframe_records": {"dataframe_records": [dict(zip(COLUMNS, r, strict=True)) for r in ROWS.tolist()]},
    "instances": {"instances": ROWS.tolist()},
    "inputs_list": {"inputs": ROWS.tolist()},
    "inputs_columns": {"inputs": {c: ROWS[:, i].tolist() for i, c in enumerate(COLUMNS)}},
}


@pytest.mark.parametrize("model", ["moe_pt2", "moe_pickle"])
@pytest.mark.parametrize("form", sorted(MLFLOW_BODIES))
def test_invocations_json_forms_predict_like_the_torch_model(
    served: dict[str, TestClient], logged: LoggedModels, model: str, form: str
) -> None:
    response = served[getattr(logged, model)].post("/invocations", json=MLFLOW_BODIES[form])
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], expected_logits(), rtol=1e-5, atol=1e-6)


def test_invocations_csv_predicts_like_json(served: dict[str, TestClient], logged: LoggedModels) -> None:
    response = served[logged.moe_pt2].post(
        "/invocations", content=_csv(COLUMNS, ROWS), headers={"content-type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], expected_logits(), rtol=1e-5, atol=1e-6)


def test_column_signature_torch_model_answers_like_mlflow(served: dict[str, TestClient], logged: LoggedModels) -> None:
    shuffled = list(reversed(FEATURE_COLUMNS))
    body = {"dataframe_split": {"columns": shuffled, "data": ROWS[:, ::-1].tolist()}}
    response = served[logged.moe_columns].post("/invocations", json=body)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert set(predictions[0]) == {"0", "1"}  # MLflow answers DataFrame outputs as records
    got = np.array([[p["0"], p["1"]] for p in predictions])
    np.testing.assert_allclose(got, expected_logits(), rtol=1e-5, atol=1e-6)


def test_v1_predict_returns_classes_and_gates_from_the_pickled_moe(
    served: dict[str, TestClient], logged: LoggedModels
) -> None:
    name = logged.moe_pickle
    response = served[name].post(f"/v1/models/{name}/predict", json={"instances": ROWS.tolist(), "return_gates": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["version"], body["track"]) == (name, "1", "stable")
    assert body["classes"] == expected_logits().argmax(axis=1).tolist()
    np.testing.assert_allclose(body["gates"], expected_gates(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.sum(body["gates"], axis=1), 1.0, rtol=1e-5)


def test_pt2_model_without_a_gates_program_explains_that_gates_are_not_exported(
    served: dict[str, TestClient], logged: LoggedModels
) -> None:
    name = logged.moe_pt2  # logged by mlflow.pytorch.log_model alone: the forward program, no gates program
    response = served[name].post(f"/v1/models/{name}/predict", json={"instances": ROWS.tolist(), "return_gates": True})
    assert response.status_code == 422
    assert response.json()["field"] == "return_gates"
    assert "no gates program" in response.json()["message"], response.json()
    v2 = {"inputs": [{"name": "input", "shape": list(ROWS.shape), "datatype": "FP32", "data": ROWS.ravel().tolist()}]}
    response = served[name].post(f"/v2/models/{name}/infer", json={**v2, "parameters": {"return_gates": True}})
    assert response.status_code == 422, response.text
    assert "no gates program" in response.text


def test_v1_predict_records_and_columns_on_a_column_model(served: dict[str, TestClient], logged: LoggedModels) -> None:
    name = logged.moe_columns
    records = [dict(zip(FEATURE_COLUMNS, r, strict=True)) for r in ROWS.tolist()]
    columns = {c: ROWS[:, i].tolist() for i, c in enumerate(FEATURE_COLUMNS)}
    by_records = served[name].post(f"/v1/models/{name}/predict", json={"records": records}).json()
    by_columns = served[name].post(f"/v1/models/{name}/predict", json={"columns": columns}).json()
    np.testing.assert_allclose(by_records["predictions"], expected_logits(), rtol=1e-5, atol=1e-6)
    assert by_records["predictions"] == by_columns["predictions"]


def test_generic_pyfunc_model_with_mixed_column_types(served: dict[str, TestClient], logged: LoggedModels) -> None:
    client = served[logged.rules_pyfunc]
    records = [
        {"amount": 500.0, "items": 1, "country": "FR", "vip": False},
        {"amount": 500.0, "items": 1, "country": "DE", "vip": False},
        {"amount": 50.0, "items": 1, "country": "FR", "vip": False},
    ]
    response = client.post("/invocations", json={"dataframe_records": records})
    assert response.json() == {"predictions": ["review", "ok", "ok"]}
    csv_body = "country,amount,items,vip\nFR,500,1,false\nFR,500,1,true\n"
    response = client.post("/invocations", content=csv_body, headers={"content-type": "text/csv"})
    assert response.json() == {"predictions": ["review", "ok"]}
    name = logged.rules_pyfunc
    response = client.post(f"/v1/models/{name}/predict", json={"records": records[:1]})
    assert response.json()["classes"] == ["review"]


def test_predict_batch_streams_a_csv_of_predictions(served: dict[str, TestClient], logged: LoggedModels) -> None:
    name = logged.moe_pt2
    rows = sample_rows(50, seed=7)
    raw = served[name].post(
        f"/v1/models/{name}/predict_batch", content=_csv(COLUMNS, rows), headers={"content-type": "text/csv"}
    )
    upload = served[name].post(
        f"/v1/models/{name}/predict_batch", files={"file": ("rows.csv", _csv(COLUMNS, rows), "text/csv")}
    )
    assert raw.status_code == upload.status_code == 200, raw.text
    assert raw.headers["content-type"].startswith("text/csv")
    assert raw.text == upload.text
    table = list(csv.reader(io.StringIO(raw.text)))
    assert table[0] == ["output_0", "output_1", "class"]
    values = np.array([[float(a), float(b)] for a, b, _ in table[1:]])
    np.testing.assert_allclose(values, expected_logits(rows), rtol=1e-5, atol=1e-6)
    assert [int(c) for *_, c in table[1:]] == expected_logits(rows).argmax(axis=1).tolist()


def test_predict_batch_in_several_chunks_keeps_row_order(app_with: Any) -> None:
    client = app_with(batch_chunk_rows=7)
    rows = sample_rows(30, seed=3)
    response = client.post(
        "/v1/models/moe-pt2/predict_batch", content=_csv(COLUMNS, rows), headers={"content-type": "text/csv"}
    )
    table = list(csv.reader(io.StringIO(response.text)))[1:]
    np.testing.assert_allclose([[float(a), float(b)] for a, b, _ in table], expected_logits(rows), rtol=1e-5, atol=1e-6)


def test_open_inference_protocol_v2(served: dict[str, TestClient], logged: LoggedModels) -> None:
    client, name = served[logged.moe_pt2], logged.moe_pt2
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
    metadata = client.get(f"/v2/models/{name}").json()
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 20]}]
    body = {
        "id": "req-1",
        "inputs": [{"name": "input", "shape": [5, 20], "datatype": "FP32", "data": ROWS.ravel().tolist()}],
    }
    for path in (f"/v2/models/{name}/infer", f"/v2/models/{name}/versions/1/infer"):
        answer = client.post(path, json=body).json()
        assert answer["id"] == "req-1"
        assert answer["model_version"] == "1"
        output = answer["outputs"][0]
        assert (output["shape"], output["datatype"]) == ([5, 2], "FP32")
        np.testing.assert_allclose(np.reshape(output["data"], (5, 2)), expected_logits(), rtol=1e-5, atol=1e-6)
    assert client.post(f"/v2/models/{name}/versions/9/infer", json=body).status_code == 404


def test_v2_column_inputs_on_the_pyfunc_model(served: dict[str, TestClient], logged: LoggedModels) -> None:
    name = logged.rules_pyfunc
    body = {
        "inputs": [
            {"name": "amount", "shape": [2], "datatype": "FP64", "data": [500.0, 5.0]},
            {"name": "items", "shape": [2], "datatype": "INT64", "data": [1, 1]},
            {"name": "country", "shape": [2], "datatype": "BYTES", "data": ["FR", "FR"]},
            {"name": "vip", "shape": [2], "datatype": "BOOL", "data": [False, False]},
        ]
    }
    output = served[name].post(f"/v2/models/{name}/infer", json=body).json()["outputs"][0]
    assert (output["datatype"], output["data"]) == ("BYTES", ["review", "ok"])


def test_model_description_and_probes(served: dict[str, TestClient], logged: LoggedModels) -> None:
    client, name = served[logged.moe_columns], logged.moe_columns
    info = client.get(f"/v1/models/{name}").json()
    assert (info["version"], info["track"], info["state"]) == ("1", "stable", "ready")
    assert [c["name"] for c in info["signature"]["inputs"]["columns"]] == FEATURE_COLUMNS
    assert client.get("/v1/models/other").status_code == 404
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert client.get("/ping").status_code == 200

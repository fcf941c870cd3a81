"""Each class of bad input gets a 4xx naming the field, never a 500, and the server keeps serving."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.api.inference.models import FEATURE_COLUMNS, LoggedModels, sample_rows

ROW = sample_rows(1)[0].tolist()
RECORD = dict(zip(FEATURE_COLUMNS, ROW, strict=True))

VALID: dict[str, dict[str, Any]] = {
    "moe_columns": {"json": {"dataframe_records": [RECORD]}},
    "moe_pt2": {"json": {"instances": [ROW]}},
    "rules_pyfunc": {"json": {"dataframe_records": [{"amount": 1.0, "items": 1, "country": "FR", "vip": False}]}},
}

WITHOUT_F7 = {k: v for k, v in RECORD.items() if k != "f7"}
NULL_FIRST = {"columns": FEATURE_COLUMNS, "data": [[None, *ROW[1:]]]}
NAN_CSV = "a," * 19 + "t\n" + "nan," + ",".join(map(str, ROW[1:]))
CSV = {"content-type": "text/csv"}
RULES = {"amount": 1.0, "items": 2, "country": "FR", "vip": False}

CASES: list[tuple[str, str, dict[str, Any], int, str | None]] = [
    # (case, model, request kwargs, status, field)
    ("wrong type", "moe_columns", {"json": {"dataframe_records": [{**RECORD, "f3": "high"}]}}, 422, "f3"),
    ("missing column", "moe_columns", {"json": {"dataframe_records": [WITHOUT_F7]}}, 422, "f7"),
    ("extra column", "moe_columns", {"json": {"dataframe_records": [{**RECORD, "f99": 1.0}]}}, 422, "f99"),
    ("null for a number", "moe_columns", {"json": {"dataframe_split": NULL_FIRST}}, 422, "f0"),
    ("NaN in CSV", "moe_pt2", {"content": NAN_CSV, "headers": CSV}, 422, "input[0]"),
    ("short row", "moe_pt2", {"json": {"instances": [ROW[:19]]}}, 422, "instances[0]"),
    ("string for an int", "rules_pyfunc", {"json": {"dataframe_records": [{**RULES, "items": "two"}]}}, 422, "items"),
    (
        "number for a string",
        "rules_pyfunc",
        {"json": {"dataframe_records": [{**RULES, "country": 49}]}},
        422,
        "country",
    ),
    ("not JSON", "moe_pt2", {"content": b"{oops", "headers": {"content-type": "application/json"}}, 400, None),
    ("no known format", "moe_pt2", {"json": {"rows": [ROW]}}, 422, "body"),
    (
        "unsupported content type",
        "moe_pt2",
        {"content": b"<x/>", "headers": {"content-type": "application/xml"}},
        415,
        None,
    ),
]


@pytest.mark.parametrize(("case", "model", "kwargs", "status", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_invocations_are_client_errors(
    served: dict[str, TestClient],
    logged: LoggedModels,
    case: str,
    model: str,
    kwargs: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    client = served[getattr(logged, model)]
    response = client.post("/invocations", **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    if field is not None:
        assert body["field"] == field
        assert body["reason"]
    assert client.post("/invocations", **VALID[model]).status_code == 200


def test_oversized_body_is_413_and_the_server_keeps_serving(app_with: Any) -> None:
    client = app_with(max_body_bytes=4096)
    big = {"instances": sample_rows(200).tolist()}
    response = client.post("/invocations", json=big)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    chunked = client.post("/invocations", content=iter([b'{"instances": [', b"0," * 4000, b"0]}"]))
    assert chunked.status_code == 413
    assert client.post("/invocations", json={"instances": sample_rows(2).tolist()}).status_code == 200


def test_unknown_model_name_is_404_on_every_protocol(served: dict[str, TestClient], logged: LoggedModels) -> None:
    client = served[logged.moe_pt2]
    assert client.post("/v1/models/nope/predict", json={"instances": [ROW]}).status_code == 404
    assert client.post("/v2/models/nope/infer", json={"inputs": []}).status_code == 404
    assert (
        client.post(
            "/v1/models/nope/predict_batch", content=b"a\n1\n", headers={"content-type": "text/csv"}
        ).status_code
        == 404
    )


def test_bad_csv_upload_is_refused_before_streaming(served: dict[str, TestClient], logged: LoggedModels) -> None:
    name = logged.moe_columns
    header = ",".join([*FEATURE_COLUMNS[:-1], "oops"])
    response = served[name].post(
        f"/v1/models/{name}/predict_batch",
        content=header + "\n" + ",".join(["1"] * 20),
        headers={"content-type": "text/csv"},
    )
    assert response.status_code == 422
    assert response.json()["field"] == "oops"
    form = served[name].post(f"/v1/models/{name}/predict_batch", files={"other": ("x.csv", "a\n1\n", "text/csv")})
    assert (form.status_code, form.json()["field"]) == (422, "file")

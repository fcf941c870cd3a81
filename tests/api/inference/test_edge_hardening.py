"""Crafted requests at the serving edge: 4xx answers, per-client limits behind a Gateway, bulk uploads."""

from __future__ import annotations

import io
import time
from typing import Any

import anyio
import orjson
import pytest
from starlette.testclient import TestClient

from modelpilot.inference.auth import sign_hs256
from modelpilot.inference.errors import InvalidInputError
from modelpilot.inference.http import ServingEdge
from tests.api.inference.models import FEATURE_COLUMNS, LoggedModels, sample_rows

ROW = sample_rows(1)[0].tolist()
GATEWAY = ("10.0.0.5", 40000)


def _client(edge: Any, peer: tuple[str, int] = GATEWAY) -> TestClient:
    """A client on `peer` for an edge whose data plane runs already (started by `app_with`)."""
    return TestClient(edge, client=peer, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dataframe_split": {"columns": [["f0"], *FEATURE_COLUMNS[1:]], "data": [ROW]}}, "columns"),
        ({"dataframe_split": {"columns": [{"f": 0}, *FEATURE_COLUMNS[1:]], "data": [ROW]}}, "columns"),
        ({"dataframe_split": {"columns": [0, "0", *FEATURE_COLUMNS[2:]], "data": [ROW]}}, "0"),
        ({"dataframe_split": {"columns": [*FEATURE_COLUMNS, "f0"], "data": [[*ROW, 1.0]]}}, "f0"),
    ],
)
def test_crafted_column_names_are_422(
    served: dict[str, TestClient], logged: LoggedModels, body: Any, field: str
) -> None:
    response = served[logged.moe_columns].post("/invocations", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_crafted_v2_bodies_are_client_errors(served: dict[str, TestClient], logged: LoggedModels) -> None:
    client = served[logged.moe_pt2]
    url = f"/v2/models/{logged.moe_pt2}/infer"
    overflow = {"inputs": [{"name": "x", "shape": [2**32, 2**32], "datatype": "FP32", "data": []}]}
    assert client.post(url, json=overflow).status_code == 422
    deep = b'{"instances": ' + orjson.dumps(sample_rows(16).tolist()) + b', "params": ' + b'{"a":' * 900
    deep += b"1" + b"}" * 900 + b"}"
    assert client.post("/invocations", content=deep).status_code == 200


def test_failed_authentication_is_throttled_per_client_address(app_with: Any) -> None:
    settings = {"api_keys": "right", "auth_failure_rps": 0.01, "auth_failure_burst": 3}
    app = app_with(trusted_proxies="10.0.0.0/8", **settings).app
    client = _client(app)
    body = {"instances": [ROW]}
    first = {"x-forwarded-for": "203.0.113.7"}
    codes = [
        client.post("/invocations", json=body, headers={**first, "x-api-key": "wrong"}).status_code for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    spent = client.post("/invocations", json=body, headers={**first, "x-api-key": "right"})
    assert spent.status_code == 429  # the budget is spent: credentials are not even looked at
    assert int(spent.headers["retry-after"]) >= 1
    other = {"x-forwarded-for": "203.0.113.8", "x-api-key": "right"}
    assert client.post("/invocations", json=body, headers=other).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_rate_limits_key_on_the_forwarded_client_only_behind_a_trusted_proxy(app_with: Any) -> None:
    body = {"instances": [ROW]}
    trusting = _client(app_with(rate_limit_rps=0.01, rate_limit_burst=1, trusted_proxies="10.0.0.0/8").app)
    assert trusting.post("/invocations", json=body, headers={"x-forwarded-for": "203.0.113.1"}).status_code == 200
    assert trusting.post("/invocations", json=body, headers={"x-forwarded-for": "203.0.113.2"}).status_code == 200
    assert trusting.post("/invocations", json=body, headers={"x-forwarded-for": "203.0.113.1"}).status_code == 429
    direct = _client(app_with(rate_limit_rps=0.01, rate_limit_burst=1).app, peer=("192.0.2.9", 1))
    assert direct.post("/invocations", json=body, headers={"x-forwarded-for": "203.0.113.1"}).status_code == 200
    assert direct.post("/invocations", json=body, headers={"x-forwarded-for": "203.0.113.2"}).status_code == 429


def test_rate_limits_key_on_the_authenticated_client(app_with: Any) -> None:
    client = _client(app_with(api_keys="a,b", rate_limit_rps=0.01, rate_limit_burst=1).app)
    body = {"instances": [ROW]}
    assert client.post("/invocations", json=body, headers={"x-api-key": "a"}).status_code == 200
    assert client.post("/invocations", json=body, headers={"x-api-key": "b"}).status_code == 200
    assert client.post("/invocations", json=body, headers={"x-api-key": "a"}).status_code == 429


def test_jwts_without_exp_are_refused_unless_allowed(app_with: Any) -> None:
    secret = "s3cret"
    forever = sign_hs256({"sub": "batch-job"}, secret.encode())
    headers = {"authorization": f"Bearer {forever}"}
    strict = app_with(jwt_secret=secret)
    refused = strict.post("/invocations", json={"instances": [ROW]}, headers=headers)
    assert (refused.status_code, refused.json()["message"]) == (401, "token has no exp claim")
    lenient = app_with(jwt_secret=secret, jwt_allow_no_exp=True)
    assert lenient.post("/invocations", json={"instances": [ROW]}, headers=headers).status_code == 200
    dated = sign_hs256({"sub": "a", "exp": int(time.time()) + 60}, secret.encode())
    assert strict.post(
        "/invocations", json={"instances": [ROW]}, headers={"authorization": f"Bearer {dated}"}
    ).is_success


def _csv(rows: int, bad_row: int | None = None) -> bytes:
    lines = [",".join(FEATURE_COLUMNS)]
    values = ",".join(f"{v:.4f}" for v in ROW)
    lines += [values] * rows
    if bad_row is not None:
        lines[bad_row + 1] = values.replace(values.split(",")[3], "oops", 1)
    return ("\n".join(lines) + "\n").encode()


def test_a_large_upload_is_answered_row_for_row(app_with: Any, logged: LoggedModels) -> None:
    client = app_with(batch_chunk_rows=1000)
    rows = 30_000  # several parse pieces and forward passes
    response = client.post(
        f"/v1/models/{logged.moe_pt2}/predict_batch", content=_csv(rows), headers={"content-type": "text/csv"}
    )
    assert response.status_code == 200
    lines = response.text.splitlines()
    assert lines[0] == "output_0,output_1,class"
    assert len(lines) == rows + 1
    multipart = client.post(
        f"/v1/models/{logged.moe_pt2}/predict_batch", files={"file": ("x.csv", io.BytesIO(_csv(5)), "text/csv")}
    )
    assert len(multipart.text.splitlines()) == 6


def test_a_bad_row_late_in_an_upload_is_a_422_naming_it(app_with: Any, logged: LoggedModels) -> None:
    client = app_with()
    response = client.post(
        f"/v1/models/{logged.moe_pt2}/predict_batch",
        content=_csv(30_000, bad_row=29_123),
        headers={"content-type": "text/csv"},
    )
    assert response.status_code == 422
    assert (response.json()["field"], response.json()["row"]) == ("f3", 29_123)


def test_a_failure_after_the_answer_started_aborts_it(app_with: Any, logged: LoggedModels) -> None:
    """The answer never ends cleanly: no last chunk, so no client can take it for a whole CSV."""
    client = app_with(batch_chunk_rows=10)
    edge: ServingEdge = client.app
    plane = edge.plane
    original = plane.batcher.run_alone
    calls = 0

    async def fail_on_third(features: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise InvalidInputError("model", "boom")
        return await original(features, **kwargs)

    plane.batcher.run_alone = fail_on_third  # type: ignore[method-assign]
    messages: list[dict[str, Any]] = []
    body = _csv(50)

    async def receive() -> dict[str, Any]:
        nonlocal body
        if not body:
            await anyio.sleep_forever()  # the client stays until the answer ends
        chunk, body = body, b""
        return {"type": "http.request", "body": chunk, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/v1/models/{logged.moe_pt2}/predict_batch",
        "headers": [(b"content-type", b"text/csv")],
        "client": ("127.0.0.1", 1),
        "query_string": b"",
    }
    client.portal.call(edge, scope, receive, send)
    assert messages[0]["status"] == 200
    bodies = [m for m in messages if m["type"] == "http.response.body"]
    assert all(m.get("more_body") for m in bodies)  # never the final, empty chunk
    assert b"".join(m["body"] for m in bodies).count(b"\n") == 1 + 20

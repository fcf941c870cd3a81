"""Metrics, readiness, auth, rate limits, fault injection and access logs of the in-process server."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from modelpilot.inference.app import create_app
from modelpilot.inference.auth import sign_hs256
from tests.api.inference.conftest import settings_for
from tests.api.inference.models import sample_rows
from tests.support.mlflow_server import MlflowServer

BODY = {"instances": sample_rows(3).tolist()}


def scrape(client: TestClient) -> Any:
    """GET /metrics from the app of the metrics listener that goes with `client`'s server."""
    return TestClient(client.app.metrics_app).get("/metrics")  # type: ignore[attr-defined]


def samples(client: TestClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Scraped samples by name, from the metrics listener's app (`MODELPILOT_METRICS_PORT` in a pod)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(scrape(client).text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_metrics_use_route_templates_and_bounded_labels(app_with: Any) -> None:
    client = app_with(track="canary")
    for _ in range(3):
        assert client.post("/v1/models/moe-pt2/predict", json=BODY).status_code == 200
    assert client.post("/v1/models/moe-pt2/predict", json={"instances": [[1]]}).status_code == 422
    scraped = samples(client)
    requests = {(s["route"], s["code"]): v for s, v in scraped["modelpilot_http_requests_total"]}
    assert requests[("/v1/models/{name}/predict", "200")] == 3
    assert requests[("/v1/models/{name}/predict", "422")] == 1
    labels = next(s for s, _ in scraped["modelpilot_http_requests_total"])
    assert (labels["model"], labels["version"], labels["track"]) == ("moe-pt2", "1", "canary")
    buckets = [
        s
        for s, _ in scraped["modelpilot_http_request_duration_seconds_bucket"]
        if s["route"] == "/v1/models/{name}/predict"
    ]
    assert {"0.005", "0.25", "1.0"} <= {b["le"] for b in buckets}
    predicted = sum(v for _, v in scraped["modelpilot_predictions_total"])
    assert predicted == 9
    assert {s["class"] for s, _ in scraped["modelpilot_predictions_total"]} <= {"0", "1"}
    assert sum(v for s, v in scraped["modelpilot_batch_size_count"]) == 3
    observations = {s["feature"]: v for s, v in scraped["modelpilot_feature_observations_total"]}
    assert len(observations) == 20
    assert observations["input[0]"] == 9
    sums = {s["feature"]: v for s, v in scraped["modelpilot_feature_sum"]}
    assert sums["input[4]"] == pytest.approx(3 * sum(r[4] for r in BODY["instances"]), rel=1e-5)
    # The training run's reference was read with the model: each feature's served values fall in its bins.
    binned: dict[str, float] = {}
    for labels, value in scraped["modelpilot_feature_bin_total"]:
        binned[labels["feature"]] = binned.get(labels["feature"], 0.0) + value
    assert binned == {f"input[{j}]": 9.0 for j in range(20)}
    shares = [v for s, v in scraped["modelpilot_feature_reference_share"] if s["feature"] == "input[0]"]
    assert sum(shares) == pytest.approx(1.0)
    assert len(shares) == 12, "below, the ten bins of the reference, above"


def test_each_prediction_route_exports_its_5xx_series_at_zero_before_any_error(app_with: Any) -> None:
    """rate() needs a sample before the first error: a 5xx series born with it would hide that error."""
    client = app_with(track="canary")
    assert client.post("/v1/models/moe-pt2/predict", json=BODY).status_code == 200
    requests = {(s["route"], s["code"]): v for s, v in samples(client)["modelpilot_http_requests_total"]}
    for route in (
        "/invocations",
        "/v1/models/{name}/predict",
        "/v1/models/{name}/predict_batch",
        "/v2/models/{name}/infer",
    ):
        assert requests[(route, "500")] == 0
    assert ("/metrics", "500") not in requests  # probes and scrapes are not traffic
    assert requests[("/v1/models/{name}/predict", "200")] == 1


def test_model_that_cannot_load_stays_unready_with_the_reason(mlflow: MlflowServer) -> None:
    settings = settings_for(mlflow, "no-such-model", load_retry_seconds=60)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "failed"
        assert "no-such-model" in ready.json()["reason"]
        assert client.get("/healthz").status_code == 200
        answer = client.post("/invocations", json=BODY)
        assert answer.status_code == 503
        assert answer.headers["retry-after"]


def test_api_keys_from_env_and_file(app_with: Any, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# mounted secret\nfile-key\n")
    client = app_with(api_keys="env-key", api_keys_file=keys)
    assert client.post("/invocations", json=BODY).status_code == 401
    assert client.post("/invocations", json=BODY, headers={"x-api-key": "wrong"}).status_code == 401
    assert client.post("/invocations", json=BODY, headers={"x-api-key": "env-key"}).status_code == 200
    assert client.post("/invocations", json=BODY, headers={"authorization": "Bearer file-key"}).status_code == 200
    # Probes stay open; metrics are not on the prediction port at all.
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics", headers={"x-api-key": "env-key"}).status_code == 404
    assert scrape(client).status_code == 200
    scraped = samples(client)
    routes = {(s["route"], s["code"]) for s, _ in scraped["modelpilot_http_requests_total"]}
    assert ("/invocations", "401") in routes


def test_jwt_hs256(app_with: Any) -> None:
    secret = b"s3cret"
    client = app_with(jwt_secret=secret.decode(), jwt_audience="modelpilot")
    now = int(time.time())
    good = sign_hs256({"sub": "team-a", "aud": "modelpilot", "exp": now + 60}, secret)
    expired = sign_hs256({"sub": "team-a", "aud": "modelpilot", "exp": now - 3600}, secret)
    forged = sign_hs256({"sub": "team-a", "aud": "modelpilot", "exp": now + 60}, b"other")
    wrong_audience = sign_hs256({"sub": "team-a", "aud": "else", "exp": now + 60}, secret)
    assert client.post("/invocations", json=BODY, headers={"authorization": f"Bearer {good}"}).status_code == 200
    for token, reason in ((expired, "expired"), (forged, "signature"), (wrong_audience, "audience")):
        response = client.post("/invocations", json=BODY, headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert reason in response.json()["message"]
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_rate_limit_answers_429_with_retry_after(app_with: Any) -> None:
    client = app_with(rate_limit_rps=1, rate_limit_burst=2)
    codes = [client.post("/invocations", json=BODY).status_code for _ in range(4)]
    assert codes[:2] == [200, 200]
    assert 429 in codes[2:]
    limited = client.post("/invocations", json=BODY)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert client.get("/healthz").status_code == 200


def test_fault_error_rate_fails_an_exact_share_of_predictions(app_with: Any) -> None:
    client = app_with(fault_error_rate=0.2)
    codes = [client.post("/invocations", json=BODY).status_code for _ in range(20)]
    assert codes.count(500) == 4
    assert codes.count(200) == 16
    assert client.get("/readyz").status_code == 200


def test_faults_apply_only_to_the_versions_named(app_with: Any) -> None:
    served = app_with().get("/readyz").json()["version"]
    other = app_with(fault_error_rate=1.0, fault_versions=f"{served}0, x")
    named = app_with(fault_error_rate=1.0, fault_versions=f"x, {served}")
    assert other.post("/invocations", json=BODY).status_code == 200
    assert named.post("/invocations", json=BODY).status_code == 500


def test_fault_latency_delays_predictions(app_with: Any) -> None:
    client = app_with(fault_latency_ms=150)
    start = time.perf_counter()
    assert client.post("/invocations", json=BODY).status_code == 200
    assert time.perf_counter() - start >= 0.15


def test_access_log_line_carries_the_request_id(app_with: Any) -> None:
    stream = io.BytesIO()
    client = app_with(access_log=True, access_stream=stream)
    response = client.post("/invocations", json=BODY, headers={"x-request-id": "abc-123"})
    generated = client.get("/healthz")
    refused = client.get("/invocations")
    client.__exit__(None, None, None)  # shutdown writes what is still buffered
    assert response.headers["x-request-id"] == "abc-123"
    assert generated.headers["x-request-id"]
    assert (refused.status_code, refused.headers["allow"]) == (405, "POST")
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert all(line["logger"] == "modelpilot.access" and line["time"].endswith("Z") for line in lines)
    first = next(line for line in lines if line["request_id"] == "abc-123")
    assert (first["route"], first["status"], first["method"]) == ("/invocations", 200, "POST")
    assert first["duration_ms"] > 0
    assert first["bytes_in"] == int(response.request.headers["content-length"])
    assert any(line["request_id"] == generated.headers["x-request-id"] for line in lines)
    assert any(line["route"] == "/invocations" and line["status"] == 405 for line in lines)


def test_a_client_that_leaves_mid_body_is_counted_as_499_and_nothing_is_sent(app_with: Any) -> None:
    client = app_with()
    app = client.app
    messages = iter([{"type": "http.request", "body": b'{"instances": [[0.1, ', "more_body": True}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/models/moe-pt2/predict",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
    }
    anyio.run(app, scope, receive, send)
    assert sent == []
    requests = {(s["route"], s["code"]): v for s, v in samples(client)["modelpilot_http_requests_total"]}
    assert requests[("/v1/models/{name}/predict", "499")] == 1
    assert client.post("/v1/models/moe-pt2/predict", json=BODY).status_code == 200

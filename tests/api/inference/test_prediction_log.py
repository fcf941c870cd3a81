"""The prediction log against a real PostgreSQL: every row written, serving unaffected by an outage,
labels joined to their predictions (JSON and CSV), shadow comparisons counted once, retention, migrations."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import psycopg
import pytest
import tritonclient.grpc as triton_grpc
from prometheus_client import CollectorRegistry, start_http_server
from pydantic import SecretStr
from starlette.testclient import TestClient

from modelpilot.inference.prediction import Prediction
from modelpilot.inference.predlog.__main__ import main as predlog_main
from modelpilot.inference.predlog.connection import connect
from modelpilot.inference.predlog.maintenance import compare_shadow, delete_expired
from modelpilot.inference.predlog.metrics import PredictionLogMetrics
from modelpilot.inference.predlog.migrate import VERSION_TABLE, current_revision, migrate
from modelpilot.inference.predlog.records import LoggedRequest
from modelpilot.inference.predlog.writer import PredictionLogWriter
from tests.api.inference.models import LoggedModels, sample_rows
from tests.api.inference.predlog_support import metric, query, wait_written
from tests.support.mlflow_server import MlflowServer
from tests.support.postgres import PostgresServer
from tests.support.processes import free_port, running, wait_for_http
from tests.support.prometheus import prometheus_server

MODEL = "moe-pt2"
PREDICT = f"/v1/models/{MODEL}/predict"
LABELLED = "modelpilot_labelled_predictions_total"


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    """An empty, migrated database (the server is started again if a test stopped it)."""
    postgres.start()
    postgres.reset()
    migrate(postgres.dsn)
    return postgres.dsn


@pytest.fixture
def logging_app(app_with: Callable[..., TestClient], dsn: str) -> Callable[..., TestClient]:
    """A server around the loaded test model that logs to `dsn`; keyword arguments override settings."""

    def build(**overrides: Any) -> TestClient:
        values: dict[str, Any] = {
            "predlog_dsn": SecretStr(dsn),
            "predlog_flush_seconds": 0.05,
            "predlog_shadow_interval_seconds": 0.0,
            "predlog_retention_days": 0.0,
        }
        values.update(overrides)
        return app_with(**values)

    return build


def predict(client: TestClient, rows: np.ndarray[Any, Any], request_id: str | None = None) -> Any:
    headers = {"x-request-id": request_id} if request_id else {}
    response = client.post(PREDICT, json={"instances": rows.tolist()}, headers=headers)
    assert response.status_code == 200, response.text
    return response


def test_every_row_of_2000_requests_is_in_the_table(logging_app: Callable[..., TestClient], dsn: str) -> None:
    client = logging_app()
    rows = sample_rows(4000, seed=7)

    def send(index: int) -> tuple[str, list[int]]:
        sent_id = f"load-{index}" if index % 2 else None  # every other request gets a generated id
        response = predict(client, rows[2 * index : 2 * index + 2], sent_id)
        request_id = response.headers["x-request-id"]
        if sent_id is not None:
            assert request_id == sent_id
        return request_id, response.json()["classes"]

    # Eight at a time: the batcher joins concurrent requests into one forward pass, and each request's rows
    # must still be logged under its own id.
    with ThreadPoolExecutor(8) as pool:
        answers = dict(pool.map(send, range(2000)))
    assert len(answers) == 2000
    wait_written(client)
    logged = query(dsn, "SELECT request_id, row, predicted_class, track, model, version, inputs_hash FROM predictions")
    assert len(logged) == 4000
    by_key = {(r[0], r[1]): r for r in logged}
    for request_id, classes in answers.items():
        for row, predicted in enumerate(classes):
            assert by_key[(request_id, row)][2] == predicted
    first = by_key[("load-1", 0)]
    assert first[3:6] == ("stable", MODEL, "1")
    canonical = b'{"input":' + orjson.dumps(rows[2], option=orjson.OPT_SERIALIZE_NUMPY) + b"}"
    assert bytes(first[6]) == hashlib.sha256(canonical).digest()
    assert metric(client, "modelpilot_prediction_log_written_total") == 4000
    assert metric(client, "modelpilot_prediction_log_dropped_total") == 0


def test_full_inputs_are_stored_as_json_and_none_stores_neither(
    logging_app: Callable[..., TestClient], dsn: str
) -> None:
    full = logging_app(predlog_inputs="full")
    predict(full, sample_rows(1, seed=3), "full-1")
    wait_written(full)
    nothing = logging_app(predlog_inputs="none")
    predict(nothing, sample_rows(1, seed=3), "none-1")
    wait_written(nothing)
    stored = dict(query(dsn, "SELECT request_id, inputs FROM predictions"))
    assert stored["full-1"] == {"input": pytest.approx(sample_rows(1, seed=3)[0].tolist())}
    assert stored["none-1"] is None
    assert query(dsn, "SELECT inputs_hash IS NULL FROM predictions WHERE request_id = 'none-1'") == [(True,)]


def test_an_invalid_request_id_is_replaced_by_a_generated_one(logging_app: Callable[..., TestClient]) -> None:
    client = logging_app()
    for bad in ("a b", "x" * 129, "semi;colon", "é"):
        response = client.post(
            PREDICT,
            json={"instances": sample_rows(1).tolist()},
            headers={"x-request-id": bad.encode()},
        )
        assert response.status_code == 200
        assert response.headers["x-request-id"] != bad
        assert len(response.headers["x-request-id"]) == 16 + 1 + 1  # 64-bit prefix, dash, counter


def _p99(samples: list[float]) -> float:
    return float(np.percentile(samples, 99))


def test_serving_keeps_answering_at_the_same_latency_while_the_database_is_away(
    logging_app: Callable[..., TestClient], postgres: PostgresServer, dsn: str
) -> None:
    client = logging_app(predlog_queue_rows=500, predlog_retry_max_seconds=1.0)
    rows = sample_rows(1, seed=11).tolist()

    def timed_requests(seconds: float, prefix: str) -> list[float]:
        latencies = []
        deadline = time.monotonic() + seconds
        index = 0
        while time.monotonic() < deadline:
            start = time.perf_counter()
            response = client.post(PREDICT, json={"instances": rows}, headers={"x-request-id": f"{prefix}-{index}"})
            latencies.append(time.perf_counter() - start)
            assert response.status_code == 200
            index += 1
        return latencies

    with_database = timed_requests(5, "up")
    wait_written(client)
    postgres.stop()
    try:
        without_database = timed_requests(30, "down")
        assert metric(client, "modelpilot_prediction_log_dropped_total", reason="queue_full") > 0
        assert metric(client, "modelpilot_prediction_log_backlog_rows") > 0
    finally:
        postgres.start()
    wait_written(client, timeout=60)
    # One latency figure from a shared 2-core machine: a generous bound, still far below a blocking write.
    assert _p99(without_database) < max(3 * _p99(with_database), _p99(with_database) + 0.02)
    dropped = metric(client, "modelpilot_prediction_log_dropped_total", reason="queue_full")
    total = len(with_database) + len(without_database)
    assert query(dsn, "SELECT count(*) FROM predictions")[0][0] == total - dropped
    assert metric(client, "modelpilot_prediction_log_written_total") == total - dropped


def _post_labels(client: TestClient, labels: list[dict[str, Any]]) -> Any:
    return client.post("/v1/labels", content=orjson.dumps(labels), headers={"content-type": "application/json"})


def test_labels_count_the_predictions_they_label_with_the_predictions_track(
    logging_app: Callable[..., TestClient],
) -> None:
    canary = logging_app(track="canary")
    answer = predict(canary, sample_rows(3, seed=5), "req-1").json()["classes"]
    wait_written(canary)
    stable = logging_app(track="stable")  # another pod receives the labels
    labels = [
        {"request_id": "req-1", "row": 0, "label": answer[0]},
        {"request_id": "req-1", "row": 1, "label": 1 - answer[1]},
        {"request_id": "req-1", "row": 2, "label": answer[2]},
    ]
    response = _post_labels(stable, labels)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 3, "stored": 3, "duplicates": 0, "predictions_counted": 3, "unmatched": 0}
    assert metric(stable, LABELLED, track="canary", version="1", model=MODEL, correct="true") == 2
    assert metric(stable, LABELLED, track="canary", correct="false", predicted=str(answer[1])) == 1
    assert metric(stable, LABELLED, track="stable") == 0
    # Sent again: stored once, counted once.
    assert _post_labels(stable, labels).json()["duplicates"] == 3
    assert metric(stable, LABELLED) == 3


def test_a_label_before_its_prediction_is_unmatched_then_counted_once_the_prediction_is_logged(
    logging_app: Callable[..., TestClient],
) -> None:
    client = logging_app()
    response = _post_labels(client, [{"request_id": "early", "row": 0, "label": 1}])
    assert response.json()["unmatched"] == 1
    assert metric(client, "modelpilot_labels_unmatched_total") == 1
    predicted = predict(client, sample_rows(1, seed=2), "early").json()["classes"][0]
    wait_written(client)
    assert metric(client, LABELLED, predicted=str(predicted), actual="1") == 1
    predict(client, sample_rows(1, seed=2), "early")  # the same id again: a duplicate, not a second count
    wait_written(client)
    assert metric(client, LABELLED) == 1
    assert metric(client, "modelpilot_prediction_log_dropped_total", reason="duplicate") == 1


def test_labels_racing_their_predictions_count_each_pair_once_across_pods(
    logging_app: Callable[..., TestClient],
) -> None:
    serving = logging_app(predlog_flush_seconds=0.01, predlog_batch_rows=7)  # many small writes
    labelling = logging_app()
    rows = sample_rows(300, seed=12)

    def post_labels() -> None:  # labels for every request, most before or while its prediction is written
        for start in range(0, 300, 10):
            labels = [{"request_id": f"race-{i}", "row": 0, "label": 1} for i in range(start, start + 10)]
            assert _post_labels(labelling, labels).status_code == 200

    poster = threading.Thread(target=post_labels)
    poster.start()
    for index in range(300):
        predict(serving, rows[index : index + 1], f"race-{index}")
    poster.join()
    wait_written(serving)
    counted = metric(serving, LABELLED) + metric(labelling, LABELLED)
    assert counted == 300
    assert metric(labelling, "modelpilot_labels_unmatched_total") <= 300


def test_prometheus_reads_live_accuracy_from_the_labelled_predictions(
    logging_app: Callable[..., TestClient], tmp_path: Path
) -> None:
    canary = logging_app(track="canary")
    classes = predict(canary, sample_rows(20, seed=13), "acc").json()["classes"]
    wait_written(canary)
    labels = [{"request_id": "acc", "row": r, "label": c if r < 15 else 1 - c} for r, c in enumerate(classes)]
    assert _post_labels(canary, labels).status_code == 200
    # The pod's metrics registry on a port of its own, as its metrics listener serves it, scraped by Prometheus.
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=canary.app.plane.metrics.registry)  # type: ignore[attr-defined]
    try:
        with prometheus_server(tmp_path / "prometheus", [f"127.0.0.1:{port}"]) as prometheus:
            prometheus.wait_for_targets(1)
            accuracy = (
                f'sum(modelpilot_labelled_predictions_total{{correct="true", track="canary", model="{MODEL}"}})'
                f' / sum(modelpilot_labelled_predictions_total{{track="canary", model="{MODEL}"}})'
            )
            [sample] = prometheus.query(accuracy)
            assert float(sample["value"][1]) == pytest.approx(0.75)  # type: ignore[index]
    finally:
        server.shutdown()


def test_csv_labels_are_joined_and_a_bad_line_stores_nothing(logging_app: Callable[..., TestClient], dsn: str) -> None:
    client = logging_app()
    classes = predict(client, sample_rows(50, seed=9), "bulk").json()["classes"]
    wait_written(client)
    lines = [f"bulk,{row},{label}" for row, label in enumerate(classes)]
    bad = "\n".join(["request_id,row,label", *lines[:10], "bulk,ten,1", "bad id,1,1", *lines[10:]])
    refused = client.post("/v1/labels", content=bad.encode(), headers={"content-type": "text/csv"})
    assert refused.status_code == 422
    assert refused.json()["errors"] == 2
    assert [d["line"] for d in refused.json()["details"]] == [12, 13]
    assert query(dsn, "SELECT count(*) FROM labels") == [(0,)]
    good = "\r\n".join(["label,request_id,row,note", *(f"{c},bulk,{r},x" for r, c in enumerate(classes))])
    accepted = client.post("/v1/labels?source=nightly", content=good.encode(), headers={"content-type": "text/csv"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["predictions_counted"] == 50
    assert metric(client, LABELLED, correct="true") == 50
    assert query(dsn, "SELECT DISTINCT source FROM labels") == [("nightly",)]


def test_labels_need_credentials_when_auth_is_on(logging_app: Callable[..., TestClient]) -> None:
    client = logging_app(api_keys="labeller")
    body = [{"request_id": "x", "row": 0, "label": 1}]
    assert _post_labels(client, body).status_code == 401
    response = client.post(
        "/v1/labels", content=orjson.dumps(body), headers={"content-type": "application/json", "x-api-key": "labeller"}
    )
    assert response.status_code == 200


def test_labels_answer_503_while_the_database_is_away(
    logging_app: Callable[..., TestClient], postgres: PostgresServer
) -> None:
    client = logging_app()
    postgres.stop()
    try:
        response = _post_labels(client, [{"request_id": "x", "row": 0, "label": 1}])
    finally:
        postgres.start()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


def test_shadow_rows_are_compared_once_across_concurrent_passes(
    logging_app: Callable[..., TestClient], dsn: str
) -> None:
    stable, canary = logging_app(track="stable"), logging_app(track="canary")
    rows = sample_rows(200, seed=4)
    for start in range(0, 200, 20):  # different request ids on each track: paired by inputs only
        predict(stable, rows[start : start + 20], f"s-{start}")
        predict(canary, rows[start : start + 20], f"c-{start}")
    wait_written(stable)
    wait_written(canary)
    # The stable version answered differently for the first ten rows.
    with psycopg.connect(dsn) as connection:
        connection.execute(
            "UPDATE predictions SET predicted_class = 1 - predicted_class WHERE track = 'stable' AND request_id = 's-0'"
            " AND row < 10"
        )
    registries = [CollectorRegistry() for _ in range(3)]  # three pods of the canary
    metrics = [PredictionLogMetrics(registry) for registry in registries]
    results: list[int] = []

    def one_pass(pod: PredictionLogMetrics) -> None:
        with connect(dsn) as connection:
            results.append(compare_shadow(connection, pod, MODEL, window_seconds=300, batch_rows=30))

    threads = [threading.Thread(target=one_pass, args=(pod,)) for pod in metrics]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == 200

    def counted(agreed: str) -> float:
        labels = {"model": MODEL, "version": "1", "stable_version": "1", "agreed": agreed}
        return sum(r.get_sample_value("modelpilot_shadow_comparisons_total", labels) or 0.0 for r in registries)

    assert counted("false") == 10
    assert counted("true") == 190
    assert query(dsn, "SELECT count(*) FROM predictions WHERE track = 'canary' AND NOT compared") == [(0,)]


def test_the_canary_pod_counts_shadow_comparisons_on_its_metrics(logging_app: Callable[..., TestClient]) -> None:
    stable = logging_app(track="stable")
    canary = logging_app(track="canary", predlog_shadow_interval_seconds=0.2)
    rows = sample_rows(5, seed=6)
    predict(stable, rows)
    predict(canary, rows)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and metric(canary, "modelpilot_shadow_comparisons_total") < 5:
        time.sleep(0.1)
    assert metric(canary, "modelpilot_shadow_comparisons_total", model=MODEL, version="1", stable_version="1") == 5
    assert metric(canary, "modelpilot_shadow_comparisons_total", agreed="true") == 5
    assert metric(stable, "modelpilot_shadow_comparisons_total") == 0


def test_retention_deletes_old_rows_in_bounded_batches(dsn: str) -> None:
    with psycopg.connect(dsn) as connection:
        connection.execute(
            "INSERT INTO predictions (request_id, row, track, model, version, logged_at) "
            "SELECT 'old', g, 'stable', 'm', '1', now() - interval '40 days' FROM generate_series(0, 249) g"
        )
        connection.execute(
            "INSERT INTO predictions (request_id, row, track, model, version, logged_at) "
            "SELECT 'new', g, 'stable', 'm', '1', now() FROM generate_series(0, 9) g"
        )
        connection.execute(
            "INSERT INTO labels (request_id, row, label, received_at) VALUES ('old', 0, 1, now() - interval '40 days')"
        )
    with connect(dsn) as connection:
        assert delete_expired(connection, days=30, batch_rows=100) == 251
    assert query(dsn, "SELECT DISTINCT request_id FROM predictions") == [("new",)]
    assert query(dsn, "SELECT count(*) FROM labels") == [(0,)]


def test_migrations_run_from_empty_and_again_without_change(postgres: PostgresServer) -> None:
    postgres.start()
    postgres.reset()
    assert current_revision(postgres.dsn) is None
    assert predlog_main(["migrate", "--dsn", postgres.dsn]) == 0
    assert current_revision(postgres.dsn) == "0001"
    tables = {r[0] for r in query(postgres.dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {"predictions", "labels", VERSION_TABLE}
    migrate(postgres.dsn)
    assert query(postgres.dsn, f"SELECT version_num FROM {VERSION_TABLE}") == [("0001",)]


def test_a_served_process_logs_rest_and_grpc_requests_and_writes_them_at_shutdown(
    postgres: PostgresServer, mlflow: MlflowServer, logged: LoggedModels, tmp_path: Path
) -> None:
    postgres.start()
    postgres.reset()
    migrate_cli = [sys.executable, "-m", "modelpilot.inference.predlog", "migrate"]
    subprocess.run(migrate_cli, env={**os.environ, "MODELPILOT_PREDLOG_DSN": postgres.dsn}, check=True, timeout=120)
    port, grpc_port = free_port(), free_port()
    env = {
        "MLFLOW_TRACKING_URI": mlflow.url,
        "MODELPILOT_MODEL_URI": f"models:/{logged.moe_pt2}/1",
        "MODELPILOT_HOST": "127.0.0.1",
        "MODELPILOT_PORT": str(port),
        "MODELPILOT_METRICS_PORT": str(free_port()),
        "MODELPILOT_GRPC_PORT": str(grpc_port),
        "MODELPILOT_ACCESS_LOG": "false",
        "MODELPILOT_PREDLOG_DSN": postgres.dsn,
        "MODELPILOT_PREDLOG_FLUSH_SECONDS": "60",  # nothing is written before shutdown but by the final flush
    }
    serve = str(Path(sys.executable).parent / "modelpilot-serve")
    with running([serve], log=tmp_path / "serve.log", env=env) as process:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", timeout=180)
        rows = sample_rows(3, seed=21)
        response = httpx.post(
            f"http://127.0.0.1:{port}{PREDICT}",
            json={"instances": rows.tolist()},
            headers={"x-request-id": "rest-1"},
            timeout=30,
        )
        assert response.status_code == 200
        tensor = triton_grpc.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}").infer(MODEL, [tensor], request_id="grpc-1")
        assert query(postgres.dsn, "SELECT count(*) FROM predictions") == [(0,)]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    logged_rows = query(postgres.dsn, "SELECT request_id, count(*) FROM predictions GROUP BY 1 ORDER BY 1")
    assert logged_rows == [("grpc-1", 3), ("rest-1", 3)]


def test_a_batch_the_database_refuses_is_dropped_and_counted_and_the_log_goes_on(dsn: str) -> None:
    registry = CollectorRegistry()
    writer = PredictionLogWriter(dsn, PredictionLogMetrics(registry), batch_rows=1, flush_seconds=0.01)
    writer.start()
    try:
        # A string output with a NUL character: jsonb cannot hold it, whatever the attempt.
        refused = LoggedRequest(
            "nul", np.zeros((1, 1)), Prediction(np.array(["a\x00b"], dtype=object), 1), 0.0, "m", "1", "stable"
        )
        fine = LoggedRequest(
            "ok", np.zeros((1, 1)), Prediction(np.array(["ab"], dtype=object), 1), 0.0, "m", "1", "stable"
        )
        writer.record(refused)
        writer.record(fine)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and writer.backlog():
            time.sleep(0.05)
    finally:
        writer.stop()
    assert registry.get_sample_value("modelpilot_prediction_log_dropped_total", {"reason": "rejected"}) == 1
    assert query(dsn, "SELECT request_id, prediction FROM predictions") == [("ok", "ab")]

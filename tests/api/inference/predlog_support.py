"""Helpers of the prediction log tests: a migrated empty database, scraping, and waiting for the writer."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from starlette.testclient import TestClient

from tests.api.inference.test_operations import samples


def metric(client: TestClient, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when there is none)."""
    return sum(
        value
        for sample_labels, value in samples(client).get(name, [])
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


def wait_written(client: TestClient, timeout: float = 60.0) -> None:
    """Block until the server's log has no backlog."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(client, "modelpilot_prediction_log_backlog_rows") == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"backlog still {metric(client, 'modelpilot_prediction_log_backlog_rows')} after {timeout}s")


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """The rows of one statement."""
    with psycopg.connect(dsn) as connection:
        return connection.execute(sql, params).fetchall()

"""Periodic work of each serving pod: shadow comparisons (canary track) and retention, in a thread of its own.

Both are safe to run in every pod at once: a candidate row is compared by exactly one pass (SKIP LOCKED and
the `compared` flag), and retention runs under an advisory lock only one pod holds at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg

from modelpilot.inference.predlog import statements
from modelpilot.inference.predlog.connection import connect
from modelpilot.inference.predlog.metrics import PredictionLogMetrics

log = logging.getLogger("modelpilot.inference.predlog")

# A pass repeats its bounded statement at most this often, then waits for the next tick.
MAX_ROUNDS = 20


def compare_shadow(
    connection: psycopg.Connection[tuple[Any, ...]],
    metrics: PredictionLogMetrics,
    model: str,
    *,
    window_seconds: float,
    batch_rows: int,
) -> int:
    """Compare the candidate rows of `model` not compared yet with their stable pairs; the rows compared."""
    compared = 0
    params = {"model": model, "window": window_seconds, "limit": batch_rows}
    for _ in range(MAX_ROUNDS):
        with connection.transaction():
            groups = connection.execute(statements.COMPARE_SHADOW, params).fetchall()
        done = 0
        for version, stable_version, agreed, count in groups:
            metrics.count_shadow(model, version, stable_version, bool(agreed), count)
            done += count
        compared += done
        if done < batch_rows:
            break
    with connection.transaction():
        connection.execute(statements.EXPIRE_SHADOW, params)
    return compared


def delete_expired(connection: psycopg.Connection[tuple[Any, ...]], *, days: float, batch_rows: int) -> int:
    """Delete rows older than `days`, `batch_rows` per transaction, if no other pod is doing it; rows deleted."""
    if not connection.execute(statements.TRY_LOCK, {"key": statements.RETENTION_LOCK}).fetchone()[0]:  # type: ignore[index]
        connection.commit()
        return 0
    connection.commit()
    deleted = 0
    try:
        for statement in (statements.DELETE_OLD_PREDICTIONS, statements.DELETE_OLD_LABELS):
            while True:
                with connection.transaction():
                    count = connection.execute(statement, {"days": days, "limit": batch_rows}).rowcount
                deleted += count
                if count < batch_rows:
                    break
    finally:
        connection.execute(statements.UNLOCK, {"key": statements.RETENTION_LOCK})
        connection.commit()
    return deleted


class Maintenance:
    """A thread that runs the shadow pass every `shadow_interval` and retention every `retention_interval`."""

    def __init__(
        self,
        dsn: str,
        metrics: PredictionLogMetrics,
        model: Any,
        *,
        track: str,
        shadow_interval: float,
        shadow_window: float,
        shadow_batch_rows: int,
        retention_days: float,
        retention_interval: float,
        delete_batch_rows: int,
    ) -> None:
        self._dsn = dsn
        self.metrics = metrics
        self._model = model  # read at each pass: the name is known once the model has loaded
        self.shadow_interval = shadow_interval if track == "canary" else 0.0
        self.shadow_window = shadow_window
        self.shadow_batch_rows = shadow_batch_rows
        self.retention_days = retention_days
        self.retention_interval = retention_interval
        self.delete_batch_rows = delete_batch_rows
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """True when there is periodic work to do."""
        return self.shadow_interval > 0 or self.retention_days > 0

    def start(self) -> None:
        """Start the thread when there is work for it."""
        if self.active:
            self._thread = threading.Thread(target=self._run, name="predlog-maintenance", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop after the statement in progress."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        connection: psycopg.Connection[tuple[Any, ...]] | None = None
        now = time.monotonic()
        next_shadow = now + self.shadow_interval if self.shadow_interval > 0 else float("inf")
        next_retention = now + min(60.0, self.retention_interval) if self.retention_days > 0 else float("inf")
        failing = False
        while not self._stopping.wait(max(0.0, min(next_shadow, next_retention) - time.monotonic())):
            try:
                if connection is None or connection.closed:
                    connection = connect(self._dsn)
                if time.monotonic() >= next_shadow:
                    next_shadow = time.monotonic() + self.shadow_interval
                    if self._model.ready:
                        compare_shadow(
                            connection,
                            self.metrics,
                            self._model.name,
                            window_seconds=self.shadow_window,
                            batch_rows=self.shadow_batch_rows,
                        )
                if time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + self.retention_interval
                    deleted = delete_expired(connection, days=self.retention_days, batch_rows=self.delete_batch_rows)
                    if deleted:
                        log.info("prediction log: retention", extra={"fields": {"deleted_rows": deleted}})
                failing = False
            except (psycopg.Error, OSError) as error:
                if not failing:  # once per outage, not once per tick
                    log.warning("prediction log: maintenance failed", extra={"fields": {"error": str(error)[:300]}})
                failing = True
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()

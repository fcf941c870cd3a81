"""The writer: rows leave the request path as references in a bounded queue; a thread of its own turns them
into table rows and COPYs them in batches, retrying with back-off while the database is away.

The request path only appends to a deque under a lock (O(1) whatever the rows): hashing, JSON and I/O all
happen in the writer thread. When the queue holds `queue_rows` rows, new requests' rows are dropped and
counted (`modelpilot_prediction_log_dropped_total{reason="queue_full"}`): serving never waits for the log.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import psycopg

from modelpilot.inference.predlog import statements
from modelpilot.inference.predlog.connection import connect
from modelpilot.inference.predlog.metrics import PredictionLogMetrics
from modelpilot.inference.predlog.records import InputsMode, LoggedRequest, copy_text

log = logging.getLogger("modelpilot.inference.predlog")

FIRST_RETRY_SECONDS = 0.2


@dataclass
class _Batch:
    """Requests taken from the queue, formatted once as COPY text, kept until written."""

    text: bytes
    requests: list[tuple[str, str]]  # (request id, track) of each request in the batch
    rows: int
    written: bool = False  # the rows are committed; the join with labels may still be due
    attempts: int = 0


class PredictionLogWriter:
    """Bounded queue + writer thread. `record` is called on the event loop; everything else runs in the thread."""

    def __init__(
        self,
        dsn: str,
        metrics: PredictionLogMetrics,
        *,
        inputs: InputsMode = "hash",
        sample_rate: float = 1.0,
        queue_rows: int = 100_000,
        batch_rows: int = 5000,
        flush_seconds: float = 0.5,
        retry_max_seconds: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self.metrics = metrics
        self.inputs = inputs
        self.sample_rate = sample_rate
        self.queue_rows = queue_rows
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.retry_max_seconds = retry_max_seconds
        self._queue: deque[LoggedRequest] = deque()
        self._queued_rows = 0
        self._batch_rows_pending = 0  # rows taken from the queue and not yet written
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: psycopg.Connection[tuple[Any, ...]] | None = None
        self.connected = False
        metrics.track_backlog(self.backlog)

    # The request path.

    def record(self, request: LoggedRequest) -> None:
        """Queue one request's rows, or count them dropped when the queue is full; never blocks."""
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
            return
        rows = request.prediction.rows
        wake = False
        with self._lock:
            if self._stopping.is_set():
                full = True
                reason = "shutdown"
            else:
                full = self._queued_rows + rows > self.queue_rows
                reason = "queue_full"
                if not full:
                    self._queue.append(request)
                    self._queued_rows += rows
                    wake = self._queued_rows >= self.batch_rows
        if full:
            self.metrics.dropped.labels(reason).inc(rows)
        elif wake:
            self._wake.set()

    def backlog(self) -> int:
        """Rows queued or taken and not yet written."""
        return self._queued_rows + self._batch_rows_pending

    # Lifecycle.

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="predlog-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued within `timeout` seconds; rows still unwritten then are counted as dropped."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            left = self._queued_rows + self._batch_rows_pending
            self._queue.clear()
            self._queued_rows = self._batch_rows_pending = 0
        if left:
            self.metrics.dropped.labels("shutdown").inc(left)
        self._close()

    # The writer thread.

    def _run(self) -> None:
        batch: _Batch | None = None
        delay = FIRST_RETRY_SECONDS
        while True:
            if batch is None:
                if self._queued_rows < self.batch_rows and not self._stopping.is_set():
                    self._wake.wait(self.flush_seconds)
                    self._wake.clear()
                batch = self._take()
                if batch is None:
                    if self._stopping.is_set():
                        return
                    continue
            try:
                self._write(batch)
            except psycopg.DataError as error:
                # A value the database refuses (a NUL character in an output string, which jsonb cannot
                # hold) refuses it on every attempt: the batch is given up so the log does not stop.
                log.error(
                    "prediction log: the database refused a batch; dropped",
                    extra={"fields": {"error": str(error).strip()[:300], "rows": batch.rows}},
                )
                self._close()
                if not batch.written:
                    self.metrics.dropped.labels("rejected").inc(batch.rows)
            except (psycopg.Error, OSError) as error:
                batch.attempts += 1
                self.metrics.write_errors.inc()
                if batch.attempts == 1:
                    log.warning(
                        "prediction log: write failed; retrying",
                        extra={"fields": {"error": str(error).strip()[:300], "rows": batch.rows}},
                    )
                self._close()
                # Jitter: pods that lost the database together do not all come back in the same instant.
                if self._stopping.wait(delay * (0.5 + random.random() / 2)):
                    return
                delay = min(delay * 2, self.retry_max_seconds)
                continue
            if batch.attempts:
                log.info("prediction log: writing again", extra={"fields": {"attempts": batch.attempts}})
            with self._lock:
                self._batch_rows_pending = 0
            batch, delay = None, FIRST_RETRY_SECONDS

    def _take(self) -> _Batch | None:
        """Up to `batch_rows` rows (whole requests) from the queue, formatted for COPY."""
        taken: list[LoggedRequest] = []
        rows = 0
        with self._lock:
            while self._queue and rows < self.batch_rows:
                request = self._queue.popleft()
                taken.append(request)
                rows += request.prediction.rows
            self._queued_rows -= rows
            self._batch_rows_pending = rows
        if not taken:
            return None
        parts: list[str] = []
        keys: list[tuple[str, str]] = []
        formatted = 0
        for request in taken:
            try:
                parts.append(copy_text(request, self.inputs))
            except Exception:  # an output this code cannot read must not stop the log
                log.exception("prediction log: cannot convert a request's rows; skipped")
                self.metrics.dropped.labels("unreadable").inc(request.prediction.rows)
                continue
            keys.append((request.request_id, request.track))
            formatted += request.prediction.rows
        return _Batch("".join(parts).encode(), keys, formatted)

    def _write(self, batch: _Batch) -> None:
        """Write the batch (rows already there are skipped), then count the labels waiting for its rows."""
        connection = self._connection
        if connection is None or connection.closed:
            connection = self._connection = connect(self._dsn)
            self.connected = True
        if not batch.written:
            written = self._insert(connection, batch.text, batch.rows)
            batch.written = True
            self.metrics.written.inc(written)
            if batch.rows > written:  # a request id sent twice: the first rows stay
                self.metrics.dropped.labels("duplicate").inc(batch.rows - written)
        if batch.requests:
            # A transaction of its own, after the rows are committed: a label stored meanwhile is seen here, or
            # its own join (after its commit) sees these rows. Either way the pair is counted once.
            ids, tracks = zip(*batch.requests, strict=True)
            with connection.cursor() as cursor:
                cursor.execute(statements.JOIN_NEW_PREDICTIONS, {"ids": list(ids), "tracks": list(tracks)})
                pairs = cursor.fetchall()
            connection.commit()
            for model, version, track, predicted, actual, count in pairs:
                self.metrics.count_labelled(model, version, track, predicted, actual, count)

    @staticmethod
    def _insert(connection: psycopg.Connection[tuple[Any, ...]], text: bytes, rows: int) -> int:
        """COPY the rows in and commit; through the staging table when some are there already. Rows written."""
        try:
            with connection.cursor() as cursor, cursor.copy(statements.COPY_PREDICTIONS) as copy:
                copy.write(text)
            connection.commit()
            return rows
        except psycopg.errors.UniqueViolation:
            connection.rollback()
        with connection.cursor() as cursor:
            cursor.execute(statements.CREATE_BATCH_TABLE)
            with cursor.copy(statements.COPY_BATCH) as copy:
                copy.write(text)
            cursor.execute(statements.INSERT_BATCH)
            written = cursor.rowcount
        connection.commit()
        return written

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        self.connected = False
        if connection is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail; it is gone either way
                connection.close()

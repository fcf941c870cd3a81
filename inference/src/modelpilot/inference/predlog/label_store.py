"""`POST /v1/labels`: labels stored in one transaction, then joined to the predictions logged for them.

All or nothing: a body with a bad line or item is answered 422 with a summary of what is wrong and nothing
is stored, so the client fixes it and sends the whole of it again (storing is idempotent: a label already
there is kept, and each prediction/label pair is counted once).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from starlette.requests import Request
from starlette.responses import Response

from modelpilot.inference.decoding import is_csv, is_json
from modelpilot.inference.errors import ServingError, UnsupportedMediaTypeError
from modelpilot.inference.predlog import statements
from modelpilot.inference.predlog.connection import connect_async
from modelpilot.inference.predlog.labels import LABELS_PATH, CsvLabelReader, Label, LabelErrors, parse_json_labels
from modelpilot.inference.predlog.metrics import PredictionLogMetrics
from modelpilot.inference.responses import json_bytes

log = logging.getLogger("modelpilot.inference.predlog")

__all__ = ["LABELS_PATH", "LabelStore", "post_labels"]
_SOURCE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,64}")


class LabelsRejectedError(ServingError):
    """Some lines or items are not labels; nothing was stored."""

    status = 422
    kind = "invalid_labels"


class LabelStoreUnavailableError(ServingError):
    """The database of the log cannot be reached: the client may retry."""

    status = 503
    kind = "label_store_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


@dataclass(frozen=True)
class LabelSummary:
    """What one request's labels did."""

    received: int
    stored: int
    predictions_counted: int
    unmatched: int

    def body(self) -> dict[str, int]:
        """The JSON answer."""
        return {
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.received - self.stored,
            "predictions_counted": self.predictions_counted,
            "unmatched": self.unmatched,
        }


class LabelStore:
    """Stores labels and counts the predictions they complete, in the pod that received them."""

    def __init__(self, dsn: str, metrics: PredictionLogMetrics) -> None:
        self._dsn = dsn
        self.metrics = metrics

    async def store(self, batches: Any, source: str) -> LabelSummary:
        """Store the labels `batches` (an async iterator of label lists) yields; raises before committing
        anything when the reader found errors (see `_check`)."""
        try:
            connection = await connect_async(self._dsn)
        except (psycopg.Error, OSError) as error:
            raise LabelStoreUnavailableError(f"the prediction log database is unavailable: {error}") from None
        received = 0
        try:
            async with connection:
                await connection.execute(statements.CREATE_LABEL_TABLES)
                async with connection.cursor() as cursor:
                    async for labels in batches:
                        if labels:
                            received += len(labels)
                            async with cursor.copy(statements.COPY_LABELS) as copy:
                                for label in labels:
                                    await copy.write_row((label.request_id, label.row, label.label))
                    await cursor.execute(statements.INSERT_LABELS, {"source": source})
                    stored = cursor.rowcount
                await connection.commit()
                # The join runs after the labels are committed: see `writer` for why that counts each pair once.
                async with connection.transaction():
                    pairs = await (await connection.execute(statements.JOIN_NEW_LABELS)).fetchall()
                    unmatched_row = await (await connection.execute(statements.COUNT_UNMATCHED_LABELS)).fetchone()
        except (psycopg.OperationalError, OSError) as error:
            raise LabelStoreUnavailableError(f"the prediction log database is unavailable: {error}") from None
        counted = 0
        for model, version, track, predicted, actual, count in pairs:
            self.metrics.count_labelled(model, version, track, predicted, actual, count)
            counted += count
        unmatched = int(unmatched_row[0]) if unmatched_row else 0
        if unmatched:
            self.metrics.unmatched.inc(unmatched)
        return LabelSummary(received, stored, counted, unmatched)


def _check(errors: LabelErrors, what: str) -> None:
    if errors.count:
        raise LabelsRejectedError(
            f"{errors.count} {what} are not labels; nothing was stored", errors=errors.count, details=errors.shown
        )


async def _one_batch(labels: list[Label]) -> Any:
    yield labels


async def _csv_batches(request: Request) -> Any:
    reader = CsvLabelReader()
    pending: list[Label] = []
    async for chunk in request.stream():
        pending += reader.feed(chunk)
        if len(pending) >= 5000:
            yield pending
            pending = []
    pending += reader.finish()
    # Checked before the last batch is handed over, so the transaction is rolled back on any bad line.
    _check(reader.errors, "lines")
    yield pending


async def post_labels(request: Request) -> Response:
    """POST /v1/labels: JSON `[{"request_id", "row", "label"}]` or `text/csv` with those columns."""
    store: LabelStore = request.app.state.label_store
    source = request.query_params.get("source", "api")
    if _SOURCE.fullmatch(source) is None:
        raise LabelsRejectedError("source must be 1-64 characters of A-Za-z0-9._:@/+=-", errors=1, details=[])
    content_type = request.headers.get("content-type", "")
    if is_csv(content_type):
        summary = await store.store(_csv_batches(request), source)
    elif is_json(content_type):
        labels, errors = parse_json_labels(await request.body())
        _check(errors, "items")
        summary = await store.store(_one_batch(labels), source)
    else:
        raise UnsupportedMediaTypeError(f"content type {content_type!r}; send application/json or text/csv")
    return Response(json_bytes(summary.body()), media_type="application/json")

"""Pure parts of the log: request ids, the canonical form and hash of a row's inputs, and table rows."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

import numpy as np
import orjson

from modelpilot.inference.prediction import Prediction, class_labels
from modelpilot.inference.validation import Features

InputsMode: TypeAlias = Literal["hash", "full", "none"]
# Ids a client sends are stored and echoed: bounded, and only characters that need no escaping anywhere.
MAX_REQUEST_ID = 128
REQUEST_ID = re.compile(rf"[A-Za-z0-9._:@/+=-]{{1,{MAX_REQUEST_ID}}}")
_INT4 = 2**31
# The columns a writer copies, in order.
COLUMNS = (
    "request_id", "row", "track", "model", "version", "logged_at",
    "predicted_class", "score", "prediction", "inputs_hash", "inputs",
)  # fmt: skip
TableRow: TypeAlias = tuple[
    str, int, str, str, str, datetime, int | None, float | None, str | None, bytes | None, str | None
]


def valid_request_id(value: str | None) -> str | None:
    """`value` when it is a usable request id (1-128 of `A-Za-z0-9._:@/+=-`), else None."""
    if value is None or len(value) > MAX_REQUEST_ID or REQUEST_ID.fullmatch(value) is None:
        return None
    return value


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the request path hands it over: references only, no per-row work."""

    request_id: str
    features: Features
    prediction: Prediction
    logged_at: float  # time.time()
    model: str
    version: str
    track: str


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def canonical_inputs(features: Features) -> list[bytes]:
    """Each row's inputs as compact JSON: `{"input": [...]}` for a tensor, `{column: value, ...}` (columns
    sorted) for a table. The same decoded row always gives the same bytes, so its sha256 identifies it."""
    if isinstance(features, dict):
        names = sorted(features)
        columns = [features[name].tolist() for name in names]
        return [_dumps(dict(zip(names, values, strict=True))) for values in zip(*columns, strict=True)]
    array = features if features.flags.c_contiguous else np.ascontiguousarray(features)
    if array.dtype.kind in "fiub":
        return [b'{"input":' + _dumps(row) + b"}" for row in array]
    return [_dumps({"input": row}) for row in array.tolist()]


def hash_inputs(canonical: list[bytes]) -> list[bytes]:
    """sha256 of each canonical row."""
    return [hashlib.sha256(row).digest() for row in canonical]


def _row_outputs(prediction: Prediction) -> tuple[list[Any], list[Any], list[Any]]:
    """Per row: the predicted class (an int, for classifiers), its score, and otherwise the output as JSON."""
    rows = prediction.rows
    nothing: list[Any] = [None] * rows
    classes = prediction.classes if prediction.labelled else class_labels(prediction.values)
    if classes is not None and classes.dtype.kind in "iub" and classes.shape == (rows,):
        as_ints = classes.astype(np.int64)
        if rows == 0 or (int(as_ints.min()) >= -_INT4 and int(as_ints.max()) < _INT4):
            values = prediction.values
            scores = nothing
            if isinstance(values, np.ndarray) and values.ndim == 2 and values.shape[1] > 1 and values.dtype.kind == "f":
                taken = np.take_along_axis(values, as_ints.reshape(-1, 1).astype(np.intp), axis=1)[:, 0]
                scores = taken.astype(np.float64).tolist()
            return as_ints.tolist(), scores, nothing
    return nothing, nothing, _output_json(prediction.values, rows)


def _output_json(values: Any, rows: int) -> list[Any]:
    if hasattr(values, "to_dict") and hasattr(values, "columns"):
        return [_dumps(record).decode() for record in values.to_dict(orient="records")]
    if hasattr(values, "to_numpy"):
        values = values.to_numpy()
    if isinstance(values, np.ndarray) and values.ndim >= 1 and len(values) == rows:
        if values.dtype.kind in "fiub":
            contiguous = np.ascontiguousarray(values)
            return [_dumps(row).decode() for row in contiguous]
        return [_dumps(row).decode() for row in values.tolist()]
    if isinstance(values, list) and len(values) == rows:
        return [_dumps(row).decode() for row in values]
    return [None] * rows


def _row_columns(request: LoggedRequest, inputs: InputsMode) -> tuple[list[Any], ...]:
    """Per row: predicted class, score, output JSON, inputs hash, inputs JSON (None where not stored)."""
    classes, scores, outputs = _row_outputs(request.prediction)
    rows = request.prediction.rows
    hashes: list[Any] = [None] * rows
    stored: list[Any] = [None] * rows
    if inputs != "none":
        canonical = canonical_inputs(request.features)
        if len(canonical) == rows:  # a table without columns has no inputs to hash
            hashes = hash_inputs(canonical)
            if inputs == "full":
                stored = [row.decode() for row in canonical]
    return classes, scores, outputs, hashes, stored


def table_rows(request: LoggedRequest, inputs: InputsMode) -> list[TableRow]:
    """The `predictions` rows of one request, in `COLUMNS` order."""
    classes, scores, outputs, hashes, stored = _row_columns(request, inputs)
    logged_at = datetime.fromtimestamp(request.logged_at, UTC)
    fixed = (request.track, request.model, request.version, logged_at)
    return [
        (request.request_id, index, *fixed, classes[index], scores[index], outputs[index], hashes[index], stored[index])
        for index in range(request.prediction.rows)
    ]


# COPY's text format: tab-separated, `\N` for NULL, backslash escapes for the four characters below.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"


def _copy_value(value: str | None) -> str:
    return _NULL if value is None else value.translate(_COPY_ESCAPES)


def copy_text(request: LoggedRequest, inputs: InputsMode) -> str:
    """The request's rows as lines of COPY text format, in `COLUMNS` order (what `table_rows` holds).

    One string per request and a handful of list passes: the writer's per-row cost is a few string joins,
    not a Python call per column value.
    """
    classes, scores, outputs, hashes, stored = _row_columns(request, inputs)
    logged_at = datetime.fromtimestamp(request.logged_at, UTC).isoformat()
    head = _copy_value(request.request_id) + "\t"
    fixed = "\t".join(_copy_value(v) for v in (request.track, request.model, request.version, logged_at))
    columns = zip(
        [_NULL if c is None else str(c) for c in classes],
        [_NULL if s is None else repr(s) for s in scores],
        [_copy_value(o) for o in outputs],
        [_NULL if h is None else "\\\\x" + h.hex() for h in hashes],
        [_copy_value(x) for x in stored],
        strict=True,
    )
    return "".join(
        f"{head}{index}\t{fixed}\t{c}\t{s}\t{o}\t{h}\t{x}\n" for index, (c, s, o, h, x) in enumerate(columns)
    )

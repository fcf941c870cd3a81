"""Model outputs: row slicing for the batcher and the shapes each protocol answers with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_MAX_CLASS_LABELS = 32


@dataclass
class Prediction:
    """Row-aligned outputs of one forward pass: raw `values`, per-row `classes`, optional `gates`.

    With `labelled` false the classes are not computed yet: `labels()` derives them from the values when
    an answer needs them, and the metrics derive them for many passes at once (see `ServingMetrics.fold`),
    so a request whose answer has no classes never pays for them.
    """

    values: Any
    rows: int
    classes: np.ndarray[Any, Any] | None = None
    gates: np.ndarray[Any, Any] | None = None
    labelled: bool = True

    def labels(self) -> np.ndarray[Any, Any] | None:
        """The per-row classes, computed from the values the first time when not given."""
        if not self.labelled:
            self.classes, self.labelled = class_labels(self.values), True
        return self.classes

    def take(self, start: int, stop: int) -> Prediction:
        """Rows `start:stop`; raises `NotRowAlignedError` when the output has no row axis."""
        return Prediction(
            values=slice_rows(self.values, start, stop, self.rows),
            rows=stop - start,
            classes=None if self.classes is None else self.classes[start:stop],
            gates=None if self.gates is None else self.gates[start:stop],
            labelled=self.labelled,
        )


class NotRowAlignedError(ValueError):
    """The model returned something that cannot be split back into per-request rows."""


def slice_rows(values: Any, start: int, stop: int, rows: int) -> Any:
    """Rows `start:stop` of an array, list, DataFrame or Series holding `rows` rows."""
    if start == 0 and stop == rows:
        return values
    if isinstance(values, (np.ndarray, list)) and len(values) == rows:
        return values[start:stop]
    iloc = getattr(values, "iloc", None)
    if iloc is not None and len(values) == rows:
        return iloc[start:stop]
    raise NotRowAlignedError(f"output of type {type(values).__name__} has no row axis of length {rows}")


def class_labels(values: Any) -> np.ndarray[Any, Any] | None:
    """Per-row class: argmax of a 2-D score matrix, or the value of a 1-D integer/string/bool output."""
    array: np.ndarray[Any, Any] | None = values if isinstance(values, np.ndarray) else None
    if array is None and hasattr(values, "to_numpy"):
        array = np.asarray(values.to_numpy())
    if array is None or array.ndim == 0:
        return None
    if array.ndim == 2 and array.shape[1] > 1 and array.dtype.kind in "fiu":
        return np.asarray(np.argmax(array, axis=1))
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 1 and array.dtype.kind in "iubUO":
        return array
    return None


def bounded_label(value: Any, seen: set[str]) -> str:
    """A metric label for a class value; past the first few distinct values everything is `other`."""
    label = str(value.item() if isinstance(value, np.generic) else value)
    if label in seen:
        return label
    if len(seen) < _MAX_CLASS_LABELS:
        seen.add(label)
        return label
    return "other"


def mlflow_predictions(values: Any, records: bool = False) -> Any:
    """What `mlflow models serve` puts under `predictions`: DataFrames as records, arrays as nested lists."""
    if records and isinstance(values, np.ndarray) and values.ndim == 2:
        keys = [str(i) for i in range(values.shape[1])]
        return [dict(zip(keys, row, strict=True)) for row in values.tolist()]
    if hasattr(values, "to_dict") and hasattr(values, "columns"):
        return values.to_dict(orient="records")
    if hasattr(values, "to_numpy"):
        return values.to_numpy()
    if isinstance(values, dict):
        return {str(k): mlflow_predictions(v) for k, v in values.items()}
    return values


def csv_header(values: Any) -> list[str]:
    """Column names for CSV output of this kind of prediction."""
    if hasattr(values, "columns"):
        return [str(c) for c in values.columns]
    array = np.asarray(values)
    if array.ndim == 2:
        return [f"output_{i}" for i in range(array.shape[1])]
    return ["prediction"]


def csv_rows(values: Any) -> list[list[Any]]:
    """Prediction rows as CSV cells."""
    if hasattr(values, "to_numpy"):
        values = values.to_numpy()
    array = np.asarray(values)
    if array.ndim == 1:
        return [[v] for v in array.tolist()]
    return [list(row) for row in array.reshape(array.shape[0], -1).tolist()]

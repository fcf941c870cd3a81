"""An uploaded CSV as a prediction request: a header row of feature names, then one row per prediction.

Cells that read as numbers become numbers, `true`/`false` become booleans, empty cells become null and
anything else stays text; the prediction server checks the values against the model's signature and says
which field is wrong. The rows are sent as records keyed by the header, so a model with a column signature
gets its columns by name and a tensor model its features in the file's column order.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

MAX_ROWS = 1000
MAX_BYTES = 4 * 1024 * 1024


class CsvInputError(ValueError):
    """The CSV cannot be read as a table of rows; the message says where."""


@dataclass(frozen=True)
class CsvTable:
    """The header and the rows as read (text, for showing them) and as sent (typed records)."""

    columns: list[str]
    cells: list[list[str]]
    records: list[dict[str, Any]]


def read_csv(text: str, max_rows: int = MAX_ROWS) -> CsvTable:
    """The table of a CSV document with a header row; CsvInputError when it is not one."""
    if not text.strip():
        raise CsvInputError("the file is empty")
    try:
        rows = [
            row for row in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if row and any(cell.strip() for cell in row)
        ]
    except csv.Error as error:
        raise CsvInputError(f"not a CSV file: {error}") from None
    if len(rows) < 2:
        raise CsvInputError("expected a header row and at least one row of values")
    columns = [name.strip() for name in rows[0]]
    if any(not name for name in columns):
        raise CsvInputError(f"column {columns.index('') + 1} of the header has no name")
    duplicates = sorted({name for name in columns if columns.count(name) > 1})
    if duplicates:
        raise CsvInputError(f"the header names {duplicates[0]!r} more than once")
    body = rows[1:]
    if len(body) > max_rows:
        raise CsvInputError(f"{len(body)} rows; at most {max_rows} at a time")
    for number, row in enumerate(body, start=2):
        if len(row) != len(columns):
            raise CsvInputError(f"line {number} has {len(row)} values, the header {len(columns)}")
    records = [{name: cell_value(cell) for name, cell in zip(columns, row, strict=True)} for row in body]
    return CsvTable(columns=columns, cells=body, records=records)


def cell_value(cell: str) -> Any:
    """A CSV cell as the JSON value a person meant: int, float, bool, null or text."""
    text = cell.strip()
    if text == "":
        return None
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return cell
    return number if math.isfinite(number) else cell

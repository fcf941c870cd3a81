"""Labels as clients send them: a JSON list or a CSV upload, read into `Label`s with per-line errors.

Parsing is pure and incremental: a CSV upload is fed as it arrives, a line at most `MAX_LINE_BYTES` long is
held at a time, and every bad line is counted (the first `SHOWN_ERRORS` are described), never raised.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelpilot.inference.errors import MalformedBodyError
from modelpilot.inference.predlog.records import valid_request_id

# Where delayed labels are posted (the label store's route).
LABELS_PATH = "/v1/labels"
MAX_LINE_BYTES = 1024
SHOWN_ERRORS = 20
COLUMNS = ("request_id", "row", "label")
_INT = re.compile(r"-?[0-9]{1,10}")
_INT4 = 2**31
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Label:
    """The true class of row `row` of the request `request_id`."""

    request_id: str
    row: int
    label: int


@dataclass
class LabelErrors:
    """Bad lines or items: how many, and the first few with what is wrong."""

    count: int = 0
    shown: list[dict[str, Any]] = field(default_factory=list)

    def add(self, where: str, position: int, message: str) -> None:
        """Count one error at line/item `position`."""
        self.count += 1
        if len(self.shown) < SHOWN_ERRORS:
            self.shown.append({where: position, "message": message})


def label_of(request_id: Any, row: Any, label: Any) -> Label | str:
    """A `Label` from three values, or what is wrong with them."""
    if not isinstance(request_id, str) or valid_request_id(request_id) is None:
        return "request_id must be 1-128 characters of A-Za-z0-9._:@/+=-"
    if type(row) is not int or not 0 <= row < _INT4:
        return "row must be an integer from 0 to 2147483647"
    if type(label) is not int or not -_INT4 <= label < _INT4:
        return "label must be a 32-bit integer"
    return Label(request_id, row, label)


def parse_json_labels(body: bytes) -> tuple[list[Label], LabelErrors]:
    """`[{"request_id": …, "row": 0, "label": 1}, …]` → labels and the items that are wrong."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedBodyError(f"body is not JSON: {error}") from None
    if not isinstance(document, list):
        raise MalformedBodyError('expected a JSON list of {"request_id", "row", "label"} objects')
    labels: list[Label] = []
    errors = LabelErrors()
    for index, item in enumerate(document):
        if not isinstance(item, dict):
            errors.add("item", index, "expected an object with request_id, row and label")
            continue
        parsed = label_of(item.get("request_id"), item.get("row"), item.get("label"))
        if isinstance(parsed, str):
            errors.add("item", index, parsed)
        else:
            labels.append(parsed)
    return labels, errors


class CsvLabelReader:
    """An incremental reader of `request_id,row,label` CSV (a header line first; other columns ignored)."""

    def __init__(self) -> None:
        self.errors = LabelErrors()
        self.lines = 0
        self._partial = bytearray()
        self._skipping = False  # inside a line that was too long, until its end
        self._positions: tuple[int, int, int] | None = None
        self._width = 0

    def feed(self, data: bytes) -> list[Label]:
        """The labels of the complete lines in `data` (and what came before it)."""
        labels: list[Label] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._hold(data[start:])
                return labels
            piece = data[start:end]
            start = end + 1
            if self._skipping:
                self._skipping = False
                self._partial.clear()
                continue
            if self._partial:
                piece = bytes(self._partial) + piece
                self._partial.clear()
            if len(piece) > MAX_LINE_BYTES:
                self.lines += 1
                self.errors.add("line", self.lines, f"line longer than {MAX_LINE_BYTES} bytes")
                continue
            self._line(piece, labels)

    def finish(self) -> list[Label]:
        """The label of a last line without a line end; refuses an upload without a header."""
        labels: list[Label] = []
        if self._partial and not self._skipping:
            self._line(bytes(self._partial), labels)
        self._partial.clear()
        if self._positions is None:
            raise MalformedBodyError("empty upload: expected a header line request_id,row,label")
        return labels

    def _hold(self, rest: bytes) -> None:
        if self._skipping:
            return
        if len(self._partial) + len(rest) > MAX_LINE_BYTES:
            self.lines += 1
            self.errors.add("line", self.lines, f"line longer than {MAX_LINE_BYTES} bytes")
            self._partial.clear()
            self._skipping = True
            return
        self._partial += rest

    def _line(self, raw: bytes, labels: list[Label]) -> None:
        self.lines += 1
        if self.lines == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            self._bad_line("not UTF-8")
            return
        if not text.strip():
            return
        try:
            cells = next(csv.reader([text]))
        except (csv.Error, StopIteration) as error:
            self._bad_line(f"not CSV: {error}")
            return
        if self._positions is None:
            self._read_header(cells)
            return
        if len(cells) != self._width:
            self.errors.add("line", self.lines, f"expected {self._width} fields, found {len(cells)}")
            return
        request_id, row, label = (cells[i].strip() for i in self._positions)
        parsed = label_of(request_id, _integer(row), _integer(label))
        if isinstance(parsed, str):
            self.errors.add("line", self.lines, parsed)
        else:
            labels.append(parsed)

    def _bad_line(self, message: str) -> None:
        if self._positions is None:
            raise MalformedBodyError(f"header line: {message}")
        self.errors.add("line", self.lines, message)

    def _read_header(self, cells: list[str]) -> None:
        names = [cell.strip().lower() for cell in cells]
        missing = [name for name in COLUMNS if name not in names]
        if missing:
            raise MalformedBodyError(f"the header line must name the columns request_id,row,label; missing {missing}")
        self._positions = (names.index("request_id"), names.index("row"), names.index("label"))
        self._width = len(names)


def _integer(text: str) -> int | str:
    return int(text) if _INT.fullmatch(text) else text

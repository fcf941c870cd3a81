"""CSV tables read piece by piece: bounded text in memory at a time, each piece validated into features.

A CSV body is cut into pieces of about `piece_bytes` at line ends that lie outside quoted fields, and
each piece is parsed and validated on its own. So the Python objects of a parse (a list per row, a
string per cell: 15 to 30 times the text) exist for one piece at a time, not for the whole upload, and
what stays is the validated arrays.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from modelpilot.inference.collector import collector_paused
from modelpilot.inference.errors import InvalidInputError, MalformedBodyError, PayloadTooLargeError
from modelpilot.inference.runners import concat_features
from modelpilot.inference.validation import Features, Validator, row_count, take_rows

PIECE_BYTES = 1024 * 1024
# A single CSV line (the header included) may not be longer: a line is parsed as one piece.
MAX_LINE_BYTES = 16 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


def end_of_complete_lines(buffer: bytes | bytearray, start: int = 0) -> int:
    """The offset just past the last line end of `buffer[start:]` outside a quoted field, or `start`.

    `buffer[start:]` starts outside a quoted field; a line end is inside one when an odd number of
    quote characters comes before it (an escaped quote is two of them, so it does not change the count).
    """
    end = buffer.rfind(b"\n", start) + 1
    if end <= start:
        return start
    quotes = buffer.count(b'"', start, end)
    while quotes % 2 and end > start:
        previous = max(buffer.rfind(b"\n", start, end - 1) + 1, start)
        quotes -= buffer.count(b'"', previous, end)
        end = previous
    return end


class CsvTableReader:
    """Feeds of bytes in, validated features out, one piece of whole lines at a time.

    `feed` returns the pieces that are complete; `finish` parses what is left and checks the table
    had a header and rows. Errors name the row in the whole table, not in the piece.
    """

    def __init__(
        self,
        validator: Validator,
        *,
        where: str = "csv",
        piece_bytes: int = PIECE_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.validator = validator
        self.where = where
        self.piece_bytes = piece_bytes
        self.max_line_bytes = max_line_bytes
        self.header: list[str] | None = None
        self.rows = 0
        self._pending = bytearray()
        self._first = True

    def feed(self, data: bytes) -> list[Features]:
        """Add bytes; return the features of every piece of whole lines now complete."""
        self._pending += data
        if len(self._pending) < self.piece_bytes:
            return []
        cut = end_of_complete_lines(self._pending)
        if cut == 0:
            if len(self._pending) > self.max_line_bytes:
                limit = self.max_line_bytes
                raise PayloadTooLargeError(f"a CSV line is longer than {limit} bytes", limit=limit)
            return []
        piece = bytes(self._pending[:cut])
        del self._pending[:cut]
        features = self._parse(piece)
        return [] if features is None else [features]

    def finish(self) -> list[Features]:
        """Parse what is left; raise when the table had no header or no rows."""
        piece, self._pending = bytes(self._pending), bytearray()
        features = self._parse(piece) if piece else None
        if self.header is None:
            raise InvalidInputError(self.where, "empty CSV; expected a header row")
        if self.rows == 0:
            raise InvalidInputError(self.where, "no rows below the header")
        return [] if features is None else [features]

    def _parse(self, piece: bytes) -> Features | None:
        if self._first:
            self._first = False
            piece = piece.removeprefix(_BOM)
        try:
            text = piece.decode("utf-8")
        except UnicodeDecodeError as error:
            raise MalformedBodyError(f"CSV is not UTF-8 (after row {self.rows}): {error.reason}") from None
        reader = csv.reader(io.StringIO(text))
        try:
            with collector_paused():  # a list per row: see `collector`
                if self.header is None:
                    header = next(reader, None)
                    if header is None:
                        return None
                    self.header = [name.strip() for name in header]
                rows = [row for row in reader if row]
        except csv.Error as error:
            raise MalformedBodyError(f"CSV after row {self.rows}: {error}") from None
        if not rows:
            return None
        try:
            features = self.validator.from_text_rows(self.header, rows, self.where)
        except InvalidInputError as error:
            raise error.shifted(self.rows) from None
        self.rows += len(rows)
        return features


def read_csv_table(body: bytes, validator: Validator, where: str = "csv") -> Iterator[Features]:
    """A whole CSV body as validated pieces, parsed one piece at a time."""
    reader = CsvTableReader(validator, where=where)
    for start in range(0, len(body), PIECE_BYTES):
        yield from reader.feed(body[start : start + PIECE_BYTES])
    yield from reader.finish()


def rechunk(pieces: Iterable[Features], rows: int) -> Iterator[Features]:
    """Features regrouped into runs of exactly `rows` rows (the last may be shorter)."""
    held: list[Features] = []
    count = 0
    for piece in pieces:
        start, size = 0, row_count(piece)
        while start < size:
            take = min(rows - count, size - start)
            held.append(take_rows(piece, start, start + take))
            count += take
            start += take
            if count == rows:
                yield concat_features(held)
                held, count = [], 0
    if held:
        yield concat_features(held)

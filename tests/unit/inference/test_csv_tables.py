"""CSV read piece by piece: cuts only at line ends outside quotes, rows named in the whole table."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelpilot.inference.csv_tables import CsvTableReader, end_of_complete_lines, read_csv_table, rechunk
from modelpilot.inference.errors import InvalidInputError, MalformedBodyError, PayloadTooLargeError
from modelpilot.inference.runners import concat_features
from modelpilot.inference.schema import Column, column_schema, tensor_schema
from modelpilot.inference.validation import Validator

TENSOR = Validator(tensor_schema((2,)), as_matrix=True)
TEXT = Validator(column_schema([Column("n", "float", np.float64), Column("s", "str", object)]), as_matrix=False)


def test_a_piece_ends_at_the_last_line_end_outside_quotes() -> None:
    assert end_of_complete_lines(b"a,b\n1,2\n3,") == 8
    assert end_of_complete_lines(b'a,b\n1,"x\ny"\n2,"z\n') == 12
    assert end_of_complete_lines(b'1,"a ""quoted""\nline"\n') == 22
    assert end_of_complete_lines(b'1,"open\n') == 0
    assert end_of_complete_lines(b"no line end") == 0


@settings(max_examples=60, deadline=None)
@given(
    cells=st.lists(st.lists(st.sampled_from(["1", "x", 'q"q', "a\nb", ",", ""]), min_size=2, max_size=2), max_size=30),
    piece=st.integers(1, 40),
)
def test_pieces_of_any_size_give_the_rows_of_the_whole_table(cells: list[list[str]], piece: int) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["n", "s"], *[[str(i), text] for i, (_, text) in enumerate(cells)]])
    body = buffer.getvalue().encode()
    reader = CsvTableReader(TEXT, piece_bytes=piece)
    parts = []
    for start in range(0, len(body), piece):
        parts += reader.feed(body[start : start + piece])
    if not cells:
        with pytest.raises(InvalidInputError):
            reader.finish()
        return
    parts += reader.finish()
    features = concat_features(parts)
    assert isinstance(features, dict)
    assert features["s"].tolist() == [text for _, text in cells]
    assert features["n"].tolist() == list(range(len(cells)))


def _read_in_pieces(body: bytes, piece: int) -> None:
    reader = CsvTableReader(TENSOR, piece_bytes=piece)
    for start in range(0, len(body), piece):
        reader.feed(body[start : start + piece])
    reader.finish()


def test_errors_name_the_row_in_the_whole_table() -> None:
    body = b"a,b\n" + b"1,2\n" * 50 + b"1,x\n"
    with pytest.raises(InvalidInputError) as caught:
        _read_in_pieces(body, 16)
    assert (caught.value.field, caught.value.reason, caught.value.row) == ("b", "row 50: 'x' is not a number", 50)
    with pytest.raises(InvalidInputError) as caught:
        list(read_csv_table(b"a,b\n" + b"1,2\n" * 3 + b"1\n", TENSOR))
    assert caught.value.field == "csv[3]"


def test_bad_bytes_and_endless_lines_are_client_errors() -> None:
    with pytest.raises(MalformedBodyError):
        list(read_csv_table(b"a,b\n1,\xff\n", TENSOR))
    reader = CsvTableReader(TENSOR, piece_bytes=8, max_line_bytes=64)
    with pytest.raises(PayloadTooLargeError):
        reader.feed(b"a" * 100)
    with pytest.raises(InvalidInputError, match="empty CSV"):
        list(read_csv_table(b"", TENSOR))
    assert concat_features(list(read_csv_table(b"\xef\xbb\xbfa,b\n1,2\n", TENSOR))).tolist() == [[1, 2]]  # type: ignore[union-attr]


def test_rechunk_gives_runs_of_exactly_the_asked_rows() -> None:
    pieces = [np.arange(n * 2, dtype=np.float32).reshape(n, 2) for n in (3, 1, 6, 2)]
    runs = list(rechunk(pieces, 4))
    assert [len(r) for r in runs] == [4, 4, 4]
    np.testing.assert_array_equal(np.concatenate(runs), np.concatenate(pieces))  # type: ignore[arg-type]

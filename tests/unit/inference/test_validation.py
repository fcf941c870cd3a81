"""Validation and conversion of request data against tensor and column signatures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelpilot.inference.errors import InvalidInputError
from modelpilot.inference.schema import Column, column_schema, tensor_schema
from modelpilot.inference.validation import Validator

TENSOR = Validator(tensor_schema((3,)), as_matrix=True)
NUMERIC_COLUMNS = Validator(
    column_schema([Column("a", "float", np.float64), Column("b", "float", np.float64), Column("n", "int", np.int64)]),
    as_matrix=True,
)
MIXED = Validator(
    column_schema(
        [
            Column("amount", "float", np.float64),
            Column("items", "int", np.int64),
            Column("country", "str", object),
            Column("vip", "bool", np.bool_),
            Column("note", "str", object, required=False),
        ]
    ),
    as_matrix=False,
)


def _error(call: Any, *args: Any) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        call(*args)
    return caught.value


def test_rows_become_a_float32_matrix_for_a_tensor_signature() -> None:
    matrix = TENSOR.from_rows([[1, 2.5, 3], [4, 5, 6]], ["x", "y", "z"])
    assert isinstance(matrix, np.ndarray)
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, [[1, 2.5, 3], [4, 5, 6]])


def test_columns_in_another_order_are_put_in_signature_order() -> None:
    matrix = NUMERIC_COLUMNS.from_rows([[3, 1.0, 2.0]], ["n", "a", "b"])
    np.testing.assert_array_equal(matrix, [[1.0, 2.0, 3.0]])


def test_records_and_columns_give_the_same_matrix_as_rows() -> None:
    rows = NUMERIC_COLUMNS.from_rows([[1.0, 2.0, 3], [4.0, 5.0, 6]], ["a", "b", "n"])
    records = NUMERIC_COLUMNS.from_records([{"n": 3, "b": 2.0, "a": 1.0}, {"a": 4.0, "b": 5.0, "n": 6}])
    columns = NUMERIC_COLUMNS.from_columns({"b": [2.0, 5.0], "a": [1.0, 4.0], "n": [3, 6]})
    np.testing.assert_array_equal(rows, records)
    np.testing.assert_array_equal(rows, columns)


@pytest.mark.parametrize(
    ("rows", "columns", "field", "reason"),
    [
        ([[1.0, "x", 3]], ["a", "b", "n"], "b", "expected a number, got str"),
        ([[1.0, None, 3]], ["a", "b", "n"], "b", "expected a number, got null"),
        ([[1.0, 2.0]], ["a", "b", "n"], "data[0]", "expected a row of 3 values"),
        ([[1.0, 2.0, 3]], ["a", "b"], "n", "column missing"),
        ([[1.0, 2.0, 3, 4]], ["a", "b", "n", "zzz"], "zzz", "unknown column"),
        ([[1.0, 2.0, 3]], ["a", "a", "n"], "a", "column given twice"),
        ([[1.0, 1e39, 3]], ["a", "b", "n"], "b", "NaN or infinity"),
    ],
)
def test_bad_rows_name_the_field_and_the_reason(rows: Any, columns: Any, field: str, reason: str) -> None:
    error = _error(NUMERIC_COLUMNS.from_rows, rows, columns)
    assert error.field == field
    assert reason in error.reason


def test_tensor_fields_are_named_by_position() -> None:
    error = _error(TENSOR.from_rows, [[1.0, 2.0, 3.0], [1.0, True, "7"]])
    assert error.field == "input[2]"
    assert "row 1" in error.reason


def test_nan_is_accepted_when_allowed() -> None:
    lenient = Validator(tensor_schema((2,)), as_matrix=True, allow_nan=True)
    matrix = lenient.from_text_rows(["a", "b"], [["1", "nan"]])
    assert np.isnan(matrix[0, 1])  # type: ignore[index]
    assert "NaN" in _error(TENSOR.from_text_rows, ["a", "b", "c"], [["1", "nan", "2"]]).reason


def test_records_missing_or_extra_keys_are_refused() -> None:
    assert _error(NUMERIC_COLUMNS.from_records, [{"a": 1.0, "b": 2.0}]).field == "n"
    assert _error(NUMERIC_COLUMNS.from_records, [{"a": 1.0, "b": 2.0, "n": 1, "x": 0}]).field == "x"
    assert _error(NUMERIC_COLUMNS.from_records, [{"a": 1.0, "b": 2.0, "n": 1}, 5]).field == "dataframe_records[1]"


def test_columns_of_unequal_length_are_refused() -> None:
    error = _error(NUMERIC_COLUMNS.from_columns, {"a": [1.0, 2.0], "b": [1.0], "n": [1, 2]})
    assert error.field == "b"


def test_mixed_types_keep_one_typed_array_per_column() -> None:
    features = MIXED.from_records([{"amount": 10, "items": 2, "country": "DE", "vip": True}])
    assert isinstance(features, dict)
    assert features["amount"].dtype == np.float64
    assert features["items"].dtype == np.int64
    assert features["country"].tolist() == ["DE"]
    assert features["vip"].dtype == np.bool_
    assert "note" not in features  # optional and absent


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"amount": "ten", "items": 2, "country": "DE", "vip": True}, "amount"),
        ({"amount": 1.0, "items": 2.5, "country": "DE", "vip": True}, "items"),
        ({"amount": 1.0, "items": 2, "country": 7, "vip": True}, "country"),
        ({"amount": 1.0, "items": 2, "country": "DE", "vip": "yes"}, "vip"),
        ({"amount": 1.0, "items": 2, "vip": True}, "country"),
    ],
)
def test_mixed_type_errors_name_the_column(record: dict[str, Any], field: str) -> None:
    assert _error(MIXED.from_records, [record]).field == field


def test_csv_cells_are_parsed_per_column_type() -> None:
    features = MIXED.from_text_rows(["vip", "country", "items", "amount"], [["true", "FR", "3", "12.5"]])
    assert isinstance(features, dict)
    assert features["vip"].tolist() == [True]
    assert features["items"].tolist() == [3]
    assert features["amount"].tolist() == [12.5]
    error = _error(TENSOR.from_text_rows, ["a", "b", "c"], [["1", "2", "x"]])
    assert (error.field, error.reason) == ("c", "row 0: 'x' is not a number")


def test_flat_tensor_data_is_reshaped_and_checked() -> None:
    matrix = TENSOR.from_tensor([1, 2, 3, 4, 5, 6], [2, 3])
    assert matrix.shape == (2, 3)  # type: ignore[union-attr]
    assert "do not fill shape" in _error(TENSOR.from_tensor, [1, 2, 3, 4, 5], [2, 3]).reason
    assert "does not match" in _error(TENSOR.from_tensor, [1, 2, 3, 4], [2, 2]).reason


def test_multi_dimensional_tensor_rows_keep_their_shape() -> None:
    images = Validator(tensor_schema((2, 2)), as_matrix=True)
    batch = images.from_tensor([[[1, 2], [3, 4]]])
    assert batch.shape == (1, 2, 2)  # type: ignore[union-attr]
    assert "does not match" in _error(images.from_tensor, [[[1, 2, 3], [3, 4, 5]]]).reason


@pytest.mark.parametrize(
    ("columns", "field", "reason"),
    [
        ([["a"], "b", "n"], "columns", "column names must be strings, got list"),
        ([{"a": 1}, "b", "n"], "columns", "column names must be strings, got dict"),
        ([None, "b", "n"], "columns", "column names must be strings, got null"),
        ([True, "b", "n"], "columns", "column names must be strings, got bool"),
        ([0, "0", "n"], "0", "column given twice"),
    ],
)
def test_column_names_that_are_not_names_are_refused(columns: list[Any], field: str, reason: str) -> None:
    for validator in (NUMERIC_COLUMNS, MIXED):
        error = _error(validator.from_rows, [[1.0, 2.0, 3]], columns)
        assert (error.field, error.reason) == (field, reason)


def test_integer_columns_refuse_values_their_type_cannot_hold() -> None:
    small = Validator(column_schema([Column("n", "int", np.int32)]), as_matrix=False)
    assert small.from_records([{"n": 2**31 - 1}])["n"].tolist() == [2**31 - 1]
    error = _error(small.from_records, [{"n": 1}, {"n": 2**40}])
    assert (error.field, error.reason) == (
        "n",
        "row 1: 1099511627776 is out of range for int32 [-2147483648, 2147483647]",
    )
    wide = Validator(column_schema([Column("n", "int", np.int64)]), as_matrix=False)
    assert "out of range for int64" in _error(wide.from_records, [{"n": 2**63}]).reason
    assert "out of range for int32" in _error(small.from_text_rows, ["n"], [["99999999999"]]).reason


def test_integer_tensors_refuse_fractions_and_values_out_of_range() -> None:
    pixels = Validator(tensor_schema((2,), np.uint8), as_matrix=True)
    assert pixels.from_rows([[0, 255]]).tolist() == [[0, 255]]  # type: ignore[union-attr]
    assert pixels.from_text_rows(["a", "b"], [["3", "4.0"]]).tolist() == [[3, 4]]  # type: ignore[union-attr]
    error = _error(pixels.from_rows, [[0, 255], [256, 1]])
    assert (error.field, error.reason) == ("input[0]", "row 1: 256 is out of range for uint8 [0, 255]")
    assert _error(pixels.from_rows, [[0, -1]]).field == "input[1]"
    assert "not a whole number" in _error(pixels.from_rows, [[0, 1.5]]).reason
    assert "not a whole number" in _error(pixels.from_text_rows, ["a", "b"], [["1", "nan"]]).reason


def test_tensor_shapes_are_checked_before_anything_is_multiplied() -> None:
    assert "does not match" in _error(TENSOR.from_tensor, [], [2**32, 2**32]).reason
    assert "does not match" in _error(TENSOR.from_tensor, [], [2**62, 2**62, 3]).reason
    assert "negative dimension" in _error(TENSOR.from_tensor, [1, 2, 3], [-1, 3]).reason
    assert "do not fill shape" in _error(TENSOR.from_tensor, [], [2**62, 3]).reason
    assert "no rows" in _error(TENSOR.from_tensor, [], [0, 3]).reason
    assert "expected a list of values" in _error(TENSOR.from_tensor, 5, [1, 3]).reason


def test_rows_of_a_multi_dimensional_tensor_get_its_row_shape() -> None:
    images = Validator(tensor_schema((2, 2)), as_matrix=True)
    assert images.from_rows([[1, 2, 3, 4]]).shape == (1, 2, 2)  # type: ignore[union-attr]
    assert images.from_text_rows(["a", "b", "c", "d"], [["1", "2", "3", "4"]]).shape == (1, 2, 2)  # type: ignore[union-attr]


def test_columns_of_any_type_keep_list_values_as_objects() -> None:
    tagged = Validator(column_schema([Column("tags", "any", object)]), as_matrix=False)
    features = tagged.from_columns({"tags": [[1, 2], [3, 4]]})
    assert isinstance(features, dict)
    assert features["tags"].tolist() == [[1, 2], [3, 4]]


def test_records_with_other_columns_than_the_first_are_refused() -> None:
    base = {"amount": 1.0, "items": 2, "country": "DE", "vip": True}
    error = _error(MIXED.from_records, [{**base, "note": "a"}, base])
    assert (error.field, error.reason) == ("dataframe_records[1]", "has other columns than the first record")
    assert _error(MIXED.from_records, [{"amount": 1.0, "items": 2, "country": "DE", "zzz": 1}]).field == "zzz"
    features = MIXED.from_records([{**base, "note": "a"}, {**base, "note": "b"}])
    assert isinstance(features, dict)
    assert features["note"].tolist() == ["a", "b"]


def test_long_tables_convert_in_runs_with_the_same_result() -> None:
    from modelpilot.inference.validation import ROWS_PER_CONVERSION, rows_to_array

    rows = [[float(i), float(-i), 0.5] for i in range(ROWS_PER_CONVERSION * 2 + 5)]
    assert TENSOR.from_rows(rows).tolist() == np.array(rows, dtype=np.float32).tolist()  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="another shape"):
        rows_to_array([*rows[:ROWS_PER_CONVERSION], *[[1.0]] * 3], np.float32)
    ragged = [*rows[: ROWS_PER_CONVERSION + 1], [1.0], *rows[:ROWS_PER_CONVERSION]]
    assert _error(TENSOR.from_rows, ragged).field == f"data[{ROWS_PER_CONVERSION + 1}]"


def test_float_rows_convert_cell_by_cell_exactly_as_numpy_does() -> None:
    from modelpilot.inference.validation import ROWS_PER_CONVERSION, rows_to_float_matrix

    rng = np.random.default_rng(7)
    rows = (rng.normal(scale=1e3, size=(ROWS_PER_CONVERSION + 9, 3))).tolist()
    rows[1] = [True, 2, 1e-45]  # a boolean, an integer, a float32 subnormal: numbers as numpy takes them
    got = rows_to_float_matrix(rows, np.float32, 3)
    assert got is not None
    assert (got.shape, got.dtype) == ((len(rows), 3), np.float32)
    assert np.array_equal(got, np.array(rows, dtype=np.float32))
    assert rows_to_float_matrix([[1.0, 2.0], [1.0]], np.float32, 2) is None  # ragged
    assert rows_to_float_matrix([[1.0, 2.0], (1.0, 2.0)], np.float32, 2) is None  # not a list
    # null is NaN, as for numpy (the caller refuses it unless NaN is allowed); an object cell raises.
    with_null = rows_to_float_matrix([[1.0, None]], np.float32, 2)
    assert with_null is not None
    assert np.isnan(with_null[0, 1])
    with pytest.raises(TypeError):
        rows_to_float_matrix([[1.0, {"a": 1}]], np.float32, 2)


def test_null_in_a_long_numbers_only_table_is_refused_or_nan_when_allowed() -> None:
    rows: list[list[float | None]] = [[float(i), 1.0] for i in range(40)]
    rows[17] = [None, 1.0]
    strict = Validator(tensor_schema((2,)), as_matrix=True)
    error = _error(lambda r: strict.from_rows(r, numbers_only=True), rows)
    assert error.reason == "row 17: expected a number, got null"
    lenient = Validator(tensor_schema((2,)), as_matrix=True, allow_nan=True)
    matrix = lenient.from_rows(rows, numbers_only=True)
    assert isinstance(matrix, np.ndarray)
    assert np.isnan(matrix[17, 0])
    assert matrix[16, 0] == 16.0

"""Protocol bodies (MLflow, v1, Open Inference Protocol v2, CSV) into validated features."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from modelpilot.inference.decoding import decode_invocations, decode_v1_predict, decode_v2_infer, no_strings_within
from modelpilot.inference.errors import InvalidInputError, MalformedBodyError, UnsupportedMediaTypeError
from modelpilot.inference.schema import Column, column_schema, tensor_schema
from modelpilot.inference.validation import Validator

TENSOR = Validator(tensor_schema((2,)), as_matrix=True)
COLUMNS = Validator(column_schema([Column("a", "float", np.float64), Column("s", "str", object)]), as_matrix=False)
EXPECTED = np.array([[1, 2], [3, 4]], dtype=np.float32)


def _json(document: object) -> bytes:
    return orjson.dumps(document)


@pytest.mark.parametrize(
    "document",
    [
        {"dataframe_split": {"columns": ["x", "y"], "data": [[1, 2], [3, 4]]}},
        {"dataframe_split": {"data": [[1, 2], [3, 4]], "index": [0, 1]}},
        {"dataframe_records": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]},
        {"instances": [[1, 2], [3, 4]]},
        {"inputs": [[1, 2], [3, 4]]},
        {"inputs": {"x": [1, 3], "y": [2, 4]}},
    ],
)
def test_every_mlflow_json_form_gives_the_same_tensor(document: object) -> None:
    decoded = decode_invocations(_json(document), "application/json", TENSOR)
    np.testing.assert_array_equal(decoded.features, EXPECTED)


def test_mlflow_csv_body_is_read_with_its_header() -> None:
    decoded = decode_invocations(b"x,y\n1,2\n3,4\n", "text/csv; charset=utf-8", TENSOR)
    np.testing.assert_array_equal(decoded.features, EXPECTED)


def test_mlflow_params_are_passed_through() -> None:
    decoded = decode_invocations(_json({"instances": [[1, 2]], "params": {"k": 1}}), "application/json", TENSOR)
    assert decoded.params == {"k": 1}


@pytest.mark.parametrize(
    ("body", "content_type", "error", "field"),
    [
        (b"{not json", "application/json", MalformedBodyError, None),
        (b"", "application/json", MalformedBodyError, None),
        (b"[1, 2]", "application/json", InvalidInputError, "body"),
        (_json({"data": [[1, 2]]}), "application/json", InvalidInputError, "body"),
        (_json({"instances": [[1, 2]], "inputs": [[1, 2]]}), "application/json", InvalidInputError, "body"),
        (_json({"instances": [[1, 2]], "extra": 1}), "application/json", InvalidInputError, "extra"),
        (_json({"dataframe_split": [[1, 2]]}), "application/json", InvalidInputError, "dataframe_split"),
        (b"x,y\n1,2", "application/xml", UnsupportedMediaTypeError, None),
    ],
)
def test_malformed_mlflow_bodies_are_client_errors(
    body: bytes, content_type: str, error: type[Exception], field: str | None
) -> None:
    with pytest.raises(error) as caught:
        decode_invocations(body, content_type, TENSOR)
    if field is not None:
        assert isinstance(caught.value, InvalidInputError)
        assert caught.value.field == field


def test_v1_accepts_records_columns_instances_and_gates_flag() -> None:
    records = decode_v1_predict(_json({"records": [{"a": 1.5, "s": "x"}], "return_gates": True}), COLUMNS)
    columns = decode_v1_predict(_json({"columns": {"a": [1.5], "s": ["x"]}}), COLUMNS)
    assert records.want_gates is True
    assert isinstance(records.features, dict)
    assert isinstance(columns.features, dict)
    assert records.features["s"].tolist() == columns.features["s"].tolist() == ["x"]
    bare_list = decode_v1_predict(_json([[1, 2], [3, 4]]), TENSOR)
    np.testing.assert_array_equal(bare_list.features, EXPECTED)
    with pytest.raises(InvalidInputError) as caught:
        decode_v1_predict(_json({"records": [], "return_gates": "yes"}), COLUMNS)
    assert caught.value.field in {"records", "return_gates"}


def test_v2_tensor_input_uses_its_shape() -> None:
    body = {"id": "r1", "inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    decoded = decode_v2_infer(_json(body), TENSOR)
    np.testing.assert_array_equal(decoded.features, EXPECTED)
    assert decoded.extra == {"id": "r1"}


def test_v2_column_inputs_are_one_tensor_per_column() -> None:
    body = {
        "inputs": [
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
            {"name": "s", "shape": [2, 1], "datatype": "BYTES", "data": [["p"], ["q"]]},
        ]
    }
    decoded = decode_v2_infer(_json(body), COLUMNS)
    assert isinstance(decoded.features, dict)
    assert decoded.features["s"].tolist() == ["p", "q"]


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ([{"name": "input", "shape": [2, 2], "datatype": "BYTES", "data": [1, 2, 3, 4]}], "inputs[0].datatype"),
        ([{"name": "input", "shape": [2, 2], "data": [1, 2, 3, 4]}], "inputs[0].datatype"),
        ([{"name": "input", "shape": "2x2", "datatype": "FP32", "data": [1, 2, 3, 4]}], "inputs[0].shape"),
        ([], "inputs"),
    ],
)
def test_v2_bad_tensors_name_the_field(inputs: object, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        decode_v2_infer(_json({"inputs": inputs}), TENSOR)
    assert caught.value.field == field


MANY = [[float(i), float(-i)] for i in range(20)]  # enough rows for the quote count to pay


def _many(*rows: object) -> list[object]:
    return [*MANY, *rows]


@pytest.mark.parametrize(
    ("document", "numbers_only"),
    [
        ({"instances": _many([1, 2.5], [3, -4e2])}, True),
        ({"dataframe_split": {"columns": ["x", "y"], "data": _many()}}, True),
        ({"instances": [[1, 2], [3, 4]]}, False),  # a few rows: not worth counting
        ({"instances": _many([1, "2"])}, False),  # a string inside the rows
        ({"dataframe_split": {"columns": ['x"', "y"], "data": _many()}}, False),  # escaped quote: maybe
    ],
)
def test_rows_are_known_to_hold_no_strings_only_from_an_exact_quote_count(document: object, numbers_only: bool) -> None:
    body = _json(document)
    payload = orjson.loads(body)
    rows = payload["dataframe_split"]["data"] if "dataframe_split" in payload else payload["instances"]
    assert no_strings_within(body, payload, rows) is numbers_only


def test_a_duplicate_key_means_maybe() -> None:
    body = b'{"instances": ' + _json(MANY) + b', "instances": ' + _json(MANY) + b"}"
    payload = orjson.loads(body)
    assert no_strings_within(body, payload, payload["instances"]) is False


@pytest.mark.parametrize(
    ("rows", "field", "reason"),
    [
        (_many([1, "2"]), "input[1]", "row 20: expected a number, got str"),
        (_many([3, None]), "input[1]", "row 20: expected a number, got null"),
        (_many([3, 1e39]), "input[1]", "row 20: NaN or infinity is not allowed"),
        (_many([3, {"a": 1}]), "input[1]", "row 20: expected a number, got dict"),
        (_many([3]), "instances[20]", "expected a row of 2 values, got 1 values"),
    ],
)
def test_the_fast_float_path_refuses_what_the_checking_path_refuses(rows: object, field: str, reason: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        decode_invocations(_json({"instances": rows}), "application/json", TENSOR)
    assert (caught.value.field, caught.value.reason) == (field, reason)


def test_nulls_are_nan_when_allowed_on_both_paths() -> None:
    lenient = Validator(tensor_schema((2,)), as_matrix=True, allow_nan=True)
    fast = _json({"instances": _many([1, None])})
    checked = _json({"instances": _many([1, None]), "params": {"note": 'a "quoted" word'}})
    assert no_strings_within(fast, orjson.loads(fast), orjson.loads(fast)["instances"]) is True
    assert no_strings_within(checked, orjson.loads(checked), orjson.loads(checked)["instances"]) is False
    for body in (fast, checked):
        features = decode_invocations(body, "application/json", lenient).features
        assert isinstance(features, np.ndarray)
        assert features.dtype == np.float32
        assert np.isnan(features[20, 1])
        assert features[:20].tolist() == MANY


def test_v2_input_names_are_strings_given_once() -> None:
    twice = [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]}] * 2
    with pytest.raises(InvalidInputError) as caught:
        decode_v2_infer(_json({"inputs": twice}), COLUMNS)
    assert (caught.value.field, caught.value.reason) == ("a", "input given twice")
    unnamed = [{"name": ["a"], "shape": [1], "datatype": "FP64", "data": [1.0]}]
    with pytest.raises(InvalidInputError) as caught:
        decode_v2_infer(_json({"inputs": unnamed}), COLUMNS)
    assert caught.value.field == "inputs[0].name"


def test_v2_shape_whose_product_overflows_is_a_client_error() -> None:
    body = {"inputs": [{"name": "input", "shape": [2**32, 2**32], "datatype": "FP32", "data": []}]}
    with pytest.raises(InvalidInputError) as caught:
        decode_v2_infer(_json(body), TENSOR)
    assert "does not match" in caught.value.reason

"""Property-based checks of the decoders and validators: any body is decoded or refused with a 4xx.

Hypothesis builds bodies of every protocol (MLflow JSON columns/rows/records/tensors, CSV, v1, Open
Inference Protocol v2) from parts a client controls: names (strings, integers, lists, objects,
duplicates), values (numbers at and past the limits of each type, strings, nulls, nesting), shapes and
datatypes. Whatever it sends, the answer is features that fit the signature or a `ServingError` with a
4xx status, never another exception (which the edge would answer 500).
"""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelpilot.inference.decoding import DecodedRequest, decode_invocations, decode_v1_predict, decode_v2_infer
from modelpilot.inference.errors import ServingError
from modelpilot.inference.schema import Column, column_schema, tensor_schema
from modelpilot.inference.validation import Validator

VALIDATORS = {
    "tensor": Validator(tensor_schema((3,)), as_matrix=True),
    "tensor-nan": Validator(tensor_schema((3,)), as_matrix=True, allow_nan=True),
    "int-tensor": Validator(tensor_schema((2, 2), np.int32), as_matrix=True),
    "uint-tensor": Validator(tensor_schema((1,), np.uint8), as_matrix=True),
    "numeric-columns": Validator(
        column_schema(
            [Column("a", "float", np.float32), Column("b", "float", np.float64), Column("0", "int", np.int32)]
        ),
        as_matrix=True,
    ),
    "mixed-columns": Validator(
        column_schema(
            [
                Column("amount", "float", np.float64),
                Column("items", "int", np.int64),
                Column("small", "int", np.int32),
                Column("country", "str", object),
                Column("vip", "bool", np.bool_),
                Column("tags", "any", object, required=False),
            ]
        ),
        as_matrix=False,
    ),
}
NAMES = ["a", "b", "0", "amount", "items", "small", "country", "vip", "tags", "x"]

# Numbers at the edges of every type a column or tensor can have, and past them.
EDGE_INTS = [0, 1, -1, 2**7, 2**8, 2**15, 2**31 - 1, 2**31, -(2**31) - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]
EDGE_FLOATS = [0.5, -0.0, 1e39, -1e39, 3.4e38, 1e308, 2.0**31, 2.0**63, 65504.0, float("nan"), float("inf")]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from(EDGE_INTS + [-v for v in EDGE_INTS if v <= 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(EDGE_FLOATS),
    st.text(max_size=8),
    st.sampled_from(NAMES),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=4), inner),
    max_leaves=30,
)
numbers = st.one_of(
    st.integers(-(2**63), 2**64 - 1), st.sampled_from(EDGE_INTS), st.floats(), st.sampled_from(EDGE_FLOATS)
)
cells = st.one_of(numbers, numbers, numbers, scalars, json_values)
names = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(NAMES),
    st.integers(-2, 3),
    st.text(max_size=4),
    st.lists(st.sampled_from(NAMES), max_size=2),
    st.dictionaries(st.sampled_from(NAMES), st.integers(-5, 5), max_size=1),
    st.none(),
    st.booleans(),
)


@st.composite
def rows(draw: st.DrawFn) -> list[Any]:
    """Rows that are mostly tables of numbers of a plausible width, sometimes ragged or not rows at all."""
    width = draw(st.integers(0, 5))
    count = draw(st.integers(0, 20))
    table: list[Any] = [draw(st.lists(cells, min_size=width, max_size=width)) for _ in range(count)]
    if draw(st.booleans()) and table:
        index = draw(st.integers(0, len(table) - 1))
        table[index] = draw(json_values)
    return table


@st.composite
def records(draw: st.DrawFn) -> list[Any]:
    """Objects keyed by known (and unknown) column names."""
    keys = draw(st.lists(st.sampled_from(NAMES) | st.text(max_size=3), max_size=7, unique=True))
    count = draw(st.integers(0, 6))
    return [{k: draw(cells) for k in keys if draw(st.integers(0, 9))} for _ in range(count)]


@st.composite
def column_mapping(draw: st.DrawFn) -> dict[str, Any]:
    """`{name: [values…]}` with lengths that mostly agree."""
    keys = draw(st.lists(st.sampled_from(NAMES) | st.text(max_size=3), max_size=7, unique=True))
    length = draw(st.integers(0, 5))
    values = st.lists(cells, min_size=length, max_size=length)
    return {k: draw(values) if draw(st.integers(0, 6)) else draw(json_values) for k in keys}


@st.composite
def mlflow_documents(draw: st.DrawFn) -> Any:
    """Bodies of `POST /invocations` in each of MLflow's JSON forms, plus stray fields and params."""
    form = draw(st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs", "inputs-columns"]))
    if form == "dataframe_split":
        split: dict[str, Any] = {"data": draw(rows())}
        if draw(st.booleans()):
            split["columns"] = draw(st.lists(names, max_size=6))
        document: dict[str, Any] = {"dataframe_split": split}
    elif form == "dataframe_records":
        document = {"dataframe_records": draw(records())}
    elif form == "inputs-columns":
        document = {"inputs": draw(column_mapping())}
    else:
        document = {form: draw(rows() | records())}
    if draw(st.integers(0, 3)) == 0:
        document["params"] = draw(json_values)
    if draw(st.integers(0, 7)) == 0:
        document[draw(st.sampled_from(["instances", "extra", "inputs"]))] = draw(json_values)
    return document


@st.composite
def v1_documents(draw: st.DrawFn) -> Any:
    """Bodies of `POST /v1/models/{name}/predict`."""
    form = draw(st.sampled_from(["records", "columns", "instances", "bare"]))
    if form == "bare":
        return draw(rows() | records())
    body = {"records": records, "columns": column_mapping, "instances": rows}[form]
    document: dict[str, Any] = {form: draw(body())}
    if draw(st.booleans()):
        document["return_gates"] = draw(st.booleans() | scalars)
    return document


@st.composite
def v2_tensors(draw: st.DrawFn) -> dict[str, Any]:
    """One Open Inference Protocol input tensor: shapes that lie, datatypes of every kind, flat or nested data."""
    data = draw(st.lists(cells, max_size=12) | rows())
    if draw(st.booleans()):
        shape: Any = [len(data)] if draw(st.booleans()) else [max(1, len(data) // 2), 2]
    else:
        dims = st.integers(-2, 4) | st.sampled_from([2**32, 2**62, 2**63 - 1])
        shape = draw(st.lists(dims, max_size=4))
    if draw(st.integers(0, 9)) == 0:
        shape = draw(json_values)
    tensor: dict[str, Any] = {
        "name": draw(names),
        "shape": shape,
        "datatype": draw(st.sampled_from(["FP32", "FP64", "INT32", "INT8", "UINT8", "BOOL", "BYTES", "fp16", "X"])),
        "data": data if draw(st.integers(0, 9)) else draw(json_values),
    }
    for key in draw(st.lists(st.sampled_from(["name", "shape", "datatype", "data"]), max_size=1)):
        del tensor[key]
    return tensor


@st.composite
def v2_documents(draw: st.DrawFn) -> Any:
    """Bodies of `POST /v2/models/{name}/infer`."""
    document: dict[str, Any] = {"inputs": draw(st.lists(v2_tensors(), max_size=4))}
    if draw(st.booleans()):
        document["id"] = draw(scalars)
    if draw(st.booleans()):
        document["parameters"] = draw(json_values)
    return document


@st.composite
def csv_bodies(draw: st.DrawFn) -> bytes:
    """CSV text with a header: numbers, quoted fields with separators and newlines, short and long rows."""
    header = draw(st.lists(st.sampled_from(NAMES) | st.text(max_size=3), max_size=6))
    text_cells = st.one_of(
        numbers.map(str), st.text(max_size=6), st.sampled_from(["nan", "inf", "true", "1e999", '"', "\n", ""])
    )
    table = draw(st.lists(st.lists(text_cells, max_size=7), max_size=8))
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *table])
    return buffer.getvalue().encode()


def _decoded_or_client_error(decode: Any, *args: Any) -> DecodedRequest | None:
    status = 200
    try:
        decoded: DecodedRequest = decode(*args)
    except ServingError as error:
        status = error.status
    assert 400 <= status < 500 or status == 200, status
    return decoded if status == 200 else None


def _check_features(decoded: DecodedRequest | None, validator: Validator) -> None:
    """Accepted features fit the signature: dtype, row shape, finiteness, and one length for every column."""
    if decoded is None:
        return
    features = decoded.features
    schema = validator.schema
    if isinstance(features, np.ndarray):
        assert validator.as_matrix
        assert features.dtype == validator.dtype
        row_shape = schema.row_shape if schema.is_tensor else (schema.width,)
        assert features.shape[1:] == row_shape
        assert features.shape[0] >= 1
        if features.dtype.kind == "f" and not validator.allow_nan:
            assert np.isfinite(features).all()
        return
    assert not validator.as_matrix
    by_name = {c.name: c for c in schema.columns}
    assert {c.name for c in schema.columns if c.required} <= set(features) <= set(by_name)
    assert len({len(v) for v in features.values()}) == 1
    for name, array in features.items():
        assert array.ndim == 1
        assert array.dtype == np.dtype(by_name[name].dtype)


PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(document=mlflow_documents(), validator=st.sampled_from(sorted(VALIDATORS)))
def test_any_mlflow_json_body_is_decoded_or_refused_with_a_4xx(document: Any, validator: str) -> None:
    body = orjson.dumps(document)
    decoded = _decoded_or_client_error(decode_invocations, body, "application/json", VALIDATORS[validator])
    _check_features(decoded, VALIDATORS[validator])


@PROPERTY
@given(document=v1_documents(), validator=st.sampled_from(sorted(VALIDATORS)))
def test_any_v1_body_is_decoded_or_refused_with_a_4xx(document: Any, validator: str) -> None:
    decoded = _decoded_or_client_error(decode_v1_predict, orjson.dumps(document), VALIDATORS[validator])
    _check_features(decoded, VALIDATORS[validator])


@PROPERTY
@given(document=v2_documents(), validator=st.sampled_from(sorted(VALIDATORS)))
def test_any_v2_body_is_decoded_or_refused_with_a_4xx(document: Any, validator: str) -> None:
    decoded = _decoded_or_client_error(decode_v2_infer, orjson.dumps(document), VALIDATORS[validator])
    _check_features(decoded, VALIDATORS[validator])


@PROPERTY
@given(body=csv_bodies(), validator=st.sampled_from(sorted(VALIDATORS)))
def test_any_csv_body_is_decoded_or_refused_with_a_4xx(body: bytes, validator: str) -> None:
    decoded = _decoded_or_client_error(decode_invocations, body, "text/csv", VALIDATORS[validator])
    _check_features(decoded, VALIDATORS[validator])


@PROPERTY
@given(columns=st.lists(names, min_size=1, max_size=6), validator=st.sampled_from(sorted(VALIDATORS)))
def test_any_column_names_are_accepted_or_refused_with_a_4xx(columns: list[Any], validator: str) -> None:
    """Names of any JSON type, repeated or colliding once made strings (`0` and `"0"`), in a row that fits."""
    document = {"dataframe_split": {"columns": columns, "data": [[1] * len(columns)] * 2}}
    decoded = _decoded_or_client_error(
        decode_invocations, orjson.dumps(document), "application/json", VALIDATORS[validator]
    )
    _check_features(decoded, VALIDATORS[validator])


@PROPERTY
@given(
    shape=st.lists(st.integers(-1, 5) | st.sampled_from([0, 2**31, 2**32, 2**62, 2**63 - 1]), max_size=5),
    size=st.integers(0, 12),
    validator=st.sampled_from(sorted(VALIDATORS)),
)
def test_any_v2_shape_is_accepted_or_refused_with_a_4xx(shape: list[int], size: int, validator: str) -> None:
    """Shapes whose product overflows 64 bits, negative or zero dimensions, too many dimensions."""
    document = {"inputs": [{"name": "a", "shape": shape, "datatype": "FP32", "data": [1.0] * size}]}
    decoded = _decoded_or_client_error(decode_v2_infer, orjson.dumps(document), VALIDATORS[validator])
    _check_features(decoded, VALIDATORS[validator])


@PROPERTY
@given(body=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_any_bytes_are_decoded_or_refused_with_a_4xx(body: bytes) -> None:
    for validator in VALIDATORS.values():
        _decoded_or_client_error(decode_invocations, body, "application/json", validator)
        _decoded_or_client_error(decode_invocations, body, "text/csv", validator)
        _decoded_or_client_error(decode_v1_predict, body, validator)
        _decoded_or_client_error(decode_v2_infer, body, validator)


@PROPERTY
@given(values=st.lists(st.integers(-(2**63), 2**64 - 1) | st.sampled_from(EDGE_INTS), min_size=1, max_size=6))
def test_integers_reach_the_model_unchanged_or_are_refused(values: list[int]) -> None:
    """An integer column or tensor never wraps: a value its type cannot hold is a 422 naming it."""
    mixed = VALIDATORS["mixed-columns"]
    records = [{"amount": 1.0, "items": v, "small": v, "country": "x", "vip": False} for v in values]
    decoded = _decoded_or_client_error(decode_invocations, orjson.dumps({"dataframe_records": records}), "", mixed)
    fits = all(-(2**31) <= v < 2**31 for v in values)
    assert (decoded is not None) == fits
    if decoded is not None:
        assert isinstance(decoded.features, dict)
        assert decoded.features["small"].tolist() == values
        assert decoded.features["items"].tolist() == values
    tensor = VALIDATORS["uint-tensor"]
    body = orjson.dumps({"instances": [[v] for v in values]})
    decoded = _decoded_or_client_error(decode_invocations, body, "", tensor)
    assert (decoded is not None) == all(0 <= v < 256 for v in values)
    if decoded is not None:
        assert isinstance(decoded.features, np.ndarray)
        assert decoded.features.reshape(-1).tolist() == values


@pytest.mark.parametrize("depth", [100, 1000])
def test_deeply_nested_params_are_not_recursed_into(depth: int) -> None:
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    rows_ = orjson.dumps([[0.5, 1.5, 2.5]] * 16)
    body = b'{"instances": ' + rows_ + b', "params": ' + nested + b"}"
    decoded = decode_invocations(body, "application/json", VALIDATORS["tensor"])
    assert isinstance(decoded.features, np.ndarray)
    assert decoded.features.shape == (16, 3)

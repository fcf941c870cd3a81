"""The Open Inference Protocol's binary tensor data extension: framing, datatypes, and a parser fuzzed with hypothesis.

A binary body is a JSON header of `Inference-Header-Content-Length` bytes and then each input's raw bytes.
Every length in it is the client's to choose: the header length, each `binary_data_size`, each BYTES
element's length prefix. Whatever they say, the answer is features that fit the signature or a 4xx, and
nothing is read past the body's end or allocated beyond what the body holds.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelpilot.inference.decoding import decode_v2_infer
from modelpilot.inference.errors import InvalidInputError, MalformedBodyError
from modelpilot.inference.oip import FIXED_DATATYPES, binary_tensor, output_metadata, output_tensor, split_body
from modelpilot.inference.schema import Column, column_schema, tensor_schema
from modelpilot.inference.validation import Validator
from tests.unit.inference.test_decoding_properties import (
    PROPERTY,
    VALIDATORS,
    _check_features,
    _decoded_or_client_error,
)

TENSOR = Validator(tensor_schema((3,)), as_matrix=True)
MIXED = Validator(
    column_schema(
        [
            Column("amount", "float", np.float64),
            Column("items", "int", np.int64),
            Column("country", "str", object),
            Column("vip", "bool", np.bool_),
        ]
    ),
    as_matrix=False,
)


def binary_body(inputs: list[tuple[dict[str, Any], bytes | None]], **document: Any) -> tuple[bytes, str]:
    """(body, header length) as tritonclient builds them: each input with raw bytes gets `binary_data_size`."""
    tensors = []
    for tensor, raw in inputs:
        sized = {"binary_data_size": len(raw)} if raw is not None else None
        tensors.append(tensor if sized is None else {**tensor, "parameters": {**tensor.get("parameters", {}), **sized}})
    head = orjson.dumps({"inputs": tensors, **document})
    return head + b"".join(raw for _, raw in inputs if raw is not None), str(len(head))


def bytes_elements(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def test_a_binary_fp32_tensor_reaches_the_model_as_sent() -> None:
    rows = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    body, length = binary_body([({"name": "x", "shape": [2, 3], "datatype": "FP32"}, rows.tobytes())])
    decoded = decode_v2_infer(body, TENSOR, length)
    assert isinstance(decoded.features, np.ndarray)
    assert decoded.features.dtype == np.float32
    assert decoded.features.flags.writeable
    np.testing.assert_array_equal(decoded.features, rows)


@pytest.mark.parametrize("datatype", sorted(FIXED_DATATYPES))
def test_every_fixed_width_datatype_is_read_little_endian(datatype: str) -> None:
    values = np.array([[1, 0, 1], [0, 1, 1]]).astype(FIXED_DATATYPES[datatype])
    raw = values.astype(FIXED_DATATYPES[datatype]).tobytes()
    decoded = binary_tensor(memoryview(raw), datatype, [2, 3], "inputs[0]")
    assert isinstance(decoded, np.ndarray)
    np.testing.assert_array_equal(decoded.astype(np.float64), values.astype(np.float64))
    assert decoded.dtype.isnative


def test_binary_and_json_columns_mix_in_one_request() -> None:
    body, length = binary_body(
        [
            ({"name": "amount", "shape": [2], "datatype": "FP64"}, np.array([500.0, 5.0]).tobytes()),
            ({"name": "items", "shape": [2, 1], "datatype": "INT64"}, np.array([[1], [3]], dtype="<i8").tobytes()),
            ({"name": "country", "shape": [2], "datatype": "BYTES"}, bytes_elements([b"FR", "Zürich".encode()])),
            ({"name": "vip", "shape": [2], "datatype": "BOOL", "data": [False, True]}, None),
        ]
    )
    decoded = decode_v2_infer(body, MIXED, length)
    assert isinstance(decoded.features, dict)
    assert decoded.features["amount"].tolist() == [500.0, 5.0]
    assert decoded.features["items"].tolist() == [1, 3]
    assert decoded.features["country"].tolist() == ["FR", "Zürich"]
    assert decoded.features["vip"].tolist() == [False, True]


def test_requested_outputs_and_their_encoding() -> None:
    document = {
        "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "output", "parameters": {"binary_data": False}}, {"name": "gates"}],
    }
    decoded = decode_v2_infer(orjson.dumps(document), TENSOR)
    assert [(o.name, o.binary) for o in decoded.outputs or ()] == [("output", False), ("gates", True)]
    assert decoded.want_gates


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"length": "99999"}, MalformedBodyError, "only"),
        ({"length": "-1"}, MalformedBodyError, "byte count"),
        ({"length": "1_0"}, MalformedBodyError, "byte count"),
        ({"size": 11}, MalformedBodyError, "not shape [2, 3] x 4 bytes"),
        ({"size": 10**12}, MalformedBodyError, "goes beyond the body"),
        ({"size": -4}, MalformedBodyError, "byte count"),
        ({"size": True}, MalformedBodyError, "byte count"),
        ({"extra": b"\0" * 4}, MalformedBodyError, "belong to no input"),
        ({"datatype": "BF16"}, MalformedBodyError, "not an Open Inference Protocol datatype"),
        ({"datatype": "BYTES"}, InvalidInputError, "BYTES for a numeric input"),
        ({"data": [1.0]}, InvalidInputError, "given together"),
        ({"shape": [2, -3]}, InvalidInputError, "negative dimension"),
    ],
)
def test_malformed_binary_bodies_are_refused_with_a_clear_4xx(
    change: dict[str, Any], error: type[Exception], words: str
) -> None:
    raw = np.zeros((2, 3), dtype=np.float32).tobytes()
    tensor: dict[str, Any] = {
        "name": "x",
        "shape": change.get("shape", [2, 3]),
        "datatype": change.get("datatype", "FP32"),
        "parameters": {"binary_data_size": change.get("size", len(raw))},
    }
    if "data" in change:
        tensor["data"] = change["data"]
    head = orjson.dumps({"inputs": [tensor]})
    body = head + raw + change.get("extra", b"")
    with pytest.raises(error, match=".*".join(map(_escape, words.split("*")))) as raised:
        decode_v2_infer(body, TENSOR, change.get("length", str(len(head))))
    assert 400 <= raised.value.status < 500  # type: ignore[attr-defined]


def _escape(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"\x09\0\0\0ab\0\0\0\0", "says 9 bytes, only 6 are left"),
        (b"\x01\0", "2 bytes cannot hold 2 BYTES elements"),
        (bytes_elements([b"a"]) + b"\0\0", "cannot hold 2 BYTES elements"),
        (bytes_elements([b"a", b"b"]) + b"x", "1 bytes are left after"),
        (bytes_elements([b"\xff", b"b"]), "not UTF-8"),
    ],
)
def test_bytes_elements_whose_lengths_lie_are_refused(raw: bytes, words: str) -> None:
    with pytest.raises((MalformedBodyError, InvalidInputError), match=words):
        binary_tensor(memoryview(raw), "BYTES", [2], "inputs[0]")


def test_output_tensors_in_json_and_in_binary() -> None:
    logits = np.array([[0.5, -1.0], [2.0, 3.0]], dtype=np.float32)
    as_json = output_tensor(logits, "output")
    assert as_json.raw is None
    assert (as_json.header["datatype"], as_json.header["shape"]) == ("FP32", [2, 2])
    binary = output_tensor(logits, "output", binary=True)
    assert binary.header["parameters"] == {"binary_data_size": 16}
    assert binary.raw == logits.astype("<f4").tobytes()
    labels = output_tensor(np.array(["ok", "review"]), "output", binary=True)
    assert labels.header["datatype"] == "BYTES"
    assert labels.raw == bytes_elements([b"ok", b"review"])
    assert output_metadata(logits, "output") == {"name": "output", "datatype": "FP32", "shape": [-1, 2]}


def test_split_body_takes_the_header_without_copying_the_rest() -> None:
    head, rest = split_body(b'{"a":1}xyz', "7")
    assert (head, bytes(rest)) == (b'{"a":1}', b"xyz")
    assert split_body(b"{}", None)[0] == b"{}"


# Hypothesis: binary bodies built from parts that lie.

datatypes = st.sampled_from([*FIXED_DATATYPES, "BYTES", "BYTES", "BF16", "fp32", "X", ""])
dims = st.integers(-1, 4) | st.sampled_from([2**31, 2**32, 2**62])


@st.composite
def binary_inputs(draw: st.DrawFn) -> tuple[dict[str, Any], bytes | None]:
    """One input: a tensor whose raw bytes mostly fit its shape and datatype, sometimes not at all."""
    shape = draw(st.lists(dims, min_size=0, max_size=3))
    datatype = draw(datatypes)
    name = draw(st.sampled_from(["x", "amount", "items", "country", "vip", "a", "b", "0"]))
    tensor: dict[str, Any] = {"name": name, "shape": shape, "datatype": datatype}
    count = 1
    for d in shape:
        count *= max(d, 0)
    if draw(st.integers(0, 4)) == 0:
        tensor["data"] = draw(st.lists(st.floats() | st.integers(-3, 3) | st.text(max_size=3), max_size=6))
        return tensor, None
    if datatype == "BYTES" and count <= 16:
        items = draw(st.lists(st.binary(max_size=6), min_size=count, max_size=count))
        raw = bytes_elements(items)
    elif datatype.upper() in FIXED_DATATYPES and count <= 16:
        raw = draw(st.binary(min_size=count * FIXED_DATATYPES[datatype.upper()].itemsize, max_size=128))
        raw = raw[: count * FIXED_DATATYPES[datatype.upper()].itemsize]
    else:
        raw = draw(st.binary(max_size=64))
    if draw(st.integers(0, 5)) == 0:  # cut or pad the bytes
        raw = raw[: draw(st.integers(0, len(raw)))] + draw(st.binary(max_size=3))
    return tensor, raw


@st.composite
def binary_bodies(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """Whole bodies: header lengths and binary_data_size values that sometimes do not match the bytes."""
    inputs = draw(st.lists(binary_inputs(), min_size=1, max_size=4))
    document: dict[str, Any] = {}
    if draw(st.booleans()):
        document["parameters"] = {"binary_data_output": draw(st.booleans() | st.integers(0, 2))}
    if draw(st.integers(0, 3)) == 0:
        document["outputs"] = draw(
            st.lists(st.fixed_dictionaries({"name": st.sampled_from(["output", "gates", "other"])}), max_size=3)
        )
    body, length = binary_body(inputs, **document)
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return body, str(draw(st.integers(0, len(body) + 8)))
    if choice == 1:
        return body, draw(st.sampled_from(["", " 3", "+3", "0x10", "1e3", "٣", "9" * 30, None]))
    if choice == 2:
        return body + draw(st.binary(min_size=1, max_size=8)), length
    if choice == 3:  # one binary_data_size lies
        tensors = orjson.loads(body[: int(length)])["inputs"]
        sized = [t for t in tensors if "parameters" in t]
        if sized:
            sized[0]["parameters"]["binary_data_size"] = draw(st.integers(-2, 2**40) | st.sampled_from([None, "4"]))
            head = orjson.dumps({"inputs": tensors, **document})
            return head + body[int(length) :], str(len(head))
    return body, length


@PROPERTY
@given(body=binary_bodies(), validator=st.sampled_from(sorted({**VALIDATORS, "mixed": MIXED})))
def test_any_binary_body_is_decoded_or_refused_with_a_4xx(body: tuple[bytes, str | None], validator: str) -> None:
    chosen = {**VALIDATORS, "mixed": MIXED}[validator]
    decoded = _decoded_or_client_error(decode_v2_infer, body[0], chosen, body[1])
    _check_features(decoded, chosen)


@PROPERTY
@given(
    values=st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=3, max_size=30).map(
        lambda v: v[: len(v) // 3 * 3]
    )
)
def test_binary_fp32_rows_arrive_bit_for_bit(values: list[float]) -> None:
    rows = np.array(values, dtype=np.float32).reshape(-1, 3)
    body, length = binary_body([({"name": "x", "shape": list(rows.shape), "datatype": "FP32"}, rows.tobytes())])
    decoded = decode_v2_infer(body, TENSOR, length)
    assert isinstance(decoded.features, np.ndarray)
    assert decoded.features.tobytes() == rows.tobytes()

"""Input schemas from the `signature.inputs` JSON of an MLmodel file, and from MLflow signature objects."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec
from mlflow.types.schema import AnyType, Array, Map, Object, Property

from modelpilot.inference.schema import (
    Column,
    InputSchema,
    UnsupportedSignatureError,
    column_schema,
    schema_from_inputs_json,
    schema_from_signature,
    tensor_schema,
)

# (MLflow schema, the InputSchema it must become)
SUPPORTED: list[tuple[Schema, InputSchema]] = [
    (Schema([TensorSpec(np.dtype("float32"), (-1, 20))]), tensor_schema((20,), np.float32)),
    (Schema([TensorSpec(np.dtype("float64"), (-1,), name="x")]), tensor_schema((1,), np.float64, "x")),
    (Schema([TensorSpec(np.dtype("int64"), (-1, 2, 3), name="img")]), tensor_schema((2, 3), np.int64, "img")),
    (Schema([TensorSpec(np.dtype("uint8"), (-1, 4))]), tensor_schema((4,), np.uint8)),
    (
        Schema(
            [
                ColSpec("double", "a"),
                ColSpec("long", "n", required=False),
                ColSpec("string", "s"),
                ColSpec("boolean", "b"),
                ColSpec("float", "f"),
                ColSpec("integer", "i"),
                ColSpec("binary", "bin"),
                ColSpec("datetime", "dt"),
            ]
        ),
        column_schema(
            [
                Column("a", "float", np.float64),
                Column("n", "int", np.int64, required=False),
                Column("s", "str", object),
                Column("b", "bool", np.bool_),
                Column("f", "float", np.float32),
                Column("i", "int", np.int32),
                Column("bin", "any", object),
                Column("dt", "any", object),
            ]
        ),
    ),
    (
        Schema([ColSpec("double"), ColSpec("double")]),
        column_schema([Column("0", "float", np.float64), Column("1", "float", np.float64)]),
    ),
    (
        Schema(
            [
                ColSpec(Array("double"), "arr"),
                ColSpec(Object([Property("p", "string")]), "obj", required=False),
                ColSpec(Map("long"), "m"),
                ColSpec(AnyType(), "any"),  # type: ignore[no-untyped-call]
            ]
        ),
        column_schema(
            [
                Column("arr", "any", object),
                Column("obj", "any", object, required=False),
                Column("m", "any", object),
                Column("any", "any", object),
            ]
        ),
    ),
]

UNSUPPORTED: list[tuple[Schema, str]] = [
    (Schema([TensorSpec(np.dtype("float32"), (4, 20))]), "no variable batch dimension first"),
    (Schema([TensorSpec(np.dtype("float32"), (-1, -1))]), "variable inner dimension"),
    (
        Schema(
            [TensorSpec(np.dtype("float32"), (-1, 2), name="a"), TensorSpec(np.dtype("float32"), (-1, 2), name="b")]
        ),
        "2 input tensors",
    ),
]


def _inputs_json(schema: Schema) -> str:
    """`signature.inputs` exactly as `mlflow.models.Model.save` writes it into MLmodel."""
    return str(ModelSignature(inputs=schema).to_dict()["inputs"])


@pytest.mark.parametrize(("schema", "expected"), SUPPORTED)
def test_inputs_json_and_signature_objects_give_the_same_schema(schema: Schema, expected: InputSchema) -> None:
    assert schema_from_inputs_json(_inputs_json(schema)) == expected
    assert schema_from_signature(ModelSignature(inputs=schema)) == expected


@pytest.mark.parametrize(("schema", "reason"), UNSUPPORTED)
def test_unservable_signatures_are_refused_with_the_reason(schema: Schema, reason: str) -> None:
    with pytest.raises(UnsupportedSignatureError, match=reason):
        schema_from_inputs_json(_inputs_json(schema))
    with pytest.raises(UnsupportedSignatureError, match=reason):
        schema_from_signature(ModelSignature(inputs=schema))


@pytest.mark.parametrize("signature", [None, ModelSignature(outputs=Schema([ColSpec("double")]))])
def test_a_model_without_input_signature_is_refused(signature: Any) -> None:
    with pytest.raises(UnsupportedSignatureError, match="no input signature"):
        schema_from_signature(signature)
    with pytest.raises(UnsupportedSignatureError, match="no input signature"):
        schema_from_inputs_json(None if signature is None else signature.to_dict()["inputs"])


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        ("not json", "not JSON"),
        ("[]", "not a list of typed input specs"),
        ('{"type": "double"}', "not a list of typed input specs"),
        ('[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}}, {"type": "double"}]', "mixes"),
        ('[{"type": "tensor"}]', "no dtype and shape"),
        ('[{"type": "tensor", "tensor-spec": {"dtype": "no-such-dtype", "shape": [-1, 2]}}]', "invalid"),
        ('[{"type": "decimal", "name": "price"}]', "input price has the unknown type 'decimal'"),
    ],
)
def test_malformed_inputs_json_is_refused_readably(inputs: str, reason: str) -> None:
    with pytest.raises(UnsupportedSignatureError, match=reason):
        schema_from_inputs_json(inputs)


def test_a_scalar_column_without_required_is_required() -> None:
    schema = schema_from_inputs_json(json.dumps([{"type": "double", "name": "a"}]))
    assert schema.columns == (Column("a", "float", np.float64, required=True),)

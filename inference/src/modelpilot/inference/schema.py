"""The model's input signature in the form validation needs, built once at load time."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

ColumnKind = Literal["float", "int", "bool", "str", "any"]

_KIND_OF_MLFLOW_TYPE: dict[str, tuple[ColumnKind, Any]] = {
    "float": ("float", np.float32),
    "double": ("float", np.float64),
    "integer": ("int", np.int32),
    "long": ("int", np.int64),
    "boolean": ("bool", np.bool_),
    "string": ("str", object),
}
# MLflow's scalar column types (`DataType`) and the structured ones; any other type name is not MLflow's.
_SCALAR_TYPES = frozenset({"string", "binary", "boolean", "integer", "long", "float", "double", "datetime"})
_MLFLOW_COLUMN_TYPES = _SCALAR_TYPES | {"array", "object", "map", "sparkml_vector", "any"}
_MAX_FEATURE_LABELS = 512


class UnsupportedSignatureError(ValueError):
    """The model's signature is of a shape this server cannot validate against."""


@dataclass(frozen=True)
class Column:
    """One named input column of a column-based signature."""

    name: str
    kind: ColumnKind
    dtype: Any
    required: bool = True


@dataclass(frozen=True)
class InputSchema:
    """Either a list of columns or one tensor `[-1, *row_shape]`; `features` names what each row holds."""

    columns: tuple[Column, ...] = ()
    tensor_name: str | None = None
    tensor_dtype: Any = None
    row_shape: tuple[int, ...] = ()
    features: tuple[str, ...] = field(default=())

    @property
    def is_tensor(self) -> bool:
        """True for a tensor-based signature."""
        return self.tensor_dtype is not None

    @property
    def width(self) -> int:
        """Values per row: columns, or the product of the tensor's row shape."""
        if self.is_tensor:
            return math.prod(self.row_shape)
        return len(self.columns)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in signature order (empty for tensors)."""
        return tuple(c.name for c in self.columns)

    @property
    def numeric(self) -> bool:
        """True when every input is a number, so a request can become one float matrix."""
        if self.is_tensor:
            return bool(np.dtype(self.tensor_dtype).kind in "fiub")
        return all(c.kind in {"float", "int", "bool"} for c in self.columns)

    def describe(self) -> dict[str, Any]:
        """JSON form for `GET /v1/models/{name}`."""
        if self.is_tensor:
            return {
                "type": "tensor",
                "name": self.tensor_name,
                "dtype": np.dtype(self.tensor_dtype).name,
                "shape": [-1, *self.row_shape],
            }
        return {
            "type": "columns",
            "columns": [{"name": c.name, "type": c.kind, "required": c.required} for c in self.columns],
        }


def tensor_schema(row_shape: tuple[int, ...], dtype: Any = np.float32, name: str | None = None) -> InputSchema:
    """A tensor schema `[-1, *row_shape]`; features are named `<name>[j]` after the flattened position."""
    label = name or "input"
    width = math.prod(row_shape)
    features = tuple(f"{label}[{j}]" for j in range(min(width, _MAX_FEATURE_LABELS)))
    return InputSchema(tensor_name=name, tensor_dtype=np.dtype(dtype), row_shape=row_shape, features=features)


def column_schema(columns: list[Column]) -> InputSchema:
    """A column schema; features are the column names."""
    return InputSchema(columns=tuple(columns), features=tuple(c.name for c in columns[:_MAX_FEATURE_LABELS]))


def schema_from_signature(signature: Any) -> InputSchema:
    """Translate an MLflow `ModelSignature` into an `InputSchema`, or raise `UnsupportedSignatureError`."""
    if signature is None or signature.inputs is None:
        return schema_from_inputs_json(None)
    return schema_from_inputs_json(signature.inputs.to_json())


def schema_from_inputs_json(inputs: str | None) -> InputSchema:
    """The `signature.inputs` JSON of an `MLmodel` file as an `InputSchema`, or `UnsupportedSignatureError`.

    Tensor specs look like `{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 20]}}`,
    column specs like `{"type": "double", "name": "f0", "required": true}`; read as MLflow's `Schema.from_json`
    reads them, without importing mlflow.
    """
    if not inputs:
        raise UnsupportedSignatureError("the model has no input signature; log it with one so inputs can be validated")
    try:
        specs = json.loads(inputs)
    except ValueError as error:
        raise UnsupportedSignatureError(f"the signature's inputs are not JSON: {error}") from error
    if not isinstance(specs, list) or not specs or not all(isinstance(s, dict) and "type" in s for s in specs):
        raise UnsupportedSignatureError("the signature's inputs are not a list of typed input specs")
    tensors = sum(1 for s in specs if s["type"] == "tensor")
    if tensors:
        if tensors != len(specs):
            raise UnsupportedSignatureError("the signature mixes tensor and column inputs")
        if len(specs) != 1:
            raise UnsupportedSignatureError(f"{len(specs)} input tensors; only single-tensor signatures are served")
        return _tensor_spec_schema(specs[0])
    columns = []
    for index, spec in enumerate(specs):
        type_name = spec["type"]
        if not isinstance(type_name, str) or type_name not in _MLFLOW_COLUMN_TYPES:
            raise UnsupportedSignatureError(f"input {spec.get('name') or index} has the unknown type {type_name!r}")
        kind, dtype = _KIND_OF_MLFLOW_TYPE.get(type_name, ("any", object))
        # MLflow defaults `required` to True for scalar types and leaves it unset (falsy) for the others.
        required = spec.get("required", True) if type_name in _SCALAR_TYPES else spec.get("required")
        columns.append(Column(name=spec.get("name") or str(index), kind=kind, dtype=dtype, required=bool(required)))
    return column_schema(columns)


def _tensor_spec_schema(spec: dict[str, Any]) -> InputSchema:
    info = spec.get("tensor-spec")
    if not isinstance(info, dict) or "dtype" not in info or not isinstance(info.get("shape"), list):
        raise UnsupportedSignatureError("the input tensor spec has no dtype and shape")
    try:
        dtype = np.dtype(info["dtype"])
        shape = tuple(int(d) for d in info["shape"])
    except (TypeError, ValueError) as error:
        raise UnsupportedSignatureError(f"the input tensor spec is invalid: {error}") from error
    if not shape or shape[0] != -1:
        raise UnsupportedSignatureError(f"tensor shape {list(shape)} has no variable batch dimension first")
    if any(d < 0 for d in shape[1:]):
        raise UnsupportedSignatureError(f"tensor shape {list(shape)} has a variable inner dimension")
    return tensor_schema(shape[1:] or (1,), dtype, spec.get("name"))

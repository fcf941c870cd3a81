"""The model's input signature in the form validation needs, built once at load time."""

from __future__ import annotations

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
        raise UnsupportedSignatureError("the model has no input signature; log it with one so inputs can be validated")
    inputs = signature.inputs
    if inputs.is_tensor_spec():
        specs = inputs.inputs
        if len(specs) != 1:
            raise UnsupportedSignatureError(f"{len(specs)} input tensors; only single-tensor signatures are served")
        spec = specs[0]
        shape = tuple(int(d) for d in spec.shape)
        if not shape or shape[0] != -1:
            raise UnsupportedSignatureError(f"tensor shape {list(shape)} has no variable batch dimension first")
        if any(d < 0 for d in shape[1:]):
            raise UnsupportedSignatureError(f"tensor shape {list(shape)} has a variable inner dimension")
        return tensor_schema(shape[1:] or (1,), spec.type, spec.name)
    columns = []
    for index, spec in enumerate(inputs.inputs):
        type_name = getattr(spec.type, "name", None)
        kind, dtype = _KIND_OF_MLFLOW_TYPE.get(str(type_name), ("any", object))
        columns.append(Column(name=spec.name or str(index), kind=kind, dtype=dtype, required=bool(spec.required)))
    return column_schema(columns)

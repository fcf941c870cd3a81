"""The Open Inference Protocol's tensor encodings: datatypes, the binary tensor data extension, output tensors.

Binary tensor data (REST): the body is a JSON header of `Inference-Header-Content-Length` bytes followed by
the raw bytes of every input whose `parameters.binary_data_size` says how many are its own, in the order of
`inputs`. Numbers are little-endian in row-major order, BOOL is one byte per value, and BYTES is each
element's 4-byte little-endian length followed by its bytes. Answers use the same layout for the outputs
asked for in binary (`parameters.binary_data_output`, or `binary_data` on a requested output).

Every length the client gives is checked against the bytes actually there before anything is allocated
from it, so a body is never read past its end and nothing larger than the body (bounded by the body
limit) is built from it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelpilot.inference.errors import InvalidInputError, MalformedBodyError

# OIP datatypes with a fixed width, as little-endian numpy types.
FIXED_DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = frozenset({*FIXED_DATATYPES, "BYTES"})
_KIND_PREFIX = {"f": "FP", "i": "INT", "u": "UINT"}
_LENGTH = struct.Struct("<I")
_MAX_HEADER_DIGITS = 20


def datatype_of(dtype: Any) -> str:
    """The OIP datatype of a numpy dtype: BOOL, FP/INT/UINT with the width in bits, or BYTES."""
    kind = np.dtype(dtype)
    if kind.kind == "b":
        return "BOOL"
    prefix = _KIND_PREFIX.get(kind.kind)
    return "BYTES" if prefix is None else f"{prefix}{kind.itemsize * 8}"


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """(JSON header, binary part) of a body; the whole body is the header when no length is given."""
    if header_length is None:
        return body, memoryview(b"")
    value = header_length.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_HEADER_DIGITS):
        raise MalformedBodyError(f"Inference-Header-Content-Length: expected a byte count, got {header_length[:32]!r}")
    length = int(value)
    if length > len(body):
        raise MalformedBodyError(f"Inference-Header-Content-Length is {length} but the body has only {len(body)} bytes")
    view = memoryview(body)
    return body[:length], view[length:]


@dataclass
class BinaryReader:
    """Hands out the binary part of a body to the inputs that claim it, in order; `finish` checks it is used up."""

    data: memoryview
    offset: int = 0

    def take(self, size: Any, where: str) -> memoryview:
        """The next `size` bytes (a client-given `binary_data_size`)."""
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise MalformedBodyError(f"{where}.parameters.binary_data_size: expected a byte count, got {size!r}")
        left = len(self.data) - self.offset
        if size > left:
            raise MalformedBodyError(
                f"{where}: binary_data_size {size} goes beyond the body: {left} bytes of binary data are left"
            )
        part = self.data[self.offset : self.offset + size]
        self.offset += size
        return part

    def finish(self) -> None:
        """Refuse binary bytes that no input claimed."""
        left = len(self.data) - self.offset
        if left:
            raise MalformedBodyError(
                f"{left} bytes after the JSON header belong to no input: the binary_data_size values add up to "
                f"{self.offset} of {len(self.data)}"
            )


def binary_tensor(raw: memoryview, datatype: Any, shape: list[int], where: str) -> np.ndarray[Any, Any] | list[str]:
    """One input's raw bytes as a native-endian array of `shape` (a flat list of strings for BYTES).

    `shape` is a list of non-negative integers (checked by the caller). Lengths that do not match the
    shape and datatype, and unknown datatypes, are the client's error (400): the bytes cannot be framed.
    """
    name = str(datatype).upper()
    count = math.prod(shape)  # Python integers: no wrap-around however large the client's dimensions
    if name == "BYTES":
        return _bytes_elements(raw, count, where)
    dtype = FIXED_DATATYPES.get(name)
    if dtype is None:
        raise MalformedBodyError(
            f"{where}.datatype: {str(datatype)[:32]!r} is not an Open Inference Protocol datatype this server reads "
            f"in binary ({', '.join([*FIXED_DATATYPES, 'BYTES'])})"
        )
    if count * dtype.itemsize != len(raw):
        raise MalformedBodyError(
            f"{where}: binary_data_size {len(raw)} is not shape {shape} x {dtype.itemsize} bytes of {name} "
            f"(= {count * dtype.itemsize})"
        )
    if name == "BOOL":  # any non-zero byte is true; a byte other than 0 and 1 is no valid numpy bool
        array: np.ndarray[Any, Any] = np.frombuffer(raw, dtype=np.uint8) != 0
    else:  # a copy in native byte order: writable (torch warns on read-only arrays), and the body can go
        array = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=True)
    try:
        return array.reshape(shape)
    except ValueError:  # no values, and dimensions whose product is beyond what an array can index
        raise InvalidInputError(f"{where}.shape", f"shape {shape} is too large for an array") from None


def _bytes_elements(raw: memoryview, count: int, where: str) -> list[str]:
    """BYTES elements: a 4-byte little-endian length, then that many bytes, `count` times; as UTF-8 text."""
    if count * _LENGTH.size > len(raw):
        raise MalformedBodyError(f"{where}: {len(raw)} bytes cannot hold {count} BYTES elements")
    elements: list[str] = []
    offset, end = 0, len(raw)
    for index in range(count):
        if offset + _LENGTH.size > end:
            raise MalformedBodyError(f"{where}: the binary data ends inside the length of element {index}")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if length > end - offset:
            raise MalformedBodyError(
                f"{where}: element {index} says {length} bytes, only {end - offset} are left in its binary data"
            )
        try:
            elements.append(str(raw[offset : offset + length], "utf-8"))
        except UnicodeDecodeError:
            raise InvalidInputError(where, f"element {index} is not UTF-8 text") from None
        offset += length
    if offset != end:
        raise MalformedBodyError(f"{where}: {end - offset} bytes are left after its {count} BYTES elements")
    return elements


@dataclass(frozen=True)
class OutputTensor:
    """One output of an answer: its OIP description and, in binary, its bytes."""

    header: dict[str, Any]
    raw: bytes | None = None


def output_tensor(values: Any, name: str, *, binary: bool = False) -> OutputTensor:
    """An output tensor from a model's values (array, DataFrame, Series, list), flattened row-major."""
    array = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
    datatype = datatype_of(array.dtype)
    shape = list(array.shape)
    if not binary:
        data = array.reshape(-1) if datatype != "BYTES" else array.astype(str).reshape(-1).tolist()
        return OutputTensor({"name": name, "datatype": datatype, "shape": shape, "data": data})
    if datatype == "BYTES":
        encoded = [str(item).encode() for item in array.reshape(-1).tolist()]
        raw = b"".join(_LENGTH.pack(len(item)) + item for item in encoded)
    elif datatype == "BOOL":
        raw = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    else:
        raw = np.ascontiguousarray(array, dtype=FIXED_DATATYPES[datatype]).tobytes()
    header = {"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": len(raw)}}
    return OutputTensor(header, raw)


def output_metadata(values: Any, name: str) -> dict[str, Any]:
    """`{name, datatype, shape}` of an output for model metadata, the batch dimension as -1."""
    tensor = output_tensor(values, name)
    shape = tensor.header["shape"]
    return {"name": name, "datatype": tensor.header["datatype"], "shape": [-1, *shape[1:]] if shape else []}

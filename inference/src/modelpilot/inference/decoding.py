"""Request bodies of each protocol (MLflow, v1, Open Inference Protocol v2, CSV) into validated features."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from modelpilot.inference.collector import collector_paused
from modelpilot.inference.csv_tables import read_csv_table
from modelpilot.inference.errors import InvalidInputError, MalformedBodyError, UnsupportedMediaTypeError
from modelpilot.inference.oip import BinaryReader, binary_tensor, split_body
from modelpilot.inference.runners import concat_features
from modelpilot.inference.validation import Features, Validator

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_MANY_ROWS = 16
PAUSE_COLLECTOR_BYTES = 1024 * 1024
_V2_NUMERIC = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"}


@dataclass
class DecodedRequest:
    """Validated features plus the per-request options a protocol carries."""

    features: Features
    params: dict[str, Any] | None = None
    want_gates: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # Open Inference Protocol: the outputs asked for (None: the default ones) and the default encoding.
    outputs: list[RequestedOutput] | None = None
    binary_output: bool = False


def parse_json(body: bytes) -> Any:
    """orjson parse; a syntax error is the client's (400), never a 500."""
    if not body:
        raise MalformedBodyError("empty body; send a JSON document")
    try:
        if len(body) < PAUSE_COLLECTOR_BYTES:
            return orjson.loads(body)
        with collector_paused():
            return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedBodyError(f"body is not valid JSON: {error}") from None


def is_csv(content_type: str) -> bool:
    """True for `text/csv` (any parameters)."""
    return content_type.split(";", 1)[0].strip().lower() == "text/csv"


def is_json(content_type: str) -> bool:
    """True for JSON or no declared type."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in {"", "application/json"} or media.endswith("+json")


def decode_csv_body(body: bytes, validator: Validator) -> Features:
    """A `text/csv` body into features, parsed a piece at a time (see `csv_tables`)."""
    return concat_features(list(read_csv_table(body, validator)))


def decode_invocations(body: bytes, content_type: str, validator: Validator) -> DecodedRequest:
    """MLflow scoring protocol: one of dataframe_split / dataframe_records / instances / inputs, or CSV."""
    if is_csv(content_type):
        return DecodedRequest(decode_csv_body(body, validator))
    if not is_json(content_type):
        raise UnsupportedMediaTypeError(f"content type {content_type!r}; send application/json or text/csv")
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise InvalidInputError("body", f"expected a JSON object with one of {list(MLFLOW_FORMATS)}")
    present = [key for key in MLFLOW_FORMATS if key in payload]
    if len(present) != 1:
        reason = "none given" if not present else f"several given: {present}"
        raise InvalidInputError("body", f"expected exactly one of {list(MLFLOW_FORMATS)}; {reason}")
    unknown = [key for key in payload if key not in MLFLOW_FORMATS and key != "params"]
    if unknown:
        raise InvalidInputError(str(unknown[0]), "unknown top-level field")
    params = payload.get("params")
    if params is not None and not isinstance(params, dict):
        raise InvalidInputError("params", "expected an object")
    key = present[0]
    return DecodedRequest(_mlflow_features(key, payload[key], validator, body, payload), params=params or None)


def _mlflow_features(key: str, data: Any, validator: Validator, body: bytes, payload: Any) -> Features:
    if key == "dataframe_split":
        if not isinstance(data, dict):
            raise InvalidInputError(key, "expected an object with columns and data")
        columns = data.get("columns")
        if columns is not None and not isinstance(columns, list):
            raise InvalidInputError(f"{key}.columns", "expected a list of column names")
        rows = data.get("data")
        numbers_only = no_strings_within(body, payload, rows)
        return validator.from_rows(rows, columns, f"{key}.data", numbers_only=numbers_only)
    if key == "dataframe_records":
        return validator.from_records(data, key)
    if isinstance(data, dict):
        return validator.from_columns(data, key)
    return _rows_or_records(data, validator, key, numbers_only=no_strings_within(body, payload, data))


def _rows_or_records(data: Any, validator: Validator, where: str, *, numbers_only: bool = False) -> Features:
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return validator.from_records(data, where)
    if validator.schema.is_tensor:
        return validator.from_tensor(data, where=where, numbers_only=numbers_only)
    return validator.from_rows(data, None, where, numbers_only=numbers_only)


def no_strings_within(body: bytes, payload: Any, part: Any) -> bool:
    """True when the JSON `body` has no string anywhere inside `part` (a value of the parsed `payload`).

    Every string token of a JSON text has exactly two unescaped quote characters, and an escaped quote
    adds one more; so when the raw body holds exactly two quotes per string outside `part`, none is
    inside it. Any doubt (escaped quotes, duplicate keys) counts as "maybe", never as "none".
    The validator then converts the rows straight to the model's float type, without the type
    discovery pass that exists to catch strings.
    """
    if not isinstance(part, list) or len(part) < _MANY_ROWS:
        return False  # for a few rows the type discovery costs less than counting the quotes
    expected = 2 * _string_tokens(payload, part)
    position = -1
    for _ in range(expected):  # `find` runs at memchr speed; bytes.count of one byte is several times slower
        position = body.find(b'"', position + 1)
        if position < 0:
            return False
    return body.find(b'"', position + 1) < 0


def _string_tokens(value: Any, skip: Any) -> int:
    """String tokens (keys and string values) in a parsed JSON value, not counting inside `skip`.

    A loop over an explicit stack, not recursion: the nesting depth is the client's to choose.
    """
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if item is skip:
            continue
        if isinstance(item, str):
            count += 1
        elif isinstance(item, dict):
            count += len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def decode_v1_predict(body: bytes, validator: Validator) -> DecodedRequest:
    """`{"records": […]}`, `{"columns": {…}}` or `{"instances": […]}`, with optional `return_gates`."""
    payload = parse_json(body)
    if isinstance(payload, list):
        payload = {"records": payload} if payload and isinstance(payload[0], dict) else {"instances": payload}
    if not isinstance(payload, dict):
        raise InvalidInputError("body", "expected a JSON object with records, columns or instances")
    forms = [key for key in ("records", "columns", "instances") if key in payload]
    if len(forms) != 1:
        raise InvalidInputError("body", "expected exactly one of records, columns, instances")
    unknown = [key for key in payload if key not in {"records", "columns", "instances", "return_gates"}]
    if unknown:
        raise InvalidInputError(str(unknown[0]), "unknown top-level field")
    want_gates = payload.get("return_gates", False)
    if not isinstance(want_gates, bool):
        raise InvalidInputError("return_gates", "expected true or false")
    form = forms[0]
    if form == "records":
        features = validator.from_records(payload[form], "records")
    elif form == "columns":
        features = validator.from_columns(payload[form], "columns")
    else:
        rows = payload[form]
        features = _rows_or_records(rows, validator, "instances", numbers_only=no_strings_within(body, payload, rows))
    return DecodedRequest(features, want_gates=want_gates)


V2_OUTPUTS = ("output", "gates")


@dataclass(frozen=True)
class RequestedOutput:
    """An output an Open Inference Protocol request asks for, and whether it wants it in binary."""

    name: str
    binary: bool


def decode_v2_binary(body: bytes, header_length: str | None, validator: Validator) -> DecodedRequest:
    """`decode_v2_infer` with the request's `Inference-Header-Content-Length` (None: all JSON)."""
    return decode_v2_infer(body, validator, header_length)


def decode_v2_infer(body: bytes, validator: Validator, header_length: str | None = None) -> DecodedRequest:
    """Open Inference Protocol v2: `{"inputs": [{name, shape, datatype, data}], "id"?, "parameters"?, "outputs"?}`.

    With `header_length` the body is a JSON header of that many bytes followed by the binary data of the
    inputs whose `parameters.binary_data_size` claims it (see `oip`).
    """
    header, binary = split_body(body, header_length)
    payload = parse_json(header)
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise InvalidInputError("inputs", "expected a non-empty list of input tensors")
    return decode_v2_payload(payload, _v2_input_values(payload["inputs"], binary), validator)


def decode_v2_payload(payload: dict[str, Any], values: list[Any], validator: Validator) -> DecodedRequest:
    """An OIP request whose inputs' values are known (`data`, or arrays from binary data): the features.

    `payload` has the request's `inputs` (name, shape, datatype), `parameters`, `outputs` and `id`, as the
    REST body has them and as the gRPC service rebuilds them from its message.
    """
    tensors = payload["inputs"]
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInputError("parameters", "expected an object")
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise InvalidInputError("parameters.binary_data_output", "expected true or false")
    outputs = _requested_outputs(payload.get("outputs"), binary_output)
    want_gates = bool(parameters.get("return_gates", False)) or any(o.name == "gates" for o in outputs or ())
    extra = {"id": payload["id"]} if isinstance(payload.get("id"), str) else {}
    if validator.schema.is_tensor:
        if len(tensors) != 1:
            raise InvalidInputError("inputs", f"{len(tensors)} tensors; the model takes one")
        tensor = tensors[0]
        _check_v2_datatype(tensor, numeric=True, where="inputs[0].datatype")
        label = tensor["name"] if isinstance(tensor["name"], str) else "?"
        features = validator.from_tensor(values[0], tensor["shape"], f"inputs[0] ({label[:64]})")
        return DecodedRequest(
            features, want_gates=want_gates, extra=extra, outputs=outputs, binary_output=binary_output
        )
    return DecodedRequest(
        validator.from_columns(_v2_columns(tensors, values, validator), "inputs"),
        want_gates=want_gates,
        extra=extra,
        outputs=outputs,
        binary_output=binary_output,
    )


def _v2_input_values(tensors: list[Any], binary: memoryview) -> list[Any]:
    """Each input's values: its JSON `data`, or its share of the binary part of the body as an array."""
    reader = BinaryReader(binary)
    values: list[Any] = []
    for index, tensor in enumerate(tensors):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            raise InvalidInputError(where, "expected an object with name, shape, datatype, data")
        size = _binary_data_size(tensor, where)
        missing = [key for key in ("name", "shape", "datatype") if key not in tensor]
        if size is None and "data" not in tensor:
            missing.append("data")
        if missing:
            raise InvalidInputError(f"{where}.{missing[0]}", "required")
        shape = tensor["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise InvalidInputError(f"{where}.shape", "expected a list of integers")
        if size is None:
            values.append(tensor["data"])
            continue
        if "data" in tensor:
            raise InvalidInputError(f"{where}.data", "given together with parameters.binary_data_size; send one")
        if any(d < 0 for d in shape):
            raise InvalidInputError(f"{where}.shape", f"shape {shape} has a negative dimension")
        values.append(binary_tensor(reader.take(size, where), tensor["datatype"], shape, where))
    reader.finish()
    return values


def _v2_columns(tensors: list[Any], values: list[Any], validator: Validator) -> dict[str, Any]:
    """One input per column: `{name: [values…]}` for the validator."""
    columns: dict[str, Any] = {}
    kinds = {c.name: c.kind for c in validator.schema.columns}
    for index, tensor in enumerate(tensors):
        name = tensor["name"]
        if not isinstance(name, str):
            raise InvalidInputError(f"inputs[{index}].name", f"expected a string, got {type(name).__name__}")
        if name in columns:
            raise InvalidInputError(name, "input given twice")
        if name in kinds:
            _check_v2_datatype(tensor, numeric=kinds[name] not in {"str", "any"}, where=f"inputs[{index}].datatype")
        shape, data = tensor["shape"], values[index]
        if isinstance(data, np.ndarray):
            data = data.reshape(-1).tolist() if len(shape) == 2 and shape[1] == 1 else data.tolist()
        if len(shape) == 2 and shape[1] == 1 and isinstance(data, list) and data and isinstance(data[0], list):
            data = [row[0] if isinstance(row, list) and len(row) == 1 else row for row in data]
        if len(shape) not in {1, 2} or (len(shape) == 2 and shape[1] != 1):
            raise InvalidInputError(name, f"shape {shape}; a column input has shape [N] or [N, 1]")
        if isinstance(data, list) and len(data) != shape[0]:
            raise InvalidInputError(name, f"{len(data)} values, shape says {shape[0]}")
        columns[name] = data
    return columns


def _binary_data_size(tensor: dict[str, Any], where: str) -> Any:
    """The input's `parameters.binary_data_size`, or None when its data is in the JSON."""
    parameters = tensor.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise InvalidInputError(f"{where}.parameters", "expected an object")
    return parameters.get("binary_data_size")


def _requested_outputs(outputs: Any, binary_output: bool) -> list[RequestedOutput] | None:
    """The `outputs` of a request (None: the default ones), each in binary or JSON."""
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise InvalidInputError("outputs", "expected a list of requested outputs")
    requested: list[RequestedOutput] = []
    for index, output in enumerate(outputs):
        where = f"outputs[{index}]"
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise InvalidInputError(where, "expected an object with a name")
        name = output["name"]
        if name not in V2_OUTPUTS:
            raise InvalidInputError(f"{where}.name", f"unknown output {name[:64]!r}; outputs are {list(V2_OUTPUTS)}")
        if any(r.name == name for r in requested):
            raise InvalidInputError(f"{where}.name", f"output {name!r} asked for twice")
        parameters = output.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidInputError(f"{where}.parameters", "expected an object")
        binary = parameters.get("binary_data", binary_output)
        if not isinstance(binary, bool):
            raise InvalidInputError(f"{where}.parameters.binary_data", "expected true or false")
        if parameters.get("classification", 0) not in (0, None):
            raise InvalidInputError(f"{where}.parameters.classification", "the classification extension is not served")
        requested.append(RequestedOutput(name, binary))
    return requested


def _check_v2_datatype(tensor: dict[str, Any], *, numeric: bool, where: str) -> None:
    datatype = str(tensor["datatype"]).upper()
    if numeric and datatype not in _V2_NUMERIC:
        raise InvalidInputError(where, f"{datatype} for a numeric input; use FP32, FP64, INT* or BOOL")
    if not numeric and datatype != "BYTES":
        raise InvalidInputError(where, f"{datatype} for a string input; use BYTES")

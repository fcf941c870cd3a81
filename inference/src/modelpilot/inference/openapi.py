"""The OpenAPI description the server serves at `/openapi.json`, prediction routes included.

The prediction routes are answered at the ASGI edge, outside FastAPI's router, so FastAPI cannot
describe them; this module does, for every route, from the model's signature once it is loaded: rows
have the signature's width, columns its names and types, integers their type's range. Clients and
schema-driven tests (schemathesis) read the same document.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelpilot.inference.dataplane import DataPlane
from modelpilot.inference.schema import Column, InputSchema

_MAX_ROWS = 64  # in the description only: requests may have more rows, up to the body limit
_JSON = "application/json"
_ERROR = {"$ref": "#/components/schemas/Error"}
_ERRORS = {
    "400": "the body is not JSON or CSV, or not UTF-8",
    "401": "missing or bad credentials",
    "404": "no such model or version here",
    "405": "method not allowed",
    "413": "body over the limit",
    "415": "content type not read by this route",
    "422": "the data does not fit the model's signature; `field` names what is wrong",
    "429": "rate limit spent",
    "503": "the model is loading, failed to load, or the server is draining",
}
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": "string"},
        "reason": {"type": "string"},
        "row": {"type": "integer"},
    },
}


def openapi_document(plane: DataPlane) -> dict[str, Any]:
    """The OpenAPI 3.1 document of this server as it is now (the model's signature once loaded)."""
    loaded = plane.model.loaded
    schema = loaded.schema if loaded is not None else None
    name = {"type": "string", "enum": [plane.model.name]}
    version = {"type": "string", "enum": [plane.model.version]} if plane.model.version else {"type": "string"}
    record, row = _record_schema(schema), _row_schema(schema)
    rows = {"type": "array", "items": row, "minItems": 1, "maxItems": _MAX_ROWS}
    records = {"type": "array", "items": record, "minItems": 1, "maxItems": _MAX_ROWS}
    columns = _columns_schema(schema)
    paths: dict[str, Any] = {
        "/invocations": {"post": _invocations(rows, records, columns)},
        "/v1/models/{name}/predict": {"post": _v1_predict(rows, records, columns, name)},
        "/v1/models/{name}/predict_batch": {"post": _predict_batch(name)},
        "/v2/models/{name}/infer": {"post": _v2_infer(schema, [_path("name", name)])},
        "/v2/models/{name}/versions/{version}/infer": {
            "post": _v2_infer(schema, [_path("name", name), _path("version", version)])
        },
        "/v1/models/{name}": {"get": _get("model, version, signature, state", [_path("name", name)], 404)},
        "/v2/models/{name}": {"get": _get("Open Inference Protocol model metadata", [_path("name", name)], 404, 503)},
        "/v2/models/{name}/versions/{version}": {
            "get": _get("model metadata", [_path("name", name), _path("version", version)], 404, 503)
        },
        "/v2/models/{name}/ready": {"get": _get("model readiness", [_path("name", name)], 404, 503)},
        "/v2/models/{name}/versions/{version}/ready": {
            "get": _get("model version readiness", [_path("name", name), _path("version", version)], 404, 503)
        },
        "/v2": {"get": _get("Open Inference Protocol server metadata (name, version, extensions)", [])},
        "/v2/health/live": {"get": _get("liveness", [])},
        "/v2/health/ready": {"get": _get("readiness", [], 503)},
        "/healthz": {"get": _get("liveness", [])},
        "/readyz": {"get": _get("readiness: 200 once loaded and warmed up", [], 503)},
        "/ping": {"get": _get("readiness (MLflow scoring server)", [], 503)},
        "/health": {"get": _get("readiness (MLflow scoring server)", [], 503)},
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "modelpilot inference", "version": plane.model.version or "0"},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR_SCHEMA}},
    }
    if plane.settings.api_keys or plane.settings.api_keys_file or plane.settings.jwt_secret:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        document["security"] = [{"bearer": []}, {"apiKey": []}]
    return document


def _value_schema(dtype: Any, kind: str) -> dict[str, Any]:
    if kind == "str":
        return {"type": "string"}
    if kind == "any":
        return {}
    numpy_type = np.dtype(dtype)
    if numpy_type.kind == "b" or kind == "bool":
        return {"type": "boolean"}
    if numpy_type.kind in "iu":
        info = np.iinfo(numpy_type)
        return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
    return {"type": "number"}


def _column_value(column: Column) -> dict[str, Any]:
    return _value_schema(column.dtype, column.kind)


def _row_schema(schema: InputSchema | None) -> dict[str, Any]:
    """One row: a list of the signature's width (nested for a multi-dimensional tensor)."""
    if schema is None:
        return {"type": "array"}
    if schema.is_tensor:
        item = _value_schema(schema.tensor_dtype, "float")
        for size in reversed(schema.row_shape):
            item = {"type": "array", "items": item, "minItems": size, "maxItems": size}
        return item
    return {
        "type": "array",
        "prefixItems": [_column_value(c) for c in schema.columns],
        "minItems": schema.width,
        "maxItems": schema.width,
    }


def _record_schema(schema: InputSchema | None) -> dict[str, Any]:
    """One row as an object keyed by column name."""
    if schema is None or schema.is_tensor:
        return {"type": "object"}
    return {
        "type": "object",
        "properties": {c.name: _column_value(c) for c in schema.columns},
        "required": [c.name for c in schema.columns if c.required],
        "additionalProperties": False,
    }


def _columns_schema(schema: InputSchema | None) -> dict[str, Any]:
    """Column-major input: `{name: [values…]}`."""
    if schema is None or schema.is_tensor:
        return {"type": "object", "additionalProperties": {"type": "array"}}
    return {
        "type": "object",
        "properties": {
            c.name: {"type": "array", "items": _column_value(c), "minItems": 1, "maxItems": _MAX_ROWS}
            for c in schema.columns
        },
        "required": [c.name for c in schema.columns if c.required],
        "additionalProperties": False,
    }


def _only(key: str, value: dict[str, Any], **others: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: value, **others},
        "additionalProperties": False,
    }


def _invocations(rows: dict[str, Any], records: dict[str, Any], columns: dict[str, Any]) -> dict[str, Any]:
    params = {"type": "object"}
    split = {
        "type": "object",
        "required": ["data"],
        "properties": {"columns": {"type": "array", "items": {"type": "string"}}, "data": rows},
    }
    body = {
        "oneOf": [
            _only("dataframe_split", split, params=params),
            _only("dataframe_records", records, params=params),
            _only("instances", rows, params=params),
            _only("inputs", {"oneOf": [rows, columns]}, params=params),
        ]
    }
    return _operation(
        "MLflow scoring protocol (as `mlflow models serve`)",
        [],
        {_JSON: {"schema": body}, "text/csv": {"schema": {"type": "string"}}},
        {"type": "object", "required": ["predictions"], "properties": {"predictions": {}}},
        "400",
        "401",
        "413",
        "415",
        "422",
        "429",
        "503",
    )


def _v1_predict(
    rows: dict[str, Any], records: dict[str, Any], columns: dict[str, Any], name: dict[str, Any]
) -> dict[str, Any]:
    gates = {"type": "boolean"}
    body = {
        "oneOf": [
            _only("records", records, return_gates=gates),
            _only("columns", columns, return_gates=gates),
            _only("instances", rows, return_gates=gates),
        ]
    }
    answer = {
        "type": "object",
        "required": ["model", "version", "track", "predictions"],
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "string"},
            "track": {"type": "string"},
            "predictions": {},
            "classes": {"type": "array"},
            "gates": {},
        },
    }
    return _operation(
        "predictions for records, columns or instances",
        [_path("name", name)],
        {_JSON: {"schema": body}},
        answer,
        "400",
        "401",
        "404",
        "413",
        "415",
        "422",
        "429",
        "503",
    )


def _v2_infer(schema: InputSchema | None, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    datatypes = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"]
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"} if schema is None or schema.is_tensor else {"enum": list(schema.column_names)},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 4},
            "datatype": {"enum": [*datatypes, "FP16", "FP32", "FP64", "BYTES"]},
            "data": {"type": "array", "maxItems": _MAX_ROWS * 32},
        },
    }
    body = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "items": tensor, "minItems": 1, "maxItems": 8},
            "parameters": {
                "type": "object",
                "properties": {"return_gates": {"type": "boolean"}, "binary_data_output": {"type": "boolean"}},
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"enum": ["output", "gates"]},
                        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
                    },
                },
            },
        },
    }
    answer = {
        "type": "object",
        "required": ["model_name", "model_version", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array"},
        },
    }
    binary_header = {
        "name": "Inference-Header-Content-Length",
        "in": "header",
        "required": False,
        "description": "binary tensor data: the body is a JSON header of this many bytes, then the raw bytes of "
        "the inputs whose parameters.binary_data_size claims them; answered in the same layout when outputs are "
        "asked for in binary (application/octet-stream)",
        "schema": {"type": "integer", "minimum": 0},
    }
    return _operation(
        "Open Inference Protocol v2",
        [*parameters, binary_header],
        {_JSON: {"schema": body}},
        answer,
        "400",
        "401",
        "404",
        "413",
        "415",
        "422",
        "429",
        "503",
    )


def _predict_batch(name: dict[str, Any]) -> dict[str, Any]:
    form = {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}},
    }
    operation = _operation(
        "a CSV upload in, a CSV of predictions streamed out (validated in full before the first byte)",
        [_path("name", name)],
        {"text/csv": {"schema": {"type": "string"}}, "multipart/form-data": {"schema": form}},
        None,
        "400",
        "401",
        "404",
        "413",
        "415",
        "422",
        "429",
        "503",
    )
    operation["responses"]["200"] = {"description": "predictions", "content": {"text/csv": {"schema": {}}}}
    return operation


def _get(summary: str, parameters: list[dict[str, Any]], *codes: int) -> dict[str, Any]:
    return _operation(summary, parameters, None, {"type": "object"}, "401", "405", "429", *map(str, codes))


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _operation(
    summary: str,
    parameters: list[dict[str, Any]],
    content: dict[str, Any] | None,
    answer: dict[str, Any] | None,
    *errors: str,
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if answer is not None:
        responses["200"] = {"description": "OK", "content": {_JSON: {"schema": answer}}}
    for code in dict.fromkeys(errors):
        responses[code] = {"description": _ERRORS[code], "content": {_JSON: {"schema": _ERROR}}}
    operation: dict[str, Any] = {"summary": summary, "parameters": parameters, "responses": responses}
    if content is not None:
        operation["requestBody"] = {"required": True, "content": content}
    return operation

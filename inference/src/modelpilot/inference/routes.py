"""Endpoints: thin functions that decode, call the data plane, and encode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeAlias

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response

from modelpilot.inference.bulk import BatchUpload
from modelpilot.inference.csv_tables import PIECE_BYTES
from modelpilot.inference.dataplane import DataPlane
from modelpilot.inference.decoding import (
    DecodedRequest,
    RequestedOutput,
    decode_invocations,
    decode_v1_predict,
    decode_v2_binary,
    is_csv,
)
from modelpilot.inference.errors import (
    InvalidInputError,
    MalformedBodyError,
    ModelNotReadyError,
    UnknownModelError,
    UnsupportedMediaTypeError,
)
from modelpilot.inference.oip import datatype_of, output_tensor
from modelpilot.inference.openapi import openapi_document
from modelpilot.inference.prediction import Prediction, mlflow_predictions
from modelpilot.inference.responses import json_bytes


def _package_version() -> str:
    try:
        return metadata.version("modelpilot-inference")
    except metadata.PackageNotFoundError:
        return "0"


_JSON = "application/json"
GRPC_INFER_ROUTE = "/inference.GRPCInferenceService/ModelInfer"  # its route label in the request metrics
SERVER_METADATA: dict[str, Any] = {
    "name": "modelpilot",
    "version": _package_version(),
    "extensions": ["binary_tensor_data"],
}


def _plane(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.plane
    return plane


def _json(document: Any, status: int = 200) -> Response:
    return Response(json_bytes(document), status_code=status, media_type=_JSON)


# Prediction routes. The serving edge (`http.ServingEdge`) calls these directly, without the router and
# middleware stack of the app: each takes the data plane and a `PredictionCall` and returns the JSON body
# of a 200 answer, or raises a `ServingError`.


@dataclass(frozen=True)
class PredictionCall:
    """What a prediction route reads from its HTTP request."""

    read_body: Callable[[], Awaitable[bytes]]
    content_type: str
    path_params: dict[str, str]
    header_length: str | None = None  # Inference-Header-Content-Length (OIP binary tensor data)
    request_id: str | None = None  # the answer's X-Request-Id, under which the prediction log keeps its rows


@dataclass(frozen=True)
class Answer:
    """A 200 answer that is not plain JSON: its body and its headers (Content-Length aside)."""

    body: bytes
    headers: list[tuple[bytes, bytes]]


async def _decode(plane: DataPlane, call: PredictionCall, decode: Any, *args: Any) -> DecodedRequest:
    """Read and decode the body while the batcher knows a request is on its way."""
    validator = plane.model.require_validator()
    plane.batcher.decoding_started()
    try:
        body = await call.read_body()
        if len(body) >= plane.settings.decode_offload_bytes:
            # A large body would hold the event loop (and every other request, /healthz too) while it is
            # parsed; a decode thread lets the loop run between the interpreter's switch intervals.
            loop = asyncio.get_running_loop()
            offloaded: DecodedRequest = await loop.run_in_executor(plane.decode_pool, decode, body, *args, validator)
            return offloaded
        decoded: DecodedRequest = decode(body, *args, validator) if args else decode(body, validator)
        return decoded
    finally:
        plane.batcher.decoding_finished()


async def v1_predict(plane: DataPlane, call: PredictionCall) -> bytes:
    """POST /v1/models/{name}/predict: records, columns or instances in; outputs, classes, gates out."""
    plane.check_name(call.path_params["name"])
    decoded = await _decode(plane, call, decode_v1_predict)
    prediction = await plane.predict(decoded, call.request_id)
    document: dict[str, Any] = {
        "model": plane.model.name,
        "version": plane.model.version,
        "track": plane.settings.track,
        "predictions": mlflow_predictions(prediction.values),
    }
    classes = prediction.labels()
    if classes is not None:
        document["classes"] = classes
    if decoded.want_gates:
        document["gates"] = prediction.gates
    return json_bytes(document)


async def invocations(plane: DataPlane, call: PredictionCall) -> bytes:
    """POST /invocations: the MLflow scoring protocol, JSON or CSV."""
    decoded = await _decode(plane, call, decode_invocations, call.content_type)
    prediction = await plane.predict(decoded, call.request_id)
    records = plane.model.loaded is not None and plane.model.loaded.runner.records_output
    return json_bytes({"predictions": mlflow_predictions(prediction.values, records=records)})


async def v2_infer(plane: DataPlane, call: PredictionCall) -> bytes | Answer:
    """POST /v2/models/{name}[/versions/{version}]/infer: Open Inference Protocol v2, JSON or binary tensors."""
    plane.check_name(call.path_params["name"])
    check_version(plane, call.path_params.get("version"))
    decoded = await _decode(plane, call, decode_v2_binary, call.header_length)
    prediction = await plane.predict(decoded, call.request_id)
    tensors = [
        output_tensor(values, output.name, binary=output.binary)
        for output, values in requested_values(prediction, decoded)
    ]
    document: dict[str, Any] = {
        "model_name": plane.model.name,
        "model_version": plane.model.version,
        "outputs": [tensor.header for tensor in tensors],
    }
    document.update(decoded.extra)
    head = json_bytes(document)
    raw = [tensor.raw for tensor in tensors if tensor.raw is not None]
    if not raw:
        return head
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"inference-header-content-length", str(len(head)).encode()),
    ]
    return Answer(b"".join([head, *raw]), headers)


PredictionRoute: TypeAlias = Callable[[DataPlane, PredictionCall], Awaitable[bytes | Answer]]

PREDICTION_ROUTES: list[tuple[str, PredictionRoute]] = [
    ("/invocations", invocations),
    ("/v1/models/{name}/predict", v1_predict),
    ("/v2/models/{name}/infer", v2_infer),
    ("/v2/models/{name}/versions/{version}/infer", v2_infer),
]


@dataclass(frozen=True)
class StreamingCall:
    """What the streaming route reads: the request (its body is read as it arrives) and the path parameters."""

    request: Request
    path_params: dict[str, str]


async def predict_batch(plane: DataPlane, call: StreamingCall) -> tuple[bytes, AsyncGenerator[bytes, None]]:
    """POST /v1/models/{name}/predict_batch: a CSV upload in, a CSV of predictions streamed out.

    Returns the first lines of the answer and an iterator over the rest (see `bulk` for the guarantees).
    """
    plane.check_name(call.path_params["name"])
    plane.model.require_validator()
    upload = BatchUpload(plane, _upload_chunks(call.request))
    await upload.read()
    return await upload.stream()


StreamingRoute: TypeAlias = Callable[[DataPlane, StreamingCall], Awaitable[tuple[bytes, AsyncGenerator[bytes, None]]]]

STREAMING_ROUTES: list[tuple[str, StreamingRoute]] = [("/v1/models/{name}/predict_batch", predict_batch)]


async def _upload_chunks(request: Request) -> AsyncIterator[bytes]:
    """The CSV bytes of a raw `text/csv` body or of the multipart field `file`, as they arrive."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        try:
            async with request.form(max_files=1) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise InvalidInputError("file", "expected a CSV file in the form field 'file'")
                while data := await upload.read(PIECE_BYTES):
                    yield data
        except MultiPartException as error:
            raise MalformedBodyError(f"multipart body: {error.message}") from None
    elif is_csv(content_type):
        async for chunk in request.stream():
            if chunk:
                yield chunk
    else:
        raise UnsupportedMediaTypeError(f"content type {content_type!r}; upload text/csv or multipart/form-data")


def requested_values(prediction: Prediction, decoded: DecodedRequest) -> list[tuple[RequestedOutput, Any]]:
    """The outputs an OIP request asks for (output, and gates when asked, if it names none) with their values;
    an output the model did not produce (gates of a model without them) is left out."""
    requested = decoded.outputs
    if requested is None:
        requested = [RequestedOutput("output", decoded.binary_output)]
        if decoded.want_gates:
            requested.append(RequestedOutput("gates", decoded.binary_output))
    pairs = []
    for output in requested:
        values = prediction.values if output.name == "output" else prediction.gates
        if values is not None:
            pairs.append((output, values))
    return pairs


def check_version(plane: DataPlane, version: str | None) -> None:
    """Refuse a model version this server does not serve (None: any version)."""
    if version is not None and version != plane.model.version:
        raise UnknownModelError(f"version {version!r} is not served here; this server serves {plane.model.version!r}")


async def v1_model(request: Request) -> Response:
    """GET /v1/models/{name}: version, signature, track, state."""
    plane = _plane(request)
    plane.check_name(request.path_params["name"])
    return _json(plane.model.describe())


async def v2_model_metadata(request: Request) -> Response:
    """GET /v2/models/{name}[/versions/{version}]: Open Inference Protocol metadata."""
    plane = _plane(request)
    plane.check_name(request.path_params["name"])
    check_version(plane, request.path_params.get("version"))
    return _json(model_metadata(plane))


def model_metadata(plane: DataPlane) -> dict[str, Any]:
    """The OIP model metadata document (REST and gRPC); 503 while the model is not loaded."""
    loaded = plane.model.loaded
    if loaded is None:
        raise ModelNotReadyError(plane.model.reason, state=plane.model.state)
    schema = loaded.schema
    if schema.is_tensor:
        inputs = [
            {
                "name": schema.tensor_name or "input",
                "datatype": datatype_of(schema.tensor_dtype),
                "shape": [-1, *schema.row_shape],
            }
        ]
    else:
        inputs = [
            {"name": c.name, "datatype": "BYTES" if c.kind in {"str", "any"} else datatype_of(c.dtype), "shape": [-1]}
            for c in schema.columns
        ]
    return {
        "name": plane.model.name,
        "versions": [plane.model.version],
        "platform": "mlflow",
        "inputs": inputs,
        "outputs": plane.model.outputs,
    }


async def v2_server_metadata(request: Request) -> Response:
    """GET /v2: Open Inference Protocol server metadata."""
    return _json(SERVER_METADATA)


async def v2_model_ready(request: Request) -> Response:
    """GET /v2/models/{name}[/versions/{version}]/ready."""
    plane = _plane(request)
    plane.check_name(request.path_params["name"])
    check_version(plane, request.path_params.get("version"))
    ready, _ = plane.readiness()
    return _json({"name": plane.model.name, "ready": ready}, 200 if ready else 503)


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return _json({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: 200 only after load + warm-up, 503 with the reason otherwise."""
    ready, body = _plane(request).readiness()
    return _json(body, 200 if ready else 503)


async def v2_live(request: Request) -> Response:
    """GET /v2/health/live."""
    return _json({"live": True})


async def v2_ready(request: Request) -> Response:
    """GET /v2/health/ready."""
    ready, _ = _plane(request).readiness()
    return _json({"ready": ready}, 200 if ready else 503)


async def openapi_json(request: Request) -> Response:
    """GET /openapi.json: every route, the prediction routes with the model's signature."""
    return _json(openapi_document(_plane(request)))


# Every other route goes through the app's router (the prediction routes above never reach it).
ROUTES: list[tuple[str, Any, list[str]]] = [
    ("/v1/models/{name}", v1_model, ["GET"]),
    ("/v2", v2_server_metadata, ["GET"]),
    ("/v2/health/live", v2_live, ["GET"]),
    ("/v2/health/ready", v2_ready, ["GET"]),
    ("/v2/models/{name}", v2_model_metadata, ["GET"]),
    ("/v2/models/{name}/versions/{version}", v2_model_metadata, ["GET"]),
    ("/v2/models/{name}/ready", v2_model_ready, ["GET"]),
    ("/v2/models/{name}/versions/{version}/ready", v2_model_ready, ["GET"]),
    ("/healthz", healthz, ["GET"]),
    ("/openapi.json", openapi_json, ["GET"]),
    ("/readyz", readyz, ["GET"]),
    # MLflow's scoring server answers these; clients written for it poll them for readiness.
    ("/ping", readyz, ["GET"]),
    ("/health", readyz, ["GET"]),
]

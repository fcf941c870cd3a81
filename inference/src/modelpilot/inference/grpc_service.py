"""The Open Inference Protocol's gRPC service on a port of its own, on the same data plane as REST.

`inference.GRPCInferenceService` (health, metadata, ModelInfer with `raw_input_contents` or typed contents)
runs on the server's event loop: its requests go through the same decoding and validation, the same
micro-batcher, the same credentials and rate limits (the edge's `admit_client`), and are counted in the
same request metrics under the route `/inference.GRPCInferenceService/<method>`. Messages are limited to
the REST body limit. Errors map to gRPC status codes: 4xx to INVALID_ARGUMENT, NOT_FOUND, UNAUTHENTICATED
or RESOURCE_EXHAUSTED, 503 to UNAVAILABLE, 500 to INTERNAL; the details say what `error` kind and message
REST would have answered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import numpy as np

from modelpilot.inference.decoding import decode_v2_payload
from modelpilot.inference.errors import InvalidInputError, ServingError
from modelpilot.inference.grpc_gen import oip_pb2 as pb
from modelpilot.inference.grpc_gen import oip_pb2_grpc as pb_grpc
from modelpilot.inference.http import ServingEdge
from modelpilot.inference.oip import binary_tensor, output_tensor
from modelpilot.inference.predlog.records import valid_request_id
from modelpilot.inference.routes import SERVER_METADATA, check_version, model_metadata, requested_values

log = logging.getLogger("modelpilot.inference")

SERVICE = "inference.GRPCInferenceService"
_Answer = TypeVar("_Answer")
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
# InferTensorContents field of each datatype (the typed, non-raw form of input values).
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The service's methods over the edge's data plane, credentials, limits and metrics."""

    def __init__(self, edge: ServingEdge) -> None:
        self.edge = edge
        self.plane = edge.plane

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.plane.readiness()[0])

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:  # noqa: N802
        model = self.plane.model
        known = request.name == model.name and request.version in {"", model.version}
        return pb.ModelReadyResponse(ready=known and self.plane.readiness()[0])

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:  # noqa: N802
        async def answer() -> pb.ServerMetadataResponse:
            name, version, extensions = (
                SERVER_METADATA["name"],
                SERVER_METADATA["version"],
                SERVER_METADATA["extensions"],
            )
            return pb.ServerMetadataResponse(name=name, version=version, extensions=extensions)

        return await self._call("ServerMetadata", context, answer)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:  # noqa: N802
        async def answer() -> pb.ModelMetadataResponse:
            self._check_model(request.name, request.version)
            document = model_metadata(self.plane)
            tensors = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=document["name"],
                versions=document["versions"],
                platform=document["platform"],
                inputs=[tensors(**spec) for spec in document["inputs"]],
                outputs=[tensors(**spec) for spec in document["outputs"]],
            )

        return await self._call("ModelMetadata", context, answer)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:  # noqa: N802
        async def answer() -> pb.ModelInferResponse:
            self._check_model(request.model_name, request.model_version)
            validator = self.plane.model.require_validator()
            payload, values = _payload(request)
            self.plane.batcher.decoding_started()
            try:
                decoded = decode_v2_payload(payload, values, validator)
            finally:
                self.plane.batcher.decoding_finished()
            prediction = await self.plane.predict(decoded, valid_request_id(request.id))
            response = pb.ModelInferResponse(
                model_name=self.plane.model.name, model_version=self.plane.model.version, id=request.id
            )
            # gRPC answers every output in raw_output_contents, whatever a binary_data parameter asks.
            for output, values in requested_values(prediction, decoded):
                tensor = output_tensor(values, output.name, binary=True)
                header = tensor.header
                response.outputs.add(name=header["name"], datatype=header["datatype"], shape=header["shape"])
                response.raw_output_contents.append(tensor.raw or b"")
            return response

        return await self._call("ModelInfer", context, answer)

    def _check_model(self, name: str, version: str) -> None:
        self.plane.check_name(name)
        check_version(self.plane, version or None)

    async def _call(self, method: str, context: Any, answer: Callable[[], Awaitable[_Answer]]) -> _Answer:
        """Admit the call (credentials, rate limits), answer it, count it; errors become gRPC statuses."""
        start = time.perf_counter()
        status = 500
        try:
            metadata = dict(context.invocation_metadata() or ())
            self.edge.admit_client(_address(context.peer()), metadata.get("authorization"), metadata.get("x-api-key"))
            result = await answer()
            status = 200
            return result
        except ServingError as error:
            status = error.status
            code = _CODES.get(error.status, grpc.StatusCode.INTERNAL)
            await context.abort(code, f"{error.kind}: {error.message}")
        except Exception as error:
            if isinstance(error, grpc.aio.AbortError):
                raise
            log.exception("unhandled error in a gRPC call", extra={"fields": {"method": method}})
            await context.abort(grpc.StatusCode.INTERNAL, "internal_error: internal error")
        finally:
            self.edge.metrics.observe_request(f"/{SERVICE}/{method}", status, time.perf_counter() - start)
        raise AssertionError("context.abort returns only by raising")  # pragma: no cover


def _address(peer: str) -> str:
    """The client address of a gRPC peer (`ipv4:127.0.0.1:5555`, `ipv6:[::1]:5555`)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return rest.rsplit(":", 1)[0] if kind == "ipv4" else peer


def _parameters(parameters: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else None
    return values


def _payload(request: pb.ModelInferRequest) -> tuple[dict[str, Any], list[Any]]:
    """The request as the REST decoder reads it (inputs, parameters, outputs, id) and each input's values."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInputError(
            "raw_input_contents", f"{len(raw)} entries for {len(request.inputs)} inputs; send one per input"
        )
    tensors: list[dict[str, Any]] = []
    values: list[Any] = []
    for index, tensor in enumerate(request.inputs):
        where = f"inputs[{index}]"
        shape = list(tensor.shape)
        tensors.append({"name": tensor.name, "shape": shape, "datatype": tensor.datatype})
        if raw:
            if any(d < 0 for d in shape):
                raise InvalidInputError(f"{where}.shape", f"shape {shape} has a negative dimension")
            values.append(binary_tensor(memoryview(raw[index]), tensor.datatype, shape, where))
            continue
        field = _CONTENTS.get(tensor.datatype.upper())
        if field is None:
            raise InvalidInputError(f"{where}.datatype", f"{tensor.datatype[:32]!r} has no typed contents field")
        contents = list(getattr(tensor.contents, field))
        if field == "bytes_contents":
            try:
                contents = [item.decode() for item in contents]
            except UnicodeDecodeError:
                raise InvalidInputError(where, "a BYTES element is not UTF-8 text") from None
        values.append(np.array(contents) if contents and field != "bytes_contents" else contents)
    outputs = [
        {"name": output.name, "parameters": _parameters(output.parameters)} for output in request.outputs
    ] or None
    payload: dict[str, Any] = {"inputs": tensors, "parameters": _parameters(request.parameters), "id": request.id}
    if outputs is not None:
        payload["outputs"] = outputs
    if not tensors:
        raise InvalidInputError("inputs", "expected a non-empty list of input tensors")
    return payload, values


async def start_grpc(edge: ServingEdge, host: str, port: int, max_message_bytes: int) -> Any:
    """Start the service on `host:port` on the running event loop; returns the server (for `stop`)."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(edge), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if server.add_insecure_port(address) == 0:
        raise RuntimeError(f"cannot listen for gRPC on {address}")
    await server.start()
    log.info("gRPC listening", extra={"fields": {"address": address}})
    return server

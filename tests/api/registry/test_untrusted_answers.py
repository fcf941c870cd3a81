"""What a registry or Prometheus answers (their URLs come from the spec) never reaches a status reason or an
Event beyond the status code and fixed words: a hostile server cannot write into them. The server here is a
real one on loopback that sends exactly the bytes a test gives it, malformed HTTP included."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from modelpilot.operator.analysis import AnalysisTarget, analyse
from modelpilot.operator.http_client import MAX_ANSWER_BYTES
from modelpilot.operator.registry import (
    MlflowRegistry,
    ModelNotFoundError,
    RegistryError,
    RegistryRejectedError,
    RegistryUnavailableError,
)
from modelpilot.operator.spec import Analysis, ModelRef

MARK = "INJECTED-by-the-server"
HOSTILE = f"<script>{MARK}</script> kubectl delete ns prod; see http://evil.example/{MARK}"


def answer(status: int, *, text: str | None = None, json_body: object = None) -> bytes:
    """One HTTP/1.1 answer, as bytes on the wire."""
    body = (text if text is not None else json.dumps(json_body)).encode()
    kind = "text/plain" if text is not None else "application/json"
    head = f"HTTP/1.1 {status} Whatever\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
    head += "Connection: close\r\n\r\n"
    return head.encode() + body


# A header line without a colon: the client's parser refuses it, and its error quotes the line.
MALFORMED = f"HTTP/1.1 200 OK\r\n{HOSTILE}\r\n\r\n".encode()


@dataclass
class RawServer:
    """Answers every request with `reply` and closes the connection."""

    url: str
    reply: bytes = b""


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    raw = RawServer(url="")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(raw.reply)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    raw.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    async with listener:
        yield raw


@pytest.mark.parametrize(
    ("response", "error_class", "words"),
    [
        (answer(503, text=HOSTILE), RegistryUnavailableError, "answered 503"),
        (
            answer(500, json_body={"error_code": "INTERNAL_ERROR", "message": HOSTILE}),
            RegistryUnavailableError,
            "500",
        ),
        (
            answer(403, json_body={"error_code": "PERMISSION_DENIED", "message": HOSTILE}),
            RegistryRejectedError,
            "refused (403 PERMISSION_DENIED)",
        ),
        (answer(400, json_body={"error_code": HOSTILE, "message": HOSTILE}), RegistryRejectedError, "refused (400)"),
        (answer(401, text=HOSTILE), RegistryRejectedError, "refused (401)"),
        (
            answer(404, json_body={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": HOSTILE}),
            ModelNotFoundError,
            "registered model fraud not found at <registry>",
        ),
        (answer(200, text=HOSTILE), RegistryRejectedError, "with no JSON"),
        (answer(200, json_body=[HOSTILE]), RegistryRejectedError, "no JSON object"),
        (answer(200, json_body={"registered_model": HOSTILE}), RegistryRejectedError, "without a registered_model"),
        (
            answer(200, json_body={"registered_model": {"aliases": [HOSTILE]}}),
            RegistryRejectedError,
            "malformed model",
        ),
        (
            answer(200, json_body={"registered_model": {"latest_versions": [{"current_stage": "Staging"}]}}),
            RegistryRejectedError,
            "malformed model",
        ),
    ],
)
async def test_registry_errors_name_the_status_code_and_never_the_answer(
    server: RawServer, response: bytes, error_class: type[RegistryError], words: str
) -> None:
    server.reply = response
    with pytest.raises(error_class) as raised:
        await resolve(server)
    message = str(raised.value).replace(server.url, "<registry>")
    assert words in message
    assert MARK not in message


async def resolve(server: RawServer) -> None:
    registry = MlflowRegistry(server.url)
    try:
        await registry.resolve(ModelRef(name="fraud", alias="champion"))
    finally:
        await registry.aclose()


async def test_a_protocol_error_quoting_the_server_is_named_by_its_class_only(server: RawServer) -> None:
    server.reply = MALFORMED
    with pytest.raises(RegistryUnavailableError) as raised:
        await resolve(server)
    assert "unreachable (ClientResponseError)" in str(raised.value)
    assert MARK not in str(raised.value)


async def test_an_answer_beyond_the_bound_is_refused_without_being_read_whole(server: RawServer) -> None:
    filler = "x" * (MAX_ANSWER_BYTES + 1024)
    server.reply = answer(200, json_body={"registered_model": {"name": "fraud", "description": filler}})
    with pytest.raises(RegistryRejectedError) as raised:
        await resolve(server)
    assert "with no JSON" in str(raised.value)


async def test_a_malformed_model_version_is_a_registry_error(server: RawServer) -> None:
    server.reply = answer(200, json_body={"model_version": {"version": HOSTILE}})
    registry = MlflowRegistry(server.url)
    try:
        with pytest.raises(RegistryRejectedError) as raised:
            await registry.get_version("fraud", "7")
    finally:
        await registry.aclose()
    assert MARK not in str(raised.value)


def _analysis(url: str) -> Analysis:
    return Analysis.model_validate({"prometheus": url, "minRequests": 1})


async def _reason(server: RawServer) -> str:
    result = await analyse(_analysis(server.url), AnalysisTarget("fraud", "8", "ml", 1, 10))
    assert result.verdict == "Inconclusive"
    return result.reason.replace(server.url, "<prometheus>")


@pytest.mark.parametrize(
    ("response", "words"),
    [
        (answer(502, text=HOSTILE), "Prometheus unavailable: <prometheus> answered 502"),
        (
            answer(400, json_body={"status": "error", "errorType": "bad_data", "error": HOSTILE}),
            "failed: refused (400 bad_data)",
        ),
        (answer(422, json_body={"status": "error", "errorType": HOSTILE, "error": HOSTILE}), "refused (422)"),
        (answer(200, json_body={"status": HOSTILE}), "refused (200)"),
        (answer(200, text=HOSTILE), "refused (200)"),
        (
            answer(200, json_body={"status": "success", "data": {"resultType": HOSTILE, "result": []}}),
            "got another type",
        ),
        (
            answer(200, json_body={"status": "success", "data": {"resultType": "vector", "result": [{}]}}),
            "malformed result",
        ),
        (
            answer(200, json_body={"status": "success", "data": {"resultType": "scalar", "result": [1, HOSTILE]}}),
            "malformed result",
        ),
        (answer(200, json_body={"status": "success", "data": HOSTILE}), "malformed result"),
    ],
)
async def test_analysis_reasons_name_the_status_code_and_never_the_answer(
    server: RawServer, response: bytes, words: str
) -> None:
    server.reply = response
    reason = await _reason(server)
    assert words in reason
    assert MARK not in reason


async def test_analysis_of_an_unreachable_prometheus_names_the_error_class_only(server: RawServer) -> None:
    server.reply = MALFORMED
    reason = await _reason(server)
    assert reason == "Prometheus unavailable: <prometheus> unreachable (ClientResponseError)"

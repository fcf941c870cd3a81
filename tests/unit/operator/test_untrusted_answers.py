"""What a registry or Prometheus answers (their URLs come from the spec) never reaches a status reason or an
Event beyond the status code and fixed words: a hostile server cannot write into them."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from modelpilot.operator.analysis import AnalysisTarget, analyse
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

Handler = Callable[[httpx.Request], httpx.Response]


def _registry(handler: Handler) -> MlflowRegistry:
    return MlflowRegistry("http://mlflow.example:5000", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("response", "error_class", "words"),
    [
        (httpx.Response(503, text=HOSTILE), RegistryUnavailableError, "answered 503"),
        (
            httpx.Response(500, json={"error_code": "INTERNAL_ERROR", "message": HOSTILE}),
            RegistryUnavailableError,
            "500",
        ),
        (
            httpx.Response(403, json={"error_code": "PERMISSION_DENIED", "message": HOSTILE}),
            RegistryRejectedError,
            "refused (403 PERMISSION_DENIED)",
        ),
        (httpx.Response(400, json={"error_code": HOSTILE, "message": HOSTILE}), RegistryRejectedError, "refused (400)"),
        (httpx.Response(401, text=HOSTILE), RegistryRejectedError, "refused (401)"),
        (
            httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": HOSTILE}),
            ModelNotFoundError,
            "registered model fraud not found at http://mlflow.example:5000",
        ),
        (httpx.Response(200, text=HOSTILE), RegistryRejectedError, "with no JSON"),
        (httpx.Response(200, json=[HOSTILE]), RegistryRejectedError, "no JSON object"),
        (httpx.Response(200, json={"registered_model": HOSTILE}), RegistryRejectedError, "without a registered_model"),
        (
            httpx.Response(200, json={"registered_model": {"aliases": [HOSTILE]}}),
            RegistryRejectedError,
            "malformed model",
        ),
        (
            httpx.Response(200, json={"registered_model": {"latest_versions": [{"current_stage": "Staging"}]}}),
            RegistryRejectedError,
            "malformed model",
        ),
    ],
)
async def test_registry_errors_name_the_status_code_and_never_the_answer(
    response: httpx.Response, error_class: type[RegistryError], words: str
) -> None:
    registry = _registry(lambda request: response)
    try:
        with pytest.raises(error_class) as raised:
            await registry.resolve(ModelRef(name="fraud", alias="champion"))
    finally:
        await registry.aclose()
    message = str(raised.value)
    assert words in message
    assert MARK not in message


async def test_a_protocol_error_quoting_the_server_is_named_by_its_class_only() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError(f"illegal header line: {HOSTILE}", request=request)

    registry = _registry(handler)
    try:
        with pytest.raises(RegistryUnavailableError) as raised:
            await registry.resolve(ModelRef(name="fraud", alias="champion"))
    finally:
        await registry.aclose()
    assert "unreachable (RemoteProtocolError)" in str(raised.value)
    assert MARK not in str(raised.value)


async def test_a_malformed_model_version_is_a_registry_error() -> None:
    registry = _registry(lambda request: httpx.Response(200, json={"model_version": {"version": HOSTILE}}))
    try:
        with pytest.raises(RegistryRejectedError) as raised:
            await registry.get_version("fraud", "7")
    finally:
        await registry.aclose()
    assert MARK not in str(raised.value)


def _analysis() -> Analysis:
    return Analysis.model_validate({"prometheus": "http://prometheus.example:9090", "minRequests": 1})


async def _reason(handler: Handler) -> str:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await analyse(_analysis(), AnalysisTarget("fraud", "8", "ml", 1, 10), client=client)
    assert result.verdict == "Inconclusive"
    return result.reason


@pytest.mark.parametrize(
    ("response", "words"),
    [
        (httpx.Response(502, text=HOSTILE), "Prometheus unavailable: http://prometheus.example:9090 answered 502"),
        (
            httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": HOSTILE}),
            "failed: refused (400 bad_data)",
        ),
        (httpx.Response(422, json={"status": "error", "errorType": HOSTILE, "error": HOSTILE}), "refused (422)"),
        (httpx.Response(200, json={"status": HOSTILE}), "refused (200)"),
        (httpx.Response(200, text=HOSTILE), "refused (200)"),
        (
            httpx.Response(200, json={"status": "success", "data": {"resultType": HOSTILE, "result": []}}),
            "got another type",
        ),
        (
            httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [{}]}}),
            "malformed result",
        ),
        (
            httpx.Response(200, json={"status": "success", "data": {"resultType": "scalar", "result": [1, HOSTILE]}}),
            "malformed result",
        ),
        (httpx.Response(200, json={"status": "success", "data": HOSTILE}), "malformed result"),
    ],
)
async def test_analysis_reasons_name_the_status_code_and_never_the_answer(response: httpx.Response, words: str) -> None:
    reason = await _reason(lambda request: response)
    assert words in reason
    assert MARK not in reason


async def test_analysis_of_an_unreachable_prometheus_names_the_error_class_only() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError(HOSTILE, request=request)

    reason = await _reason(handler)
    assert reason == "Prometheus unavailable: http://prometheus.example:9090 unreachable (RemoteProtocolError)"

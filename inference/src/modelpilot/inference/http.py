"""The HTTP edge: request ids, body limits, auth, rate limits, metrics and access logs in one ASGI layer.

A plain ASGI middleware (not BaseHTTPMiddleware) so a request costs a few dict lookups here.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelpilot.inference.auth import Authenticator
from modelpilot.inference.errors import PayloadTooLargeError, ServingError
from modelpilot.inference.logs import ACCESS_LOGGER
from modelpilot.inference.metrics import ServingMetrics
from modelpilot.inference.ratelimit import RateLimiter

log = logging.getLogger("modelpilot.inference")
access_log = logging.getLogger(ACCESS_LOGGER)

# Probes and scrapes never need credentials and are never rate limited.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})
_JSON = [(b"content-type", b"application/json")]


def json_default(value: Any) -> Any:
    """orjson fallback for numpy scalars/object arrays and anything else with a string form."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def json_bytes(document: Any) -> bytes:
    """orjson with numpy arrays serialised natively."""
    return orjson.dumps(document, default=json_default, option=orjson.OPT_SERIALIZE_NUMPY)


def error_response(error: ServingError) -> Response:
    """The one mapping from domain errors to HTTP answers."""
    return Response(
        json_bytes(error.body()), status_code=error.status, headers=error.headers(), media_type="application/json"
    )


async def serving_error_handler(request: Request, error: Exception) -> Response:
    """Exception handler the app registers for `ServingError`."""
    assert isinstance(error, ServingError)
    return error_response(error)


class ServingMiddleware:
    """Wraps every HTTP request: id, size limit, auth, rate limit, then metrics and one access-log line."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServingMetrics,
        authenticator: Authenticator,
        limiter: RateLimiter | None,
        max_body_bytes: int,
        max_batch_body_bytes: int,
        access_log_enabled: bool,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.authenticator = authenticator
        self.limiter = limiter
        self.max_body = max_body_bytes
        self.max_batch_body = max_batch_body_bytes
        self.access_log = access_log_enabled
        self._id_prefix = os.urandom(4).hex()
        self._counter = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id, content_length, authorization, api_key = self._read_headers(scope["headers"])
        rid = request_id.encode()
        state = {"status": 500, "started": False, "bytes_in": 0}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
            await send(message)

        path: str = scope["path"]
        limit = self.max_batch_body if path.endswith("/predict_batch") else self.max_body
        client = "anonymous"
        try:
            if content_length is not None and content_length > limit:
                raise PayloadTooLargeError(
                    f"body of {content_length} bytes is over the {limit}-byte limit", limit=limit
                )
            if path not in OPEN_PATHS:
                if self.authenticator.enabled:
                    client = self.authenticator.authenticate(authorization, api_key)
                elif scope.get("client"):
                    client = scope["client"][0]
                if self.limiter is not None:
                    self.limiter.check(client)
            scope.setdefault("state", {})["request_id"] = request_id
            await self.app(scope, self._limit_receive(receive, limit, state), send_with_id)
        except ServingError as error:
            if not state["started"]:
                await error_response(error)(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"fields": {"request_id": request_id}})
            if not state["started"]:
                body = orjson.dumps({"error": "internal_error", "message": "internal error", "request_id": request_id})
                await send_with_id({"type": "http.response.start", "status": 500, "headers": _JSON})
                await send_with_id({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - start
            route = self._route_template(scope)
            status = int(state["status"])
            self.metrics.observe_request(route, status, elapsed)
            if self.access_log:
                access_log.info(
                    "request",
                    extra={
                        "fields": {
                            "request_id": request_id,
                            "method": scope["method"],
                            "path": path,
                            "route": route,
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 3),
                            "bytes_in": state["bytes_in"],
                            "client": client,
                        }
                    },
                )

    def _read_headers(self, headers: list[tuple[bytes, bytes]]) -> tuple[str, int | None, str | None, str | None]:
        request_id = None
        content_length = None
        authorization = None
        api_key = None
        for name, value in headers:
            if name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    content_length = None
            elif name == b"x-request-id" and 0 < len(value) <= 128 and value.isascii():
                request_id = value.decode()
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-api-key":
                api_key = value.decode("latin-1")
        if request_id is None:
            self._counter += 1
            request_id = f"{self._id_prefix}-{self._counter:x}"
        return request_id, content_length, authorization, api_key

    def _limit_receive(self, receive: Receive, limit: int, state: dict[str, Any]) -> Receive:
        async def limited() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["bytes_in"] += len(message.get("body", b""))
                if state["bytes_in"] > limit:
                    raise PayloadTooLargeError(f"body is over the {limit}-byte limit", limit=limit)
            return message

        return limited

    def _route_template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return str(getattr(route, "path", "unmatched"))
        # Rejected before routing (auth, limits): match the template without running the route.
        router = getattr(self.app, "router", None) or _find_router(self.app)
        for candidate in getattr(router, "routes", ()):
            match, _ = candidate.matches(scope)
            if match == Match.FULL:
                return str(candidate.path)
        return "unmatched"


def _find_router(app: Any) -> Any:
    seen = 0
    while app is not None and seen < 16:
        if hasattr(app, "routes"):
            return app
        app = getattr(app, "app", None)
        seen += 1
    return None

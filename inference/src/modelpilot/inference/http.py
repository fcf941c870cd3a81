"""The HTTP edge: request ids, body limits, auth, rate limits, metrics and access logs in one ASGI layer.

The edge is the outermost ASGI app and answers the prediction routes itself, so a prediction costs a
few dict lookups here plus the work of the route, not a walk through a middleware stack and a router.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.datastructures import State
from starlette.requests import ClientDisconnect, Request
from starlette.routing import Match, compile_path
from starlette.types import Message, Receive, Scope, Send

from modelpilot.inference.auth import Authenticator
from modelpilot.inference.clients import ClientAddresses
from modelpilot.inference.dataplane import DataPlane
from modelpilot.inference.decoding import is_csv
from modelpilot.inference.errors import (
    MethodNotAllowedError,
    PayloadTooLargeError,
    ServingError,
    UnauthorizedError,
)
from modelpilot.inference.logs import AccessLog
from modelpilot.inference.metrics_endpoint import MetricsEndpoint
from modelpilot.inference.predlog.labels import LABELS_PATH
from modelpilot.inference.predlog.records import REQUEST_ID
from modelpilot.inference.ratelimit import RateLimiter
from modelpilot.inference.responses import error_response
from modelpilot.inference.routes import PredictionCall, PredictionRoute, StreamingCall, StreamingRoute

log = logging.getLogger("modelpilot.inference")

# Probes never need credentials and are never rate limited (/metrics has a listener of its own).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
_JSON = [(b"content-type", b"application/json")]
# An inbound X-Request-Id is kept when it is a valid id (stored by the prediction log), else one is generated.
REQUEST_ID_BYTES = re.compile(REQUEST_ID.pattern.encode())
# request id, Content-Length, Content-Type, Authorization, X-API-Key, forwarded-for header,
# Inference-Header-Content-Length
_RequestHead = tuple[str, int | None, str, str | None, str | None, str | None, str | None]


class _EdgeRoutes:
    """The routes the edge answers itself: exact paths by dict lookup, templates by regex."""

    def __init__(self, routes: list[tuple[str, Any]]) -> None:
        self.exact: dict[str, tuple[str, Any]] = {}
        self.templated: list[tuple[re.Pattern[str], str, Any]] = []
        for template, handler in routes:
            if "{" in template:
                pattern, _, _ = compile_path(template)
                self.templated.append((pattern, template, handler))
            else:
                self.exact[template] = (template, handler)

    def match(self, path: str) -> tuple[str, Any, dict[str, str]] | None:
        found = self.exact.get(path)
        if found is not None:
            return found[0], found[1], {}
        for pattern, template, handler in self.templated:
            matched = pattern.match(path)
            if matched is not None:
                return template, handler, matched.groupdict()
        return None


class ServingEdge:
    """The ASGI app the server runs: request id, size limit, auth, rate limit, metrics and one access line.

    Prediction routes are answered here directly (decode → data plane → JSON), so they skip the router
    and middleware stack of the inner FastAPI app; every other request (probes, metadata, metrics, CSV
    batch) is passed to that app. Lifespan events go to the inner app as they are.
    """

    def __init__(
        self,
        app: FastAPI,
        *,
        plane: DataPlane,
        routes: list[tuple[str, PredictionRoute]],
        streaming_routes: list[tuple[str, StreamingRoute]],
        authenticator: Authenticator,
        limiter: RateLimiter | None,
        auth_failures: RateLimiter | None = None,
        addresses: ClientAddresses | None = None,
        forwarded_header: str = "x-forwarded-for",
        max_body_bytes: int,
        max_batch_body_bytes: int,
        access_log: AccessLog | None,
    ) -> None:
        self.app = app
        self.plane = plane
        self.metrics = plane.metrics
        self.routes = _EdgeRoutes([*routes, *streaming_routes])
        self._streaming = {handler for _, handler in streaming_routes}
        self.authenticator = authenticator
        self.limiter = limiter
        self.auth_failures = auth_failures
        self.addresses = addresses or ClientAddresses()
        # Read only when proxies are trusted; an impossible header name otherwise.
        self.forwarded_header = forwarded_header.lower().encode() if self.addresses.trusted else b"\n"
        self.max_body = max_body_bytes
        self.max_batch_body = max_batch_body_bytes
        self.access_log = access_log
        self.metrics_app = MetricsEndpoint(plane.metrics)
        # 64 random bits per process and a counter: ids unique across pods and restarts, at the cost of a counter.
        self._id_prefix = os.urandom(8).hex()
        self._counter = 0

    @property
    def state(self) -> State:
        """The inner app's state (`state.plane`, `state.settings`)."""
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        head = self._read_headers(scope["headers"])
        request_id = head[0]
        rid = request_id.encode()
        path: str = scope["path"]
        edge_route = self.routes.match(path)
        route = edge_route[0] if edge_route is not None else None
        # Uploads read as they arrive (batch predictions, CSV labels) may be larger than a JSON body.
        streamed = path.endswith("/predict_batch") or (path == LABELS_PATH and is_csv(head[2]))
        limit = self.max_batch_body if streamed else self.max_body
        state: dict[str, Any] = {"status": 500, "started": False, "bytes_in": 0}
        client = "anonymous"

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
            await send(message)

        try:
            client = self._admit(scope, path, limit, head)
            if edge_route is None:
                scope.setdefault("state", {})["request_id"] = request_id
                await self.app(scope, self._limit_receive(receive, limit, state), send_with_id)
            else:
                await self._answer(edge_route, scope, receive, send, limit, state, head)
        except ServingError as error:
            if not state["started"]:
                await error_response(error)(scope, receive, send_with_id)
            else:  # a streamed answer aborted: returning without its last chunk makes the server close it
                state["status"] = error.status
        except ClientDisconnect:
            if not state["started"]:
                state["status"] = 499  # the client went away before its answer; nothing to send
        except Exception:
            log.exception("unhandled error", extra={"fields": {"request_id": request_id}})
            if not state["started"]:
                body = orjson.dumps({"error": "internal_error", "message": "internal error", "request_id": request_id})
                await send_with_id({"type": "http.response.start", "status": 500, "headers": _JSON})
                await send_with_id({"type": "http.response.body", "body": body})
        finally:
            template = route if route is not None else self._route_template(scope)
            self._record(scope, template, state, request_id, client, time.perf_counter() - start)

    async def _answer(
        self,
        edge_route: tuple[str, Any, dict[str, str]],
        scope: Scope,
        receive: Receive,
        send: Send,
        limit: int,
        state: dict[str, Any],
        head: _RequestHead,
    ) -> None:
        """Answer a route the edge serves itself: a JSON prediction, or a streamed CSV one."""
        template, handler, params = edge_route
        if scope["method"] != "POST":
            raise MethodNotAllowedError(f"{scope['method']} {template}; use POST", allow="POST")
        rid = (b"x-request-id", head[0].encode())
        content_type = head[2]
        if handler in self._streaming:
            request = Request(scope, self._limit_receive(receive, limit, state))
            first, rest = await handler(self.plane, StreamingCall(request, params))
            await self._stream(first, rest, receive, send, state, rid)
            return
        call = PredictionCall(self._body_reader(receive, limit, state), content_type, params, head[6], head[0])
        answer = await handler(self.plane, call)
        if type(answer) is bytes:
            body = answer
            headers = [*_JSON, (b"content-length", str(len(body)).encode()), rid]
        else:
            body = answer.body
            headers = [*answer.headers, (b"content-length", str(len(body)).encode()), rid]
        state["status"], state["started"] = 200, True
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _stream(
        self,
        first: bytes,
        rest: AsyncGenerator[bytes, None],
        receive: Receive,
        send: Send,
        state: dict[str, Any],
        rid: tuple[bytes, bytes],
    ) -> None:
        """A chunked CSV answer; stops computing when the client goes away (the body was read by now)."""
        gone = asyncio.ensure_future(receive())
        try:
            headers = [(b"content-type", b"text/csv; charset=utf-8"), rid]
            state["status"], state["started"] = 200, True
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": first, "more_body": True})
            async for part in rest:
                if gone.done():
                    state["status"] = 499
                    return
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()
            await rest.aclose()

    def _record(
        self, scope: Scope, template: str, state: dict[str, Any], request_id: str, client: str, elapsed: float
    ) -> None:
        """Count the request and write its access line."""
        status = int(state["status"])
        self.metrics.observe_request(template, status, elapsed)
        if self.access_log is not None:
            self.access_log.write(
                {
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "bytes_in": state["bytes_in"],
                    "client": client,
                }
            )

    def _admit(self, scope: Scope, path: str, limit: int, head: _RequestHead) -> str:
        """Size limit, credentials, rate limits; returns the client name for logs and limits.

        With credentials configured the client is who they name, and rate limits count per client;
        without, the client is its address (see `ClientAddresses`). Failed authentication is counted
        per address: an address that spent its budget of failures gets 429 before its credentials are
        even looked at, so guessing keys costs time.
        """
        _, content_length, _, authorization, api_key, forwarded, _ = head
        if content_length is not None and content_length > limit:
            raise PayloadTooLargeError(f"body of {content_length} bytes is over the {limit}-byte limit", limit=limit)
        if path in OPEN_PATHS:
            return "anonymous"
        peer = scope["client"][0] if scope.get("client") else "unknown"
        address = self.addresses.address(peer, forwarded) if self.addresses.trusted else peer
        return self.admit_client(address, authorization, api_key)

    def admit_client(self, address: str, authorization: str | None, api_key: str | None) -> str:
        """Credentials and rate limits of a client at `address`; its name (the gRPC service admits calls here too)."""
        if self.authenticator.enabled:
            if self.auth_failures is not None:
                self.auth_failures.check_left(address)
            try:
                client = self.authenticator.authenticate(authorization, api_key)
            except UnauthorizedError:
                if self.auth_failures is not None:
                    self.auth_failures.spend(address)
                raise
        else:
            client = address
        if self.limiter is not None:
            self.limiter.check(client)
        return client

    def _read_headers(self, headers: list[tuple[bytes, bytes]]) -> _RequestHead:
        request_id = None
        content_length = None
        content_type = ""
        authorization = None
        api_key = None
        header_length = None
        hops: list[str] = []
        for name, value in headers:
            if name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    content_length = None
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"x-request-id" and REQUEST_ID_BYTES.fullmatch(value) is not None:
                request_id = value.decode()
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-api-key":
                api_key = value.decode("latin-1")
            elif name == self.forwarded_header:
                hops.append(value.decode("latin-1"))
            elif name == b"inference-header-content-length":
                header_length = value.decode("latin-1")
        if request_id is None:
            self._counter += 1
            request_id = f"{self._id_prefix}-{self._counter:x}"
        forwarded = ",".join(hops) if hops else None  # repeated headers are one list, in order
        return request_id, content_length, content_type, authorization, api_key, forwarded, header_length

    def _body_reader(self, receive: Receive, limit: int, state: dict[str, Any]) -> Callable[[], Awaitable[bytes]]:
        async def read() -> bytes:
            chunks: list[bytes] = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunk = message.get("body", b"")
                state["bytes_in"] += len(chunk)
                if state["bytes_in"] > limit:
                    raise PayloadTooLargeError(f"body is over the {limit}-byte limit", limit=limit)
                if not message.get("more_body", False):
                    if not chunks:
                        return bytes(chunk)
                    chunks.append(chunk)
                    return b"".join(chunks)
                chunks.append(chunk)

        return read

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
        for candidate in self.app.router.routes:
            match, _ = candidate.matches(scope)
            if match == Match.FULL:
                return str(getattr(candidate, "path", "unmatched"))
        return "unmatched"

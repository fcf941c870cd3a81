"""`GET /metrics` on a listener of its own (`MODELPILOT_METRICS_PORT`), apart from the prediction port.

Per-feature input statistics say what clients send; they are for Prometheus inside the cluster, not for
whoever reaches the prediction port through the Gateway.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import Receive, Scope, Send

from modelpilot.inference.metrics import ServingMetrics

_TEXT = (b"content-type", b"text/plain; charset=utf-8")


class MetricsEndpoint:
    """The ASGI app of the metrics listener: `GET /metrics`, 404 elsewhere, 405 for other methods."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # nothing to start; answered for servers and test clients that ask
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            status, headers, body = 404, [_TEXT], b"not found; metrics are at /metrics\n"
        elif scope["method"] not in {"GET", "HEAD"}:
            status, headers, body = 405, [_TEXT, (b"allow", b"GET")], b"use GET\n"
        else:
            status, headers, body = 200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], self.metrics.exposition()
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

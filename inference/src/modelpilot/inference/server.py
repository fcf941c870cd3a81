"""uvicorn as the pod runs it: connection limits on the prediction port, and /metrics on a port of its own.

uvicorn's httptools protocol has no limit on the size of a request head and no timer while a request
head or body is being read: a connection that sends nothing, or half a request, stays open until the
client closes it, and httptools buffers a header of any length. `LimitedHttpToolsProtocol` adds what
production servers have: a size limit on the request head (431), a deadline for reading it counted
from the connection's start or the request's first byte (408), and an idle timeout while a body is
read (408). The common case (a whole request in one read) costs a few attribute checks, no timer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from modelpilot.inference.settings import Settings

log = logging.getLogger("modelpilot.inference")

# A read delivers at most this much; a head still incomplete after more than limit + one read is too large
# even when part of the read belonged to the request before it.
_READ_SLACK = 256 * 1024


class _HeadTooLargeError(Exception):
    """Raised inside a parser callback to stop parsing a head over the limit."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head size limit, a head read deadline and a body idle timeout."""

    max_head_bytes = 32 * 1024
    head_timeout = 10.0
    body_idle_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False  # a request started and its head is not complete
        self._in_body = False  # a head is complete and its body is not
        self._head_bytes = 0  # of the head's URL and complete headers
        self._raw_head_bytes = 0  # read while the head was incomplete (bounds the header being buffered)
        self._received = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._last_body_read = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self._received = True
        if self._in_body:
            self._last_body_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, _HeadTooLargeError):
                self._refuse(431, "Request Header Fields Too Large")
            else:
                self._refuse(400, "Invalid HTTP request received.")
            return
        if self._in_head:
            self._raw_head_bytes += len(data)
            if self._raw_head_bytes > self.max_head_bytes + _READ_SLACK:
                self._refuse(431, "Request Header Fields Too Large")
            elif self._head_timer is None:
                self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)
        elif self._in_body and self._body_timer is None:
            self._last_body_read = self.loop.time()
            self._body_timer = self.loop.call_later(self.body_idle_timeout, self._body_timed_out)

    # Parser callbacks.

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._raw_head_bytes = True, 0, 0

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head, self._in_body = False, True
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._cancel_body_timer()
        super().on_message_complete()

    # Limits.

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            raise _HeadTooLargeError

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._in_head or (self._received and self.cycle is None):
            self._refuse(408, "Request Timeout")
        elif self.cycle is None:
            self.transport.close()  # connected and never sent a byte

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        idle = self.loop.time() - self._last_body_read
        if self.flow.read_paused:  # the app is not reading: the client is not the one that is slow
            self._last_body_read, idle = self.loop.time(), 0.0
        if idle < self.body_idle_timeout:
            self._body_timer = self.loop.call_later(self.body_idle_timeout - idle, self._body_timed_out)
            return
        started = self.cycle is not None and self.cycle.response_started
        if started:
            self.transport.close()
        else:
            self._refuse(408, "Request Timeout")

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with a short text and close the connection; the app never sees this request."""
        self._cancel_head_timer()
        self._cancel_body_timer()
        if self.transport.is_closing():
            return
        body = message.encode()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None


def protocol_with_limits(settings: Settings) -> type[LimitedHttpToolsProtocol]:
    """The protocol class with the limits of `settings`."""
    return type(
        "ConfiguredHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {
            "max_head_bytes": settings.max_header_bytes,
            "head_timeout": settings.header_timeout_seconds,
            "body_idle_timeout": settings.body_timeout_seconds,
        },
    )


def server_config(settings: Settings, app: Any, *, port: int, lifespan: str = "on") -> uvicorn.Config:
    """uvicorn settings shared by the prediction and the metrics listener."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        loop="uvloop",
        http=protocol_with_limits(settings),
        lifespan=lifespan,  # type: ignore[arg-type]
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds) or None,
        timeout_keep_alive=int(settings.keep_alive_seconds),
        limit_concurrency=settings.max_concurrency or None,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        server_header=False,
    )


class ServingServer(uvicorn.Server):
    """The prediction listener, and the metrics listener started and stopped with it.

    The first signal marks the data plane as draining so /readyz turns 503 while requests finish;
    /metrics keeps answering until the prediction listener has finished its requests.
    """

    def __init__(
        self, config: uvicorn.Config, app: Any, metrics: uvicorn.Config | None, settings: Settings | None = None
    ) -> None:
        super().__init__(config)
        self._app = app
        self._metrics = uvicorn.Server(metrics) if metrics is not None else None
        self._settings = settings
        self._grpc: Any = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._app.state.plane.draining = True
        log.info("shutting down: finishing in-flight requests", extra={"fields": {"signal": int(sig)}})
        super().handle_exit(sig, frame)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self._metrics is not None and self.started and not self.should_exit:
            config = self._metrics.config
            config.load()
            self._metrics.lifespan = config.lifespan_class(config)
            await self._metrics.startup()
        settings = self._settings
        if settings is not None and settings.grpc_port and self.started and not self.should_exit:
            from modelpilot.inference.grpc_service import start_grpc

            self._grpc = await start_grpc(self._app, settings.host, settings.grpc_port, settings.max_body_bytes)

    async def shutdown(self, sockets: Any = None) -> None:
        if self._grpc is not None:  # in-flight calls finish within the same grace as HTTP requests
            await self._grpc.stop(self._settings.graceful_shutdown_seconds if self._settings else None)
        await super().shutdown(sockets)
        if self._metrics is not None and self._metrics.started:
            await self._metrics.shutdown()


def serve(settings: Settings, app: Any) -> None:
    """Run the prediction listener (and the metrics and gRPC ones unless their port is 0) until SIGTERM."""
    metrics = (
        server_config(settings, app.metrics_app, port=settings.metrics_port, lifespan="off")
        if settings.metrics_port
        else None
    )
    ServingServer(server_config(settings, app, port=settings.port), app, metrics, settings).run()

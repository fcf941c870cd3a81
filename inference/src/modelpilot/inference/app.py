"""The app factory: `create_app(settings, model)` builds the whole server in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import BinaryIO

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from modelpilot.inference.auth import load_authenticator
from modelpilot.inference.clients import ClientAddresses, parse_networks
from modelpilot.inference.dataplane import DataPlane
from modelpilot.inference.errors import ServingError
from modelpilot.inference.http import ServingEdge
from modelpilot.inference.logs import AccessLog
from modelpilot.inference.metrics import ServingMetrics
from modelpilot.inference.model import ServedModel
from modelpilot.inference.predlog.service import prediction_log_for
from modelpilot.inference.ratelimit import RateLimiter
from modelpilot.inference.responses import json_bytes, serving_error_handler
from modelpilot.inference.routes import GRPC_INFER_ROUTE, PREDICTION_ROUTES, ROUTES, STREAMING_ROUTES
from modelpilot.inference.settings import Settings


async def _internal_error(request: Request, error: Exception) -> Response:
    """A JSON 500 for an unexpected error in a routed request; the edge logs it."""
    body = {"error": "internal_error", "message": "internal error", "request_id": request.state.request_id}
    return Response(json_bytes(body), status_code=500, media_type="application/json")


def create_app(
    settings: Settings | None = None, model: ServedModel | None = None, *, access_stream: BinaryIO | None = None
) -> ServingEdge:
    """The ASGI app; the model loads in the background at startup unless `model` is ready already.

    Access lines go to `access_stream` (stdout when None) when `settings.access_log` is on.
    """
    settings = settings or Settings()
    model = model or ServedModel(settings)
    traffic_routes = (*(route for route, _ in [*PREDICTION_ROUTES, *STREAMING_ROUTES]), GRPC_INFER_ROUTE)
    metrics = ServingMetrics(model.name, model.version, settings.track, traffic_routes=traffic_routes)
    prediction_log = prediction_log_for(settings, model, metrics.registry)
    plane = DataPlane(settings, model, metrics, prediction_log)
    access_log = AccessLog(access_stream) if settings.access_log else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await plane.start()
        try:
            yield
        finally:
            await plane.stop()
            if access_log is not None:
                access_log.flush()

    app = FastAPI(
        title="modelpilot inference",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.plane = plane
    app.state.settings = settings
    # Plain Starlette routes: the handlers take the raw Request, so FastAPI's parameter solving
    # would only add per-request work.
    for path, endpoint, methods in ROUTES:
        app.add_route(path, endpoint, methods=methods)
    if prediction_log is not None:
        # psycopg is imported only by a server that keeps a prediction log.
        from modelpilot.inference.predlog.label_store import LABELS_PATH, post_labels

        app.state.label_store = prediction_log.labels
        app.add_route(LABELS_PATH, post_labels, methods=["POST"])
    app.add_exception_handler(ServingError, serving_error_handler)
    app.add_exception_handler(Exception, _internal_error)
    limiter = RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst) if settings.rate_limit_rps > 0 else None
    auth_failures = (
        RateLimiter(settings.auth_failure_rps, settings.auth_failure_burst) if settings.auth_failure_rps > 0 else None
    )
    return ServingEdge(
        app,
        plane=plane,
        routes=PREDICTION_ROUTES,
        streaming_routes=STREAMING_ROUTES,
        authenticator=load_authenticator(settings),
        limiter=limiter,
        auth_failures=auth_failures,
        addresses=ClientAddresses(parse_networks(settings.trusted_proxies)),
        forwarded_header=settings.client_address_header,
        max_body_bytes=settings.max_body_bytes,
        max_batch_body_bytes=settings.max_batch_body_bytes,
        access_log=access_log,
    )

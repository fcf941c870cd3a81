"""The app factory: `create_app(settings, model)` builds the whole server in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from modelpilot.inference.auth import load_authenticator
from modelpilot.inference.dataplane import DataPlane
from modelpilot.inference.errors import ServingError
from modelpilot.inference.http import ServingMiddleware, serving_error_handler
from modelpilot.inference.metrics import ServingMetrics
from modelpilot.inference.model import ServedModel
from modelpilot.inference.ratelimit import RateLimiter
from modelpilot.inference.routes import ROUTES
from modelpilot.inference.settings import Settings


def create_app(settings: Settings | None = None, model: ServedModel | None = None) -> FastAPI:
    """The ASGI app; the model loads in the background at startup unless `model` is ready already."""
    settings = settings or Settings()
    model = model or ServedModel(settings)
    metrics = ServingMetrics(model.name, model.version, settings.track)
    plane = DataPlane(settings, model, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await plane.start()
        try:
            yield
        finally:
            await plane.stop()

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
    app.add_exception_handler(ServingError, serving_error_handler)
    limiter = RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst) if settings.rate_limit_rps > 0 else None
    app.add_middleware(
        ServingMiddleware,
        metrics=metrics,
        authenticator=load_authenticator(settings),
        limiter=limiter,
        max_body_bytes=settings.max_body_bytes,
        max_batch_body_bytes=settings.max_batch_body_bytes,
        access_log_enabled=settings.access_log,
    )
    return app

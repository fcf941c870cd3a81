"""`modelpilot-serve`: uvicorn with uvloop and httptools, one worker, graceful shutdown."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from modelpilot.inference.app import create_app
from modelpilot.inference.logs import configure_logging
from modelpilot.inference.settings import Settings

log = logging.getLogger("modelpilot.inference")


class _Server(uvicorn.Server):
    """Marks the data plane as draining on the first signal so /readyz turns 503 while requests finish."""

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._app.state.plane.draining = True
        log.info("shutting down: finishing in-flight requests", extra={"fields": {"signal": int(sig)}})
        super().handle_exit(sig, frame)


def main() -> None:
    """Read settings from the environment and serve until SIGTERM."""
    settings = Settings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds) or None,
        server_header=False,
    )
    _Server(config, app).run()


if __name__ == "__main__":
    main()

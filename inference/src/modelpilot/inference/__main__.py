"""`modelpilot-serve`: uvicorn with uvloop and httptools, one worker, connection limits, graceful shutdown."""

from __future__ import annotations

from modelpilot.inference.app import create_app
from modelpilot.inference.logs import configure_logging
from modelpilot.inference.server import serve
from modelpilot.inference.settings import Settings


def main() -> None:
    """Read settings from the environment and serve until SIGTERM."""
    settings = Settings()
    configure_logging(settings.log_level)
    serve(settings, create_app(settings))


if __name__ == "__main__":
    main()

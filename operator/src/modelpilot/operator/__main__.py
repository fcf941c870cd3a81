"""`modelpilot-operator`: run the Kopf operator with the settings from the environment."""

from __future__ import annotations

import logging
import sys

import kopf
import orjson

from modelpilot.operator import main as handlers  # noqa: F401 - registers the Kopf handlers
from modelpilot.operator.settings import OperatorSettings


class JsonFormatter(logging.Formatter):
    """One JSON object per log line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("k8s_obj", "k8s_skip"):
            record.__dict__.pop(key, None)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(log_format: str) -> None:
    """JSON logs by default, plain text for people at a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)


def main() -> None:
    """Entry point of the operator process."""
    settings = OperatorSettings()
    configure_logging(settings.log_format)
    namespaces = settings.namespace_patterns
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=not settings.peering,
        peering_name=settings.peering or None,
        priority=settings.priority,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
    )


if __name__ == "__main__":
    main()

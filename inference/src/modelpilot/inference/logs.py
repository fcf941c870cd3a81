"""JSON log lines on stdout: one object per line, extra fields under `fields`."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, BinaryIO

import orjson

ACCESS_LOGGER = "modelpilot.access"


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", …fields}`; exceptions go in `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "info") -> None:
    """Route the root logger (and uvicorn's) to one JSON handler on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the server writes its own access lines


class AccessLog:
    """One JSON line per request, written straight to stdout's bytes: no LogRecord, no handler lock per line.

    Lines carry the same keys as the `JsonFormatter` lines of the `modelpilot.access` logger. They are
    buffered and written at most `flush_seconds` later (or once `max_buffer` bytes are pending), so a busy
    server makes one write call per many requests; `flush()` runs at shutdown.
    """

    def __init__(self, stream: BinaryIO | None = None, flush_seconds: float = 0.2, max_buffer: int = 64 * 1024) -> None:
        self._stream = stream
        self.flush_seconds = flush_seconds
        self.max_buffer = max_buffer
        self._buffer = bytearray()
        self._flush_pending: asyncio.TimerHandle | None = None
        self._second = -1
        self._second_text = ""

    def write(self, fields: dict[str, Any]) -> None:
        """Queue one line; it reaches the stream within `flush_seconds`."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry = {
            "time": f"{self._second_text}.{int((now - second) * 1000):03d}Z",
            "level": "info",
            "logger": ACCESS_LOGGER,
            "message": "request",
            **fields,
        }
        self._buffer += orjson.dumps(entry, default=str, option=orjson.OPT_APPEND_NEWLINE)
        if len(self._buffer) >= self.max_buffer:
            self.flush()
        elif self._flush_pending is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._flush_pending = loop.call_later(self.flush_seconds, self.flush)

    def flush(self) -> None:
        """Write what is pending."""
        if self._flush_pending is not None:
            self._flush_pending.cancel()
            self._flush_pending = None
        if not self._buffer:
            return
        stream = self._stream if self._stream is not None else sys.stdout.buffer
        stream.write(bytes(self._buffer))
        stream.flush()
        self._buffer.clear()

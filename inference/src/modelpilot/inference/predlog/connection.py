"""Connections to the log's database: short timeouts, so a database that went away is noticed quickly."""

from __future__ import annotations

from typing import Any

import psycopg

CONNECT_TIMEOUT_SECONDS = 5
# A statement that hangs (a network partition, a lock) fails instead of holding a writer for good.
STATEMENT_TIMEOUT = "30s"
# Keepalives notice a peer that vanished without closing the connection.
_OPTIONS = {
    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "application_name": "modelpilot-predlog",
    "options": f"-c statement_timeout={STATEMENT_TIMEOUT}",
}


def connect(dsn: str) -> psycopg.Connection[tuple[Any, ...]]:
    """A blocking connection (writer and maintenance threads)."""
    return psycopg.connect(dsn, **_OPTIONS)  # type: ignore[arg-type]


async def connect_async(dsn: str) -> psycopg.AsyncConnection[tuple[Any, ...]]:
    """An asyncio connection (the labels endpoint, on the event loop)."""
    return await psycopg.AsyncConnection.connect(dsn, **_OPTIONS)  # type: ignore[arg-type]

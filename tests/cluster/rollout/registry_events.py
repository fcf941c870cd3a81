"""Every registry write the MLflow server reports, received as webhooks on loopback.

MLflow sends one delivery per tag set and alias set, so counting deliveries counts writes exactly —
the evidence that a promotion or rejection was written once, not repeated after a crash.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mlflow import MlflowClient

WRITE_EVENTS: list[Any] = [
    "model_version_tag.set",
    "model_version_tag.deleted",
    "model_version_alias.created",
    "model_version_alias.deleted",
]


@dataclass(frozen=True)
class RegistryWrite:
    """One delivery: e.g. ("model_version_tag", "set", {"name", "version", "key", "value"})."""

    entity: str
    action: str
    data: dict[str, Any]


@dataclass
class RegistryEvents:
    """Deliveries received so far, for one registered model."""

    model: str
    received: list[RegistryWrite] = field(default_factory=list)

    def tags_set(self, key: str, version: str | None = None) -> list[RegistryWrite]:
        """Tag writes of `key` (on `version`, if given)."""
        return [
            write
            for write in self.received
            if (write.entity, write.action) == ("model_version_tag", "set")
            and write.data.get("key") == key
            and (version is None or str(write.data.get("version")) == version)
        ]

    def aliases_set(self, alias: str) -> list[RegistryWrite]:
        """Alias writes of `alias` (each names the version it points at)."""
        return [
            write
            for write in self.received
            if (write.entity, write.action) == ("model_version_alias", "created") and write.data.get("alias") == alias
        ]

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Block until at least `count` deliveries arrived (MLflow delivers in the background)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.1)


@contextmanager
def registry_events(client: MlflowClient, model: str) -> Iterator[RegistryEvents]:
    """Record the registry writes of `model` while the block runs."""
    events = RegistryEvents(model)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            document = json.loads(body or b"{}")
            data = document.get("data") or {}
            if data.get("name") == model:
                events.received.append(RegistryWrite(document.get("entity", ""), document.get("action", ""), data))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/registry-events"
    webhook = client.create_webhook(name=f"events-{uuid.uuid4().hex[:8]}", url=url, events=WRITE_EVENTS)
    try:
        # The server caches its webhook list for MLFLOW_WEBHOOK_CACHE_TTL (1 s in tests).
        time.sleep(1.2)
        yield events
    finally:
        client.delete_webhook(webhook.webhook_id)
        server.shutdown()
        server.server_close()

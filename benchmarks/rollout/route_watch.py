"""Every canary weight an HTTPRoute carries, timed by a watch on the API server (not the lab's 0.5 s poll)."""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes import client, watch

from modelpilot.operator.builders.routing import router_weight

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"


class RouteWatcher:
    """Records (time.monotonic() the event arrived, canary weight) whenever the route's weight changes."""

    def __init__(self, api_client: client.ApiClient, namespace: str, name: str) -> None:
        self._api = client.CustomObjectsApi(api_client)
        self._namespace = namespace
        self._name = name
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._changes: list[tuple[float, int]] = []

    @property
    def changes(self) -> list[tuple[float, int]]:
        """The weight changes so far, oldest first."""
        with self._lock:
            return list(self._changes)

    def start(self) -> None:
        """Watch in a daemon thread until `stop`."""
        threading.Thread(target=self._run, name="route-watch", daemon=True).start()

    def stop(self) -> None:
        """Stop at the next event or watch timeout."""
        self._stopped.set()

    def _record(self, obj: dict[str, Any], at: float) -> None:
        weight = router_weight(obj) or 0
        with self._lock:
            if not self._changes or self._changes[-1][1] != weight:
                self._changes.append((at, weight))

    def _run(self) -> None:
        while not self._stopped.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self._api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self._namespace,
                    PLURAL,
                    field_selector=f"metadata.name={self._name}",
                    timeout_seconds=30,
                ):
                    arrived = time.monotonic()
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._record(event["object"], arrived)
                    if self._stopped.is_set():
                        stream.stop()  # type: ignore[no-untyped-call]
            except Exception:  # a dropped stream or an expired version is watched again from a fresh list
                if not self._stopped.is_set():
                    time.sleep(0.2)

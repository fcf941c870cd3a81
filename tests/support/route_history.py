"""Every state an HTTPRoute went through, from a watch on the API server: the canary weight and whether
it mirrored, in order, with no poll that could miss a short-lived state.

    with route_history(api_client, namespace, "classifier") as history:
        ... the rollout runs ...
    history.states  # [RouteState(weight=0, mirror=True, resource_version=…), …]
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client, watch

from modelpilot.operator.builders.routing import router_mirrors, router_weight

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"


@dataclass(frozen=True)
class RouteState:
    """One version of the route."""

    weight: int
    mirror: bool
    resource_version: str


@dataclass
class RouteHistory:
    """The states seen so far (consecutive duplicates of one resourceVersion dropped)."""

    states: list[RouteState] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, obj: dict[str, Any]) -> None:
        version = str(obj["metadata"].get("resourceVersion", ""))
        state = RouteState(router_weight(obj) or 0, router_mirrors(obj), version)
        with self.lock:
            if not self.states or self.states[-1].resource_version != version:
                self.states.append(state)

    def snapshot(self) -> list[RouteState]:
        with self.lock:
            return list(self.states)


@contextmanager
def route_history(api_client: client.ApiClient, namespace: str, name: str) -> Iterator[RouteHistory]:
    """Watch the HTTPRoute `name` until the block ends."""
    history = RouteHistory()
    stopped = threading.Event()
    api = client.CustomObjectsApi(api_client)
    watcher = watch.Watch()  # type: ignore[no-untyped-call]

    def follow() -> None:
        resource_version = ""
        while not stopped.is_set():
            try:
                for event in watcher.stream(  # type: ignore[no-untyped-call]
                    api.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                    field_selector=f"metadata.name={name}", resource_version=resource_version, timeout_seconds=5,
                ):  # fmt: skip
                    obj = event["object"]
                    resource_version = obj["metadata"].get("resourceVersion", resource_version)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        history.record(obj)
                    if stopped.is_set():
                        return
            except client.ApiException as error:
                if error.status == 410:  # the version is too old: list again
                    resource_version = ""
                elif stopped.wait(0.5):
                    return
            except urllib3.exceptions.HTTPError:
                # The stream was cut (by `stop`, or the server): watch on from the last version seen.
                if stopped.wait(0.1):
                    return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield history
    finally:
        stopped.set()
        watcher.stop()  # type: ignore[no-untyped-call]
        thread.join(timeout=10)

"""The API server allocates cluster IPs one Service at a time: the operator applies a few Services at a time, and
the others wait without holding a worker thread, so a Deployment applied meanwhile is not held behind them. Real
API server; the client's requests are the real ones, counted as they go out."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from kubernetes import client

from modelpilot.operator.kubeapi import SERVICE_APPLIES, KubeApi

SERVICES = 8 * SERVICE_APPLIES


class InFlight(KubeApi):
    """`KubeApi` that records, per kind of request, the most requests it had in flight at once."""

    def __init__(self, api_client: client.ApiClient) -> None:
        super().__init__(api_client)
        self.lock = threading.Lock()
        self.now: dict[str, int] = {}
        self.most: dict[str, int] = {}

    def _request_sync(self, method: str, path: str, *args: Any) -> dict[str, Any]:
        kind = f"{method} {path.split('/')[-2]}"
        with self.lock:
            self.now[kind] = self.now.get(kind, 0) + 1
            self.most[kind] = max(self.most.get(kind, 0), self.now[kind])
        try:
            return super()._request_sync(method, path, *args)
        finally:
            with self.lock:
                self.now[kind] -= 1


def _service(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8080}]},
    }


def _deployment(namespace: str, name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
    }


async def test_a_few_services_are_applied_at_a_time_and_deployments_pass_them(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = InFlight(api_client)
    services = [asyncio.ensure_future(kube.apply(_service(namespace, f"s{i}"))) for i in range(SERVICES)]
    await asyncio.sleep(0)  # every Service apply has started, and most wait for a slot
    deployments = [kube.apply(_deployment(namespace, f"d{i}")) for i in range(2 * SERVICE_APPLIES)]
    applied = await asyncio.gather(*deployments)
    assert all(found["metadata"]["uid"] for found in applied)
    pending = sum(not service.done() for service in services)

    created = await asyncio.gather(*services)
    assert sorted(found["metadata"]["name"] for found in created) == sorted(f"s{i}" for i in range(SERVICES))
    assert kube.most["PATCH services"] == SERVICE_APPLIES
    # The Deployments went out beside the Services, not after all of them (the threads are not all waiting on one).
    assert pending > 0
    assert kube.most["PATCH deployments"] > 1

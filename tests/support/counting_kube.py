"""The operator's Kubernetes client, recording every request it makes — for tests and benchmarks that count
what a reconcile asks the API server."""

from __future__ import annotations

from typing import Any

from modelpilot.operator.kubeapi import KubeApi, load_api_client
from tests.support.cluster import Cluster


class CountingKube(KubeApi):
    """`KubeApi` that records each request as (method, resource), e.g. ("GET", "deployments"); a status
    subresource counts as its resource."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(load_api_client(str(cluster.kubeconfig)))
        self.requests: list[tuple[str, str]] = []

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        parts = path.split("/")
        self.requests.append((method, parts[-3] if parts[-1] == "status" else parts[-2]))
        return await super()._request(method, path, **kwargs)

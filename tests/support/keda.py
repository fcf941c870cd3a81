"""KEDA's CRDs (ScaledObject) on the cluster, from hack/keda-crds."""

from __future__ import annotations

from kubernetes import client

from tests.support.crds import install_crds


def install_keda_crds(api_client: client.ApiClient, timeout: float = 60.0) -> list[str]:
    """Server-side apply KEDA's CRDs (the same version applies as a no-op) and wait until Established."""
    return install_crds(api_client, "keda-crds", timeout)

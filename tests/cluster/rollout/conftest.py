"""Fixtures for rollouts on kwok pods: the lab beside the cluster, a registered model, the operator.

The rollout outcomes a user sees — promotion through a real Gateway with the operator pod killed, error
and latency rollbacks, Prometheus down — run on real pods in tests/e2e. What stays here needs what only
the lab gives: its splitter records the weight and the versions behind it at every change (so a test can
assert the ramp step by step, that no request met an unready canary, and the replica router's real share
at each step), and its servers start in seconds, so the legacy stage flow is covered too.

Each test gets its own namespace, lab (real servers, splitter, Prometheus) and registered model;
the MLflow server, the logged classifier, the Gateway API CRDs and the warm server processes are
shared by the session.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from mlflow import MlflowClient

from modelpilot.operator.spec import GROUP, VERSION
from tests.support.cluster import Cluster, wait_until
from tests.support.lab import (
    Lab,
    LabSettings,
    LoggedClassifier,
    WarmServerPool,
    install_gateway_api_crds,
    log_classifier,
    register_versions,
    running_lab,
)
from tests.support.mlflow_server import MlflowServer
from tests.support.namespace_objects import Resources
from tests.support.operator_process import operator_process

RESOURCE = "classifier"
CANDIDATE_ALIAS = "challenger"


@pytest.fixture(scope="session")
def gateway_api(api_client: client.ApiClient) -> list[str]:
    """The HTTPRoute CRD (and the rest of the standard channel), installed."""
    return install_gateway_api_crds(api_client)


@pytest.fixture(scope="session")
def classifier(mlflow: MlflowServer) -> LoggedClassifier:
    """The lab's torch classifier, logged once."""
    return log_classifier(mlflow.url)


@pytest.fixture(scope="session")
def server_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarmServerPool]:
    """Pre-imported inference server processes shared by the labs of the session."""
    pool = WarmServerPool(tmp_path_factory.mktemp("servers"), size=2)
    yield pool
    pool.close()


@pytest.fixture
def lab(
    cluster: Cluster,
    namespace: str,
    mlflow: MlflowServer,
    gateway_api: list[str],
    modelpilot_crd: dict[str, Any],
    server_pool: WarmServerPool,
    tmp_path: Path,
) -> Iterator[Lab]:
    """A running lab for the ModelDeployment `classifier` in the test's namespace."""
    settings = LabSettings(cluster.kubeconfig, namespace, RESOURCE, mlflow.url, tmp_path / "lab")
    with running_lab(settings, server_pool) as running:
        yield running


@pytest.fixture
def operator(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The operator process watching the test namespace."""
    with operator_process(cluster.kubeconfig, namespace, tmp_path / "operator.log") as process:
        yield process


@dataclass
class LabModel:
    """A registered model of the lab classifier with versions "1" (stable) and "2" (candidate)."""

    name: str
    client: MlflowClient
    stable: str
    candidate: str

    def alias(self, alias: str) -> str | None:
        """The version an alias names, or None."""
        found = self.client.get_registered_model(self.name).aliases.get(alias)
        return None if found is None else str(found)

    def tags(self, version: str) -> dict[str, str]:
        """The tags of a version."""
        return dict(self.client.get_model_version(self.name, version).tags)

    def stage(self, version: str) -> str:
        """The (legacy) stage of a version."""
        return str(self.client.get_model_version(self.name, version).current_stage)


@pytest.fixture
def lab_model(mlflow: MlflowServer, classifier: LoggedClassifier) -> LabModel:
    """A fresh registered model with two versions; nothing points at them yet."""
    name = f"lab-{uuid.uuid4().hex[:8]}"
    stable, candidate = register_versions(classifier, name, 2)
    mlflow_client = MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url)
    return LabModel(name, mlflow_client, stable, candidate)


def rollout_spec(
    model: LabModel,
    tracking_uri: str,
    prometheus: str,
    *,
    stage_flow: bool = False,
    steps: tuple[int, ...] = (25, 50, 100),
    interval: str = "3s",
    **analysis: Any,
) -> dict[str, Any]:
    """A ModelDeployment rolled out through an HTTPRoute, with fast polls and a short analysis window."""
    pointers = (
        {"stage": "Production", "candidateStage": "Staging"}
        if stage_flow
        else {"alias": "champion", "candidateAlias": CANDIDATE_ALIAS}
    )
    analysis_spec = {
        "prometheus": prometheus,
        "window": "8s",
        "minRequests": 10,
        "maxErrorRate": 0.05,
        "maxP99Latency": "300ms",
        "failureLimit": 2,
        "inconclusiveLimit": 3,
        **analysis,
    }
    spec = {
        "model": {"name": model.name, **pointers},
        "registry": {"trackingUri": tracking_uri, "pollInterval": "1s"},
        "serving": {
            "image": "ghcr.io/modelpilot/inference:test",
            "replicas": 2,
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        },
        "traffic": {"router": "gateway", "gateway": {"parentRefs": [{"name": "public", "namespace": "gateways"}]}},
        "rollout": {"steps": list(steps), "interval": interval, "analysis": analysis_spec},
    }
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": RESOURCE}, "spec": spec}


class Objects:
    """The lab resource and its objects in one namespace (the namespace's `Resources`, bound to `RESOURCE`)."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.resources = Resources(cluster, namespace)

    def apply(self, manifest: dict[str, Any]) -> None:
        self.resources.apply(manifest)

    def get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        return self.resources.get(api_version, kind, name)

    def mdep(self) -> dict[str, Any]:
        return self.resources.mdep(RESOURCE)

    def wait(self, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 90) -> dict[str, Any]:
        """Wait until the ModelDeployment passes `check`; return it as it was then."""
        return self.resources.wait_mdep(RESOURCE, check, what, timeout=timeout, interval=0.25)

    def wait_gone(self, api_version: str, kind: str, name: str, timeout: float = 30) -> None:
        """Wait until the object no longer exists (deletion is in the background)."""
        self.resources.wait_gone(api_version, kind, name, timeout=timeout)

    def events(self) -> list[dict[str, Any]]:
        return self.resources.events(RESOURCE)

    def wait_events(self, reasons: set[str], timeout: float = 30) -> list[dict[str, Any]]:
        """Wait until Events with every one of `reasons` were posted on the resource (posting is asynchronous)."""

        def posted() -> list[dict[str, Any]] | None:
            found = self.events()
            return found if reasons <= {event["reason"] for event in found} else None

        return wait_until(
            posted,
            timeout=timeout,
            description=f"Events {sorted(reasons)} on {RESOURCE}",
        )

    def delete_mdep(self) -> None:
        self.resources.delete_mdep(RESOURCE)


@pytest.fixture
def objects(cluster: Cluster, namespace: str, modelpilot_crd: dict[str, Any]) -> Objects:
    """The lab resource and its objects in the test namespace."""
    return Objects(cluster, namespace)

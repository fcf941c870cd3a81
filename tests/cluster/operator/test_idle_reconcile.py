"""An idle reconcile — nothing changed in the cluster or the registry — asks the API server for nothing: the
resource comes from the watch's copy while that copy is the version the API server last answered, and the
stable Deployment from the watch's copy while it carries the generation last applied. Without a watched
Deployment it reads that one object. Once someone else changes the resource or the Deployment, or the
operator's own status write has not come back through the watch yet, the run reads it anew. The real
reconcile, API server and MLflow; the watch events are fed by the test (Kopf delivers them in the operator)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client as k8s

from modelpilot.operator.handlers.reconcile import Outcome, reconcile
from modelpilot.operator.kubeapi import KubeApi, load_api_client
from modelpilot.operator.runtime import Runtime
from modelpilot.operator.settings import OperatorSettings
from modelpilot.operator.spec import GROUP, PLURAL, VERSION
from tests.cluster.operator.conftest import model_deployment, registered_model
from tests.support.cluster import Cluster
from tests.support.counting_kube import CountingKube
from tests.support.mlflow_server import MlflowServer
from tests.support.namespace_objects import Resources

NAME = "idle"
MDEP = f"{GROUP}/{VERSION}"


@dataclass
class Served:
    """A ModelDeployment of a registered champion, reconciled by a fresh runtime until a run is idle."""

    namespace: str
    kube: CountingKube
    runtime: Runtime
    reader: KubeApi

    async def current(self) -> dict[str, Any]:
        obj = await self.reader.get(MDEP, "ModelDeployment", self.namespace, NAME)
        assert obj is not None
        return obj

    async def run(self, seen: dict[str, Any]) -> Outcome | None:
        """One reconcile given the watch's copy `seen`; its requests are in `kube.requests`."""
        self.kube.requests.clear()
        return await reconcile(self.runtime, self.namespace, NAME, lambda *_: None, seen=seen)


def _apply_serving_a_champion(cluster: Cluster, namespace: str, mlflow: MlflowServer, name: str) -> None:
    """A registered model whose version 1 is its champion, and the ModelDeployment `name` serving it (60 s polls)."""
    model = registered_model(mlflow)
    model.set_alias("champion", model.add_version())
    Resources(cluster, namespace).apply(model_deployment(
        name,
        model,
        registry={"trackingUri": mlflow.url, "pollInterval": "60s"},
        serving={"image": "ghcr.io/modelpilot/inference:test", "replicas": 1},
    ))  # fmt: skip


@pytest.fixture
async def served(
    cluster: Cluster, namespace: str, modelpilot_crd: dict[str, Any], mlflow: MlflowServer
) -> AsyncIterator[Served]:
    _apply_serving_a_champion(cluster, namespace, mlflow, NAME)
    kube = CountingKube(cluster)
    served = Served(
        namespace,
        kube,
        Runtime(settings=OperatorSettings(), kube=kube),
        KubeApi(load_api_client(str(cluster.kubeconfig))),
    )
    try:
        # Until the stable track is Ready and a run writes nothing: the steady state.
        for _ in range(60):
            outcome = await served.run(await served.current())
            assert outcome is not None
            if outcome.requeue_after >= 60 and not any(method == "PATCH" for method, _ in kube.requests):
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"never idle; last requests {kube.requests}")
        yield served
    finally:
        await served.runtime.aclose()


async def test_an_idle_reconcile_reads_one_object_and_a_changed_resource_is_read_anew(
    cluster: Cluster, served: Served
) -> None:
    kube, runtime, namespace = served.kube, served.runtime, served.namespace
    current = served.current
    seen = await current()
    await served.run(seen)
    assert kube.requests == [("GET", "deployments")]

    # Someone else changes the resource; the watch brings the new version, which this process never read.
    k8s.CustomObjectsApi(cluster.api_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, NAME, {"metadata": {"annotations": {"example.com/touched": "yes"}}}
    )
    changed = await current()
    await served.run(changed)
    assert ("GET", "modeldeployments") in kube.requests
    assert runtime.answered_versions[(namespace, NAME)] == changed["metadata"]["resourceVersion"]

    # Someone clears the status: the run reads the resource anew and repairs the status with its own write.
    k8s.CustomObjectsApi(cluster.api_client).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, NAME, {"status": {"conditions": []}}
    )
    cleared = await current()
    await served.run(cleared)
    assert ("GET", "modeldeployments") in kube.requests
    assert ("PATCH", "modeldeployments") in kube.requests
    rewritten = await current()
    assert runtime.answered_versions[(namespace, NAME)] == rewritten["metadata"]["resourceVersion"]
    # Until the watch brings the version of that write, its copy is older than the write: read anew.
    await served.run(cleared)
    assert ("GET", "modeldeployments") in kube.requests
    await served.run(rewritten)
    assert kube.requests == [("GET", "deployments")]


async def test_an_idle_reconcile_observes_the_watched_deployment_and_reads_a_changed_one(
    cluster: Cluster, served: Served
) -> None:
    kube, runtime, namespace, reader = served.kube, served.runtime, served.namespace, served.reader
    seen = await served.current()
    stable = f"{NAME}-stable"
    deployment = await reader.get("apps/v1", "Deployment", namespace, stable)
    assert deployment is not None
    runtime.deployments.seen("MODIFIED", deployment)
    outcome = await served.run(seen)
    assert outcome is not None
    assert outcome.requeue_after >= 60, "still Ready from the watched copy"
    assert kube.requests == []

    # Someone else scales the Deployment (a new generation): the watched copy of it is not the one applied.
    k8s.AppsV1Api(cluster.api_client).patch_namespaced_deployment(stable, namespace, {"spec": {"replicas": 3}})
    changed = await reader.get("apps/v1", "Deployment", namespace, stable)
    assert changed is not None
    runtime.deployments.seen("MODIFIED", changed)
    # The read makes the operator forget what it had applied; it applies it again in that run or the next
    # (the read overlaps the applies).
    await served.run(seen)
    assert ("GET", "deployments") in kube.requests
    if ("PATCH", "deployments") not in kube.requests:
        await served.run(seen)
    assert ("PATCH", "deployments") in kube.requests, "the operator puts its replicas back"
    repaired = await reader.get("apps/v1", "Deployment", namespace, stable)
    assert repaired is not None
    assert repaired["spec"]["replicas"] == 1

    # Gone from the watch (the watch's word for a delete): read, not assumed.
    runtime.deployments.seen("DELETED", repaired)
    await served.run(seen)
    assert ("GET", "deployments") in kube.requests


async def test_a_new_resource_starts_from_the_watched_copy_until_its_first_status_write(
    cluster: Cluster, namespace: str, modelpilot_crd: dict[str, Any], mlflow: MlflowServer
) -> None:
    _apply_serving_a_champion(cluster, namespace, mlflow, "fresh")
    kube = CountingKube(cluster)
    runtime = Runtime(settings=OperatorSettings(), kube=kube)
    reader = KubeApi(load_api_client(str(cluster.kubeconfig)))
    created = await reader.get(MDEP, "ModelDeployment", namespace, "fresh")
    assert created is not None
    assert "status" not in created
    try:
        # Nobody acted on it yet: the run needs no read of it, and creates the Deployment.
        await reconcile(runtime, namespace, "fresh", lambda *_: None, seen=created)
        assert ("GET", "modeldeployments") not in kube.requests
        assert ("PATCH", "deployments") in kube.requests
        assert ("PATCH", "modeldeployments") in kube.requests  # its first status

        # The watch has not brought that write yet: its copy without a status is older than the write.
        kube.requests.clear()
        await reconcile(runtime, namespace, "fresh", lambda *_: None, seen=created)
        assert ("GET", "modeldeployments") in kube.requests
    finally:
        await runtime.aclose()

"""A new resource's first run reads only the objects it applies (to see that no other owner controls them): no run
has acted on it, so nothing it would delete can be its own, and it remembers those gone without a read. A resource
whose spec changed before its first run may have objects an earlier spec made: that run reads and deletes them.
The real reconcile, API server and MLflow, no operator process."""

from __future__ import annotations

from collections import Counter
from typing import Any

from kubernetes import client as k8s

from modelpilot.operator.handlers.reconcile import reconcile
from modelpilot.operator.runtime import Runtime
from modelpilot.operator.settings import OperatorSettings
from modelpilot.operator.spec import GROUP, PLURAL, VERSION
from tests.cluster.operator.conftest import model_deployment, registered_model
from tests.support.cluster import Cluster
from tests.support.counting_kube import CountingKube
from tests.support.mlflow_server import MlflowServer

MDEP = f"{GROUP}/{VERSION}"


def _create_serving_a_champion(cluster: Cluster, namespace: str, mlflow: MlflowServer, name: str) -> dict[str, Any]:
    """A registered model whose version 1 is its champion, and the ModelDeployment `name` serving it; as created."""
    model = registered_model(mlflow)
    model.set_alias("champion", model.add_version())
    body = model_deployment(
        name,
        model,
        registry={"trackingUri": mlflow.url, "pollInterval": "60s"},
        serving={"image": "ghcr.io/modelpilot/inference:test", "replicas": 1,
                 "autoscaling": {"minReplicas": 1, "maxReplicas": 3}},
    )  # fmt: skip
    created = k8s.CustomObjectsApi(cluster.api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    assert isinstance(created, dict)
    return created


def _without_autoscaling(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    patched = k8s.CustomObjectsApi(cluster.api_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": {"serving": {"autoscaling": None}}}
    )
    assert isinstance(patched, dict)
    return patched


async def test_a_new_resource_reads_only_the_objects_it_applies(
    cluster: Cluster, namespace: str, modelpilot_crd: dict[str, Any], mlflow: MlflowServer
) -> None:
    created = _create_serving_a_champion(cluster, namespace, mlflow, "first")
    kube = CountingKube(cluster)
    runtime = Runtime(settings=OperatorSettings(), kube=kube)
    try:
        await reconcile(runtime, namespace, "first", lambda *_: None, seen=created)
        applied = Counter(kind for method, kind in kube.requests if method == "PATCH" and kind != "modeldeployments")
        # (A list of the pods counts under the namespace's name: not a read of an object.)
        read = Counter(kind for method, kind in kube.requests if method == "GET" and kind != namespace)
        # One read before each first apply, and nothing else: no canary, router or schedule object is read.
        assert read == applied
        assert {"deployments", "services", "horizontalpodautoscalers"} <= set(applied)
        assert ("DELETE", "deployments") not in kube.requests

        # Its next runs know those objects gone as well: none of them is read later.
        written = await kube.get(MDEP, "ModelDeployment", namespace, "first")
        assert written is not None
        kube.requests.clear()
        await reconcile(runtime, namespace, "first", lambda *_: None, seen=written)
        later = [kind for method, kind in kube.requests if method == "GET" and kind not in ("deployments", namespace)]
        assert later == []
    finally:
        await runtime.aclose()


async def test_a_resource_whose_spec_changed_before_its_first_run_deletes_what_an_earlier_spec_made(
    cluster: Cluster, namespace: str, modelpilot_crd: dict[str, Any], mlflow: MlflowServer
) -> None:
    created = _create_serving_a_champion(cluster, namespace, mlflow, "edited")
    # A run under the first spec applied the autoscaler, and stopped before it wrote the status (a restart).
    earlier = CountingKube(cluster)
    interrupted = Runtime(settings=OperatorSettings(), kube=earlier)
    try:
        await reconcile(interrupted, namespace, "edited", lambda *_: None, seen=created)
    finally:
        await interrupted.aclose()
    k8s.CustomObjectsApi(cluster.api_client).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "edited", {"status": None}
    )
    assert await earlier.get("autoscaling/v2", "HorizontalPodAutoscaler", namespace, "edited-stable") is not None
    edited = _without_autoscaling(cluster, namespace, "edited")
    assert edited["metadata"]["generation"] == 2
    assert not edited.get("status")

    kube = CountingKube(cluster)
    runtime = Runtime(settings=OperatorSettings(), kube=kube)
    try:
        await reconcile(runtime, namespace, "edited", lambda *_: None, seen=edited)
        assert ("GET", "horizontalpodautoscalers") in kube.requests
        assert ("DELETE", "horizontalpodautoscalers") in kube.requests
        assert await kube.get("autoscaling/v2", "HorizontalPodAutoscaler", namespace, "edited-stable") is None
    finally:
        await runtime.aclose()

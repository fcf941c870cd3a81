"""What the operator benchmark sets up on the cluster and in MLflow, and takes down again."""

from __future__ import annotations

import json
import secrets
import sys
import time
from typing import Any, cast

from kubernetes import client
from mlflow import MlflowClient

from modelpilot.operator.spec import GROUP, PLURAL, VERSION
from tests.support.cluster import release_model_deployments, wait_until

BENCHMARK_TAINT = "modelpilot.io/benchmark"
APPLY_FIELD_MANAGER = "kubectl"


def register_champion(tracking_uri: str) -> str:
    """A registered model with one version under the `champion` alias; its name."""
    mlflow = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name = f"bench-{secrets.token_hex(4)}"
    mlflow.create_registered_model(name)
    run_id = mlflow.create_run(experiment_id="0").info.run_id
    version = mlflow.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    mlflow.set_registered_model_alias(name, "champion", str(version.version))
    return name


def create_benchmark_node(api_client: client.ApiClient, pods: int) -> str:
    """A kwok node with room for `pods` pods, tainted so that only the benchmark's pods land on it; its name.

    The shared nodes hold 250 pods each and other work uses them too; a node of its own keeps 1000
    benchmark pods from crowding anyone out.
    """
    name = f"bench-operator-{secrets.token_hex(3)}"
    capacity = {"cpu": "1000", "memory": "4Ti", "pods": str(pods), "ephemeral-storage": "1Ti"}
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            # kwok drives only nodes with this annotation (hack/cluster starts it with that selector).
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "modelpilot.io/node-pool": "benchmark",
                # Test namespaces send their pods to kwok's nodes by this label (the API server's PodNodeSelector).
                "type": "kwok",
            },
        },
        "spec": {"taints": [{"key": BENCHMARK_TAINT, "value": "operator", "effect": "NoSchedule"}]},
        "status": {"allocatable": capacity, "capacity": capacity},
    }
    core = client.CoreV1Api(api_client)
    core.create_node(cast(Any, node))

    def schedulable() -> bool:
        response: Any = core.read_node(name, _preload_content=False)
        found = json.loads(response.data)
        conditions = (found.get("status") or {}).get("conditions") or []
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        # The controller manager lifts the not-ready taints shortly after kwok marks the node Ready.
        taints = (found.get("spec") or {}).get("taints") or []
        return ready and not any(t["key"].startswith("node.kubernetes.io/") for t in taints)

    wait_until(schedulable, timeout=90, description=f"benchmark node {name} Ready and schedulable", interval=0.5)
    return name


def delete_node(api_client: client.ApiClient, name: str) -> None:
    """Delete a node, tolerating one already gone."""
    try:
        client.CoreV1Api(api_client).delete_node(name)
    except client.ApiException as error:
        if error.status != 404:
            raise


def model_deployment(name: str, model_name: str, tracking_uri: str, node: str, poll_interval: str) -> dict[str, Any]:
    """A ModelDeployment of the champion with one replica on the benchmark node, the replica router, no rollout."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": model_name, "alias": "champion"},
            "registry": {"trackingUri": tracking_uri, "pollInterval": poll_interval},
            "serving": {
                "image": "ghcr.io/modelpilot/inference:bench",
                "replicas": 1,
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                "nodeSelector": {"kubernetes.io/hostname": node},
                "tolerations": [{"key": BENCHMARK_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
            },
            "traffic": {"router": "replicas"},
        },
    }


def apply_model_deployment(api_client: client.ApiClient, namespace: str, manifest: dict[str, Any]) -> None:
    """Server-side apply, as `kubectl apply --server-side` sends it: one PATCH, returns once stored."""
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        manifest["metadata"]["name"],
        manifest,
        field_manager=APPLY_FIELD_MANAGER,
        force=True,
        _content_type="application/apply-patch+yaml",
    )


def list_model_deployments(api_client: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    """The ModelDeployments of the namespace as plain dicts (no model classes: a thousand of them is slow)."""
    response: Any = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _preload_content=False
    )
    items: list[dict[str, Any]] = json.loads(response.data)["items"]
    return items


def is_ready(obj: dict[str, Any]) -> bool:
    """The ModelDeployment's Ready condition is True."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def wait_all_ready(api_client: client.ApiClient, namespace: str, count: int, timeout: float) -> tuple[int, float]:
    """Wait until `count` ModelDeployments are Ready; (how many were, seconds waited)."""
    started = time.monotonic()
    ready = 0
    while time.monotonic() - started < timeout:
        ready = sum(1 for obj in list_model_deployments(api_client, namespace) if is_ready(obj))
        if ready >= count:
            break
        time.sleep(3)
    return ready, time.monotonic() - started


def delete_model_deployments(api_client: client.ApiClient, namespace: str, timeout: float) -> tuple[int, float]:
    """Delete every ModelDeployment while the operator runs (it releases its finalizers); strip what is left.

    Returns (how many were stuck and had their finalizers removed, seconds taken).
    """
    custom = client.CustomObjectsApi(api_client)
    started = time.monotonic()
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    left: list[dict[str, Any]] = []
    while time.monotonic() - started < timeout:
        left = list_model_deployments(api_client, namespace)
        if not left:
            return 0, time.monotonic() - started
        time.sleep(2)
    release_model_deployments(api_client, namespace)
    return len(left), time.monotonic() - started


def delete_namespace_and_wait(api_client: client.ApiClient, namespace: str, timeout: float) -> float:
    """Delete the namespace and wait until it is gone (its pods, Deployments, … with it); seconds taken, or
    -1 when it was not gone within `timeout` (the figures measured before are kept, and the namespace
    finishes terminating by itself)."""
    core = client.CoreV1Api(api_client)
    started = time.monotonic()
    try:
        core.delete_namespace(namespace, propagation_policy="Background")
    except client.ApiException as error:
        if error.status != 404:
            raise

    def gone() -> bool:
        try:
            core.read_namespace(namespace)
        except client.ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    try:
        wait_until(gone, timeout=timeout, description=f"namespace {namespace} deleted", interval=2)
    except TimeoutError as error:
        print(f"cleanup: {error}", file=sys.stderr)
        return -1.0
    return time.monotonic() - started

"""GPU serving pods on the real scheduler: packed onto as few GPU nodes as they fit (the default) or spread.

Two kwok GPU nodes of 4 GPUs each, made for the test in one zone of its own and tainted so that no other
test's pods land there, take a track of 6 one-GPU replicas: packed, one node fills up (4) before the other
takes the rest (2); spread, they split 3 and 3. Without the placement the scheduler's resource score would
spread them, so the packed count fails if the pack affinity stops working.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from modelpilot.operator.builders.common import Owner
from modelpilot.operator.builders.serving import build_track
from tests.support.cluster import apply_manifest, get_object, list_objects, wait_until
from tests.unit.operator.builders.examples import gateway_raw, spec_of, track_plan

GPUS_PER_NODE = 4
REPLICAS = 6
TEST_LABEL = "modelpilot.io/placement-test"
SCHEDULED_TIMEOUT = 90.0


def _node(name: str, namespace: str) -> dict[str, Any]:
    resources = {"cpu": "32", "memory": "128Gi", "pods": "110", "nvidia.com/gpu": str(GPUS_PER_NODE)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",  # the test namespace's pods are sent to kwok's nodes
                "kubernetes.io/hostname": name,
                "topology.kubernetes.io/zone": namespace,
                "nvidia.com/gpu.present": "true",
                TEST_LABEL: namespace,
            },
        },
        "spec": {
            "taints": [
                {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"},
                {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
                {"key": TEST_LABEL, "value": namespace, "effect": "NoSchedule"},
            ]
        },
        "status": {"allocatable": resources, "capacity": resources},
    }


def _schedulable(api_client: client.ApiClient, name: str) -> bool:
    node = get_object(api_client, "v1", "Node", name) or {}
    conditions = node.get("status", {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    ours = {TEST_LABEL, "kwok.x-k8s.io/node", "nvidia.com/gpu"}
    return ready and all(taint["key"] in ours for taint in node.get("spec", {}).get("taints") or [])


@pytest.fixture
def gpu_nodes(api_client: client.ApiClient, namespace: str) -> Iterator[list[str]]:
    """Two Ready kwok GPU nodes in a zone of their own, deleted afterwards."""
    core = client.CoreV1Api(api_client)
    names = [f"{namespace}-gpu-{index}" for index in range(2)]
    try:
        for name in names:
            apply_manifest(api_client, _node(name, namespace))
        for name in names:
            wait_until(lambda: _schedulable(api_client, name), timeout=60, description=f"node {name} Ready")  # noqa: B023
        yield names
    finally:
        for name in names:
            try:
                core.delete_node(name)
            except client.ApiException as error:
                if error.status != 404:
                    raise


def _track_objects(namespace: str, placement: str | None) -> list[dict[str, Any]]:
    raw = gateway_raw()
    serving = raw["serving"]
    del serving["autoscaling"]  # a fixed count, so the test sees every replica at once
    serving["replicas"] = REPLICAS
    serving["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"nvidia.com/gpu": 1}}
    serving["nodeSelector"] = {TEST_LABEL: namespace}
    serving["tolerations"] = [{"key": TEST_LABEL, "operator": "Equal", "value": namespace, "effect": "NoSchedule"}]
    if placement is not None:
        serving["gpuPlacement"] = placement
    owner = Owner(name="fraud", namespace=namespace, uid="0b6f3c1e-5a43-4c1e-9d6b-2f1d9a7c0e11")
    objects = build_track(owner, spec_of(raw), track_plan("stable", replicas=REPLICAS))
    wanted = [obj for obj in objects if obj["kind"] in {"ServiceAccount", "Deployment"}]
    for obj in wanted:  # no ModelDeployment exists: an owner reference would let the garbage collector delete it
        obj["metadata"].pop("ownerReferences")
    return wanted


def _pods_per_node(api_client: client.ApiClient, namespace: str, placement: str | None) -> list[int]:
    for obj in _track_objects(namespace, placement):
        apply_manifest(api_client, obj)

    def placed() -> Counter[str] | None:
        pods = list_objects(api_client, "v1", "Pod", namespace, label_selector="modelpilot.io/track=stable")
        nodes = [str(pod["spec"].get("nodeName") or "") for pod in pods if not pod["metadata"].get("deletionTimestamp")]
        return Counter(nodes) if len(nodes) == REPLICAS and all(nodes) else None

    counts = wait_until(placed, timeout=SCHEDULED_TIMEOUT, description=f"{REPLICAS} serving pods scheduled")
    return sorted(counts.values())


def test_gpu_serving_pods_fill_one_node_before_the_next_by_default(
    api_client: client.ApiClient, namespace: str, gpu_nodes: list[str]
) -> None:
    assert _pods_per_node(api_client, namespace, None) == [REPLICAS - GPUS_PER_NODE, GPUS_PER_NODE]


def test_gpu_serving_pods_spread_evenly_when_asked(
    api_client: client.ApiClient, namespace: str, gpu_nodes: list[str]
) -> None:
    assert _pods_per_node(api_client, namespace, "Spread") == [REPLICAS // 2, REPLICAS // 2]

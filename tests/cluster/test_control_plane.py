"""The local control plane behaves like a cluster: controllers, scheduler, kwok nodes and the test knobs."""

from __future__ import annotations

import re
import time
from typing import Any

from kubernetes import client

from tests.support.cluster import (
    apply_manifest,
    condition_status,
    create_namespace,
    delete_namespace,
    get_object,
    list_objects,
    wait_for_condition,
    wait_until,
)

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
UNREADY = "modelpilot.io/kwok-unready"
FAIL = "modelpilot.io/kwok-fail"
DURATION = "modelpilot.io/kwok-duration"


def _container(**resources: Any) -> dict[str, Any]:
    return {"name": "main", "image": PAUSE_IMAGE, "resources": resources or {"requests": {"cpu": "100m"}}}


def _pod(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"containers": [_container()], **spec},
    }


def _deployment(name: str, replicas: int, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, **metadata},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [_container()]}},
        },
    }


def _job(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {"restartPolicy": "Never", "containers": [_container()]},
            },
        },
    }


def _pods(api_client: client.ApiClient, namespace: str, selector: str) -> list[dict[str, Any]]:
    return list_objects(api_client, "v1", "Pod", namespace, label_selector=selector)


def _pod_status(api_client: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    pod = get_object(api_client, "v1", "Pod", name, namespace)
    assert pod is not None, f"pod {name} is gone"
    return dict(pod["status"])


def _node_pool(api_client: client.ApiClient, node_name: str) -> str:
    node = get_object(api_client, "v1", "Node", node_name)
    assert node is not None, f"node {node_name} is gone"
    return str(node["metadata"]["labels"]["modelpilot.io/node-pool"])


FAKE_NODE_TAINT = ("kwok.x-k8s.io/node", "fake", "NoSchedule")


def test_gpu_nodes_advertise_eight_gpus_and_carry_the_gpu_taint(api_client: client.ApiClient) -> None:
    nodes = list_objects(api_client, "v1", "Node", label_selector="type=kwok")
    pools = {node["metadata"]["name"]: node["metadata"]["labels"]["modelpilot.io/node-pool"] for node in nodes}
    assert sorted(pools.values()) == ["cpu", "cpu", "gpu", "gpu"]
    for node in nodes:
        taints = {(t["key"], t.get("value"), t["effect"]) for t in node["spec"].get("taints") or []}
        if pools[node["metadata"]["name"]] == "gpu":
            assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
            assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
            assert taints == {("nvidia.com/gpu", "present", "NoSchedule"), FAKE_NODE_TAINT}
        else:
            assert "nvidia.com/gpu" not in node["status"]["allocatable"]
            assert taints == {FAKE_NODE_TAINT}
        assert condition_status(node, "Ready") == "True"


def test_deployment_becomes_available_with_ready_pods_on_cpu_nodes(
    api_client: client.ApiClient, namespace: str
) -> None:
    apply_manifest(api_client, _deployment("web", replicas=3), namespace=namespace)

    deployment = wait_for_condition(
        api_client, "apps/v1", "Deployment", "web", namespace=namespace, condition="Available", timeout=60
    )

    wait_until(
        lambda: (
            (get_object(api_client, "apps/v1", "Deployment", "web", namespace) or {})
            .get("status", {})
            .get("readyReplicas")
            == 3
        ),
        timeout=30,
        description="3 ready replicas",
    )
    assert deployment["status"]["replicas"] == 3
    pods = _pods(api_client, namespace, "app=web")
    assert len(pods) == 3
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert pod["status"]["podIP"]
        assert condition_status(pod, "Ready") == "True"
        assert _node_pool(api_client, pod["spec"]["nodeName"]) == "cpu"


def test_job_completes_and_its_pod_succeeds(api_client: client.ApiClient, namespace: str) -> None:
    apply_manifest(api_client, _job("train"), namespace=namespace)

    wait_for_condition(api_client, "batch/v1", "Job", "train", namespace=namespace, condition="Complete", timeout=60)

    [pod] = _pods(api_client, namespace, "job-name=train")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_job_pod_with_duration_annotation_runs_that_long_before_it_succeeds(
    api_client: client.ApiClient, namespace: str
) -> None:
    apply_manifest(api_client, _job("train", annotations={DURATION: "3s"}), namespace=namespace)

    [running] = wait_until(
        lambda: [p for p in _pods(api_client, namespace, "job-name=train") if p["status"].get("phase") == "Running"],
        timeout=60,
        description="the Job pod runs",
    )
    started = time.monotonic()
    wait_for_condition(api_client, "batch/v1", "Job", "train", namespace=namespace, condition="Complete", timeout=60)

    assert time.monotonic() - started >= 2.0  # 3 s after kwok saw it running, less the time to observe that
    assert running["status"]["containerStatuses"][0]["state"]["running"]


def test_job_pod_with_fail_annotation_fails_the_job(api_client: client.ApiClient, namespace: str) -> None:
    apply_manifest(api_client, _job("train", annotations={FAIL: "true"}), namespace=namespace)

    job = wait_for_condition(
        api_client, "batch/v1", "Job", "train", namespace=namespace, condition="Failed", timeout=60
    )

    assert condition_status(job, "Complete") is None
    [pod] = _pods(api_client, namespace, "job-name=train")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1


def test_pod_with_unready_annotation_runs_unready_until_the_annotation_goes(
    api_client: client.ApiClient, namespace: str
) -> None:
    apply_manifest(api_client, _pod("loading", annotations={UNREADY: "true"}), namespace=namespace)
    apply_manifest(api_client, _pod("loaded"), namespace=namespace)

    wait_until(
        lambda: condition_status({"status": _pod_status(api_client, namespace, "loaded")}, "Ready") == "True",
        timeout=60,
        description="the pod without the annotation is Ready",
    )
    status = wait_until(
        lambda: (s := _pod_status(api_client, namespace, "loading")).get("podIP") and s,
        timeout=30,
        description="the annotated pod got an IP",
    )
    assert status["phase"] == "Running"
    assert condition_status({"status": status}, "Ready") == "False"
    time.sleep(1.0)  # nothing more may happen to it: kwok has no further stage for it
    assert condition_status({"status": _pod_status(api_client, namespace, "loading")}, "Ready") == "False"

    client.CoreV1Api(api_client).patch_namespaced_pod(
        "loading", namespace, {"metadata": {"annotations": {UNREADY: None}}}
    )

    wait_until(
        lambda: condition_status({"status": _pod_status(api_client, namespace, "loading")}, "Ready") == "True",
        timeout=30,
        description="the pod turns Ready once the annotation is removed",
    )


def test_gpu_pod_with_toleration_lands_on_a_gpu_node(api_client: client.ApiClient, namespace: str) -> None:
    pod = _pod("trainer", tolerations=[GPU_TOLERATION])
    pod["spec"]["containers"] = [_container(limits={"nvidia.com/gpu": "1"})]
    apply_manifest(api_client, pod, namespace=namespace)

    status = wait_until(
        lambda: (s := _pod_status(api_client, namespace, "trainer")).get("phase") == "Running" and s,
        timeout=60,
        description="the GPU pod runs",
    )

    [placed] = _pods(api_client, namespace, "")
    assert _node_pool(api_client, placed["spec"]["nodeName"]) == "gpu"
    assert condition_status({"status": status}, "Ready") == "True"


def test_pods_without_the_gpu_toleration_never_land_on_gpu_nodes(api_client: client.ApiClient, namespace: str) -> None:
    # The GPU nodes are the emptiest and largest, so only the taint keeps the scheduler off them.
    apply_manifest(api_client, _deployment("many", replicas=6), namespace=namespace)
    greedy = _pod("greedy")
    greedy["spec"]["containers"] = [_container(limits={"nvidia.com/gpu": "1"})]
    apply_manifest(api_client, greedy, namespace=namespace)

    wait_for_condition(api_client, "apps/v1", "Deployment", "many", namespace=namespace, condition="Available")

    def scheduling_decided() -> dict[str, Any] | None:
        status = _pod_status(api_client, namespace, "greedy")
        return status if condition_status({"status": status}, "PodScheduled") else None

    status = wait_until(scheduling_decided, timeout=60, description="the scheduler decided about the GPU pod")

    assert {_node_pool(api_client, pod["spec"]["nodeName"]) for pod in _pods(api_client, namespace, "app=many")} == {
        "cpu"
    }
    [scheduled] = [c for c in status["conditions"] if c["type"] == "PodScheduled"]
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    # At least the two GPU nodes refuse it for their taint (other tests may add tainted nodes of their own).
    tainted = re.search(r"(\d+) node\(s\) had untolerated taint", scheduled["message"])
    assert tainted is not None, scheduled["message"]
    assert int(tainted.group(1)) >= 2
    assert status["phase"] == "Pending"


def test_deleting_an_owner_garbage_collects_its_dependents(api_client: client.ApiClient, namespace: str) -> None:
    [owner] = apply_manifest(
        api_client, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}, namespace=namespace
    )
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    apply_manifest(api_client, _deployment("owned", replicas=2, ownerReferences=[reference]), namespace=namespace)
    wait_for_condition(api_client, "apps/v1", "Deployment", "owned", namespace=namespace, condition="Available")
    assert len(_pods(api_client, namespace, "app=owned")) == 2

    client.CoreV1Api(api_client).delete_namespaced_config_map("owner", namespace)

    wait_until(
        lambda: get_object(api_client, "apps/v1", "Deployment", "owned", namespace) is None,
        timeout=60,
        description="the owned Deployment is collected",
    )
    wait_until(
        lambda: (
            not list_objects(api_client, "apps/v1", "ReplicaSet", namespace)
            and not _pods(api_client, namespace, "app=owned")
        ),
        timeout=60,
        description="its ReplicaSet and pods are collected",
    )


def test_deleting_a_namespace_removes_it_with_its_pods(api_client: client.ApiClient) -> None:
    name = create_namespace(api_client, prefix="doomed")
    apply_manifest(api_client, _deployment("web", replicas=2), namespace=name)
    wait_for_condition(api_client, "apps/v1", "Deployment", "web", namespace=name, condition="Available")

    delete_namespace(api_client, name)

    wait_until(
        lambda: get_object(api_client, "v1", "Namespace", name) is None,
        timeout=90,
        description=f"namespace {name} is gone",
    )

"""`kubectl modelpilot logs` reads the serving and training pods of a ModelDeployment on the real node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from modelpilot.operator.spec import GROUP, VERSION
from tests.cluster.kubectl.conftest import Plugin
from tests.support.cluster import Cluster, apply_manifest, create_namespace, delete_namespace, wait_until

NAME = "fraud"
# An image the real node already holds (hack/cluster imports it); nothing is pulled.
BUSYBOX = "docker.io/library/busybox:1.37.0"


@pytest.fixture
def real_node_namespace(cluster: Cluster, modelpilot_crd: dict[str, Any]) -> Iterator[str]:
    name = create_namespace(cluster.api_client, "logs", simulated=False)
    yield name
    delete_namespace(cluster.api_client, name)


def pod(name: str, labels: dict[str, str], lines: list[str]) -> dict[str, Any]:
    script = "; ".join(f"echo {line}" for line in lines) + "; sleep 3600"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"modelpilot.io/deployment": NAME, **labels}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "main", "image": BUSYBOX, "imagePullPolicy": "Never", "command": ["sh", "-c", script]}
            ],
        },
    }


def test_logs_of_each_track_and_of_training(cluster: Cluster, real_node_namespace: str) -> None:
    namespace = real_node_namespace
    apply_manifest(
        cluster.api_client,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": NAME},
            "spec": {
                "model": {"name": "fraud", "alias": "champion"},
                "registry": {"trackingUri": "http://mlflow:5000"},
                "serving": {"image": "serve:1"},
            },
        },
        namespace=namespace,
    )
    serving = {"app.kubernetes.io/component": "serving"}
    apply_manifest(
        cluster.api_client,
        pod("stable-a", {**serving, "modelpilot.io/track": "stable"}, ["s1", "s2"]),
        namespace=namespace,
    )
    apply_manifest(
        cluster.api_client, pod("canary-a", {**serving, "modelpilot.io/track": "canary"}, ["c1"]), namespace=namespace
    )
    apply_manifest(
        cluster.api_client,
        pod("train-a", {"app.kubernetes.io/component": "training"}, ["epoch 1"]),
        namespace=namespace,
    )
    core = client.CoreV1Api(cluster.api_client)
    for name in ("stable-a", "canary-a", "train-a"):
        wait_until(
            lambda name=name: core.read_namespaced_pod(name, namespace).status.phase == "Running",  # type: ignore[misc,union-attr]
            timeout=120,
            description=f"{name} running on the real node",
        )

    plugin = Plugin(cluster.kubeconfig, namespace)

    def logs(*args: str) -> list[str]:
        outcome = plugin.run(None, "logs", NAME, *args)
        assert outcome.code == 0, outcome.err
        return outcome.out.split()

    # A container's first lines may reach its log a moment after it runs.
    wait_until(lambda: logs() == ["s1", "s2"], timeout=60, description="stable pod's log")
    assert logs("--tail", "1") == ["s2"]
    assert logs("--track", "canary") == ["c1"]
    assert logs("--track", "training") == ["epoch", "1"]

"""Pods the end-to-end tests run in the cluster: a toolbox for HTTP calls and bounded load generators."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.support.cluster import Cluster, apply_manifest, get_object, list_objects, wait_until

RELEASE_NAMESPACE = "modelpilot"  # where hack/e2e installs the chart
IMAGE_TAG = os.environ.get("MODELPILOT_IMAGE_TAG", "e2e")
INFERENCE_IMAGE = f"modelpilot-inference:{IMAGE_TAG}"
TRAIN_IMAGE = f"modelpilot-train:{IMAGE_TAG}"
CLIENT_SOURCE = (Path(__file__).parent / "pod_client.py").read_text()
# The restricted Pod Security Standard, as every pod of the project meets it.
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def real_namespace(api: client.ApiClient, prefix: str) -> str:
    """A namespace whose pods run on real nodes and must meet the restricted Pod Security Standard."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    labels = {
        "modelpilot.io/test-namespace": "true",
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    apply_manifest(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
    core = client.CoreV1Api(api)
    wait_until(
        lambda: core.list_namespaced_service_account(name, field_selector="metadata.name=default").items,
        timeout=60,
        description=f"default ServiceAccount in {name}",
    )
    return name


def client_pod(name: str, args: list[str], *, restart: str = "Never") -> dict[str, Any]:
    """A pod running pod_client.py with `args` in the inference image (it has Python; nothing else needed)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "e2e-client"}},
        "spec": {
            "restartPolicy": restart,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "client",
                    "image": INFERENCE_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", CLIENT_SOURCE, *args],
                    "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                    "securityContext": RESTRICTED_CONTAINER,
                }
            ],
        },
    }


def operator_pods(cluster: Cluster) -> list[dict[str, Any]]:
    """The chart's operator pods."""
    return list_objects(cluster.api_client, "v1", "Pod", RELEASE_NAMESPACE, "app.kubernetes.io/component=operator")


def kill_acting_operator(cluster: Cluster) -> str:
    """Delete the replica with the highest priority (the highest ordinal) at once; return its uid."""
    pods = sorted(operator_pods(cluster), key=lambda p: int(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"]))
    acting = pods[-1]
    cluster.run_kubectl(
        "delete", "pod", "-n", RELEASE_NAMESPACE, acting["metadata"]["name"], "--grace-period=0", "--force"
    )
    return str(acting["metadata"]["uid"])


class Toolbox:
    """A long-running pod; each call is a `kubectl exec` of pod_client.py inside it."""

    name = "toolbox"

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def start(self) -> None:
        pod = client_pod(self.name, [])
        pod["spec"]["containers"][0]["command"] = ["python", "-c", "import time; time.sleep(3600)"]
        apply_manifest(self.cluster.api_client, pod, namespace=self.namespace)
        wait_until(self._running, timeout=120, description="toolbox pod running")

    def _running(self) -> bool:
        pod = get_object(self.cluster.api_client, "v1", "Pod", self.name, self.namespace)
        return bool(pod and (pod.get("status") or {}).get("phase") == "Running")

    def call(self, *args: str) -> tuple[int, Any]:
        """Run pod_client.py with `args` in the pod; the answer's status and body (JSON when it is JSON)."""
        result = self.cluster.run_kubectl(
            "exec", "-n", self.namespace, self.name, "--", "python", "-c", CLIENT_SOURCE, *args
        )
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        try:
            return int(answer["status"]), json.loads(answer["body"])
        except ValueError:
            return int(answer["status"]), answer["body"]

    def get(self, url: str) -> tuple[int, Any]:
        return self.call("get", url)

    def post(self, url: str, body: dict[str, Any]) -> tuple[int, Any]:
        return self.call("post", url, json.dumps(body))


class LoadPod:
    """A pod that sends one request body to one URL at a fixed rate for a bounded time."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name

    def start(self, url: str, body: dict[str, Any], *, rate: float, seconds: float) -> None:
        pod = client_pod(self.name, ["load", url, json.dumps(body), str(rate), str(seconds)])
        apply_manifest(self.cluster.api_client, pod, namespace=self.namespace)

    def counts(self) -> dict[str, int]:
        """Answers by status code so far (the last report the pod printed)."""
        logs = self.cluster.run_kubectl("logs", "-n", self.namespace, self.name, check=False).stdout
        reports = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        return dict(reports[-1]["counts"]) if reports else {}

    def stop(self) -> dict[str, int]:
        counts = self.counts()
        client.CoreV1Api(self.cluster.api_client).delete_namespaced_pod(
            self.name, self.namespace, grace_period_seconds=0
        )
        return counts


# What a rollout writes to the registry (tags and aliases) — see tests/cluster/rollout/registry_events.py.
REGISTRY_WRITE_EVENTS = [
    {"entity": entity, "action": action}
    for entity, action in (
        ("MODEL_VERSION_TAG", "SET"),
        ("MODEL_VERSION_TAG", "DELETED"),
        ("MODEL_VERSION_ALIAS", "CREATED"),
        ("MODEL_VERSION_ALIAS", "DELETED"),
    )
]


class RegistryWrites:
    """Every registry write the MLflow server reports as a webhook, received by a pod of the test namespace.

    MLflow sends one delivery per tag set and alias set, so counting deliveries counts writes: the evidence
    that a promotion or rejection was written once, not repeated after the operator pod was killed.
    """

    name = "registry-writes"
    port = 8080

    def __init__(self, cluster: Cluster, namespace: str, toolbox: Toolbox, mlflow: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.toolbox = toolbox
        self.webhooks = f"{mlflow}/api/2.0/mlflow/webhooks"
        self.webhook_id = ""

    def start(self) -> None:
        apply_manifest(
            self.cluster.api_client, client_pod(self.name, ["receive", str(self.port)]), namespace=self.namespace
        )
        pod = wait_until(self._address, timeout=120, description="webhook receiver pod running")
        status, answer = self.toolbox.post(
            self.webhooks,
            {
                "name": f"e2e-{self.namespace}",
                "url": f"http://{pod}:{self.port}/registry-writes",
                "events": REGISTRY_WRITE_EVENTS,
            },
        )
        assert status == 200, answer
        self.webhook_id = answer["webhook"]["webhook_id"]

    def stop(self) -> None:
        if self.webhook_id:
            self.toolbox.call("delete", f"{self.webhooks}/{self.webhook_id}")

    def _address(self) -> str | None:
        pod = get_object(self.cluster.api_client, "v1", "Pod", self.name, self.namespace)
        status = (pod or {}).get("status") or {}
        return str(status["podIP"]) if status.get("phase") == "Running" and status.get("podIP") else None

    def writes(self, model: str) -> list[tuple[str, str, str, str]]:
        """(entity, action, key or alias, version) of each write of `model` received so far, in order."""
        logs = self.cluster.run_kubectl("logs", "-n", self.namespace, self.name).stdout
        found = []
        for line in logs.splitlines():
            if not line.startswith("{"):
                continue
            document = json.loads(line).get("received") or {}
            data = document.get("data") or {}
            if data.get("name") == model:
                name = str(data.get("key") or data.get("alias") or "")
                found.append((document.get("entity", ""), document.get("action", ""), name, str(data.get("version"))))
        return found

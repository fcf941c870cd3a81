"""Pods the end-to-end tests run in the cluster: a toolbox for HTTP calls and bounded load generators."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.support.cluster import Cluster, apply_manifest, get_object, wait_until

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

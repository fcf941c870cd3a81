"""Fixtures for operator tests: a registered model in a real MLflow, the operator process, CR helpers."""

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

from modelpilot.operator.spec import GROUP, PLURAL, VERSION
from tests.support.cluster import Cluster, apply_manifest, get_object, list_objects, wait_until
from tests.support.mlflow_server import MlflowServer
from tests.support.operator_process import operator_process


@dataclass
class RegisteredModel:
    """A registered model with versions in the test MLflow server."""

    name: str
    client: MlflowClient
    tracking_uri: str

    def add_version(self) -> str:
        run_id = self.client.create_run(experiment_id="0").info.run_id
        version = self.client.create_model_version(self.name, source=f"runs:/{run_id}/model", run_id=run_id)
        return str(version.version)

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.name, alias, version)

    def alias(self, alias: str) -> str | None:
        aliases: dict[str, str] = self.client.get_registered_model(self.name).aliases
        return aliases.get(alias)


def registered_model(server: MlflowServer) -> RegisteredModel:
    """A new registered model (no versions yet) on `server`."""
    mlflow = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    name = f"model-{uuid.uuid4().hex[:8]}"
    mlflow.create_registered_model(name)
    return RegisteredModel(name=name, client=mlflow, tracking_uri=server.url)


@pytest.fixture
def model(mlflow: MlflowServer) -> RegisteredModel:
    return registered_model(mlflow)


def model_deployment(name: str, model: RegisteredModel, **spec: Any) -> dict[str, Any]:
    """A ModelDeployment serving `model`'s champion with the replica router, fast polls, no rollout."""
    body: dict[str, Any] = {
        "model": {"name": model.name, "alias": "champion"},
        "registry": {"trackingUri": model.tracking_uri, "pollInterval": "1s"},
        "serving": {
            "image": "ghcr.io/modelpilot/inference:test",
            "replicas": 2,
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        },
        "traffic": {"router": "replicas"},
    }
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": name}, "spec": body}


@pytest.fixture
def operator(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with operator_process(cluster.kubeconfig, namespace, tmp_path / "operator.log") as process:
        yield process


class Resources:
    """Reads and waits on the objects of one namespace."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.api = cluster.api_client
        self.namespace = namespace

    def apply(self, manifest: dict[str, Any]) -> None:
        apply_manifest(self.api, manifest, namespace=self.namespace, field_manager="test")

    def get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        return get_object(self.api, api_version, kind, name, self.namespace)

    def mdep(self, name: str) -> dict[str, Any]:
        found = self.get(f"{GROUP}/{VERSION}", "ModelDeployment", name)
        assert found is not None
        return found

    def wait_mdep(
        self, name: str, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            found = self.get(f"{GROUP}/{VERSION}", "ModelDeployment", name)
            return found if found is not None and check(found) else None

        return wait_until(reached, timeout=timeout, description=f"{name}: {what}")

    def list_of(self, api_version: str, kind: str, label_selector: str) -> list[dict[str, Any]]:
        return list_objects(self.api, api_version, kind, self.namespace, label_selector)

    def names(self, api_version: str, kind: str, label_selector: str) -> list[str]:
        return sorted(item["metadata"]["name"] for item in self.list_of(api_version, kind, label_selector))

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.get("apps/v1", "Deployment", name)

    def events(self, name: str) -> list[dict[str, Any]]:
        listed = client.CoreV1Api(self.api).list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        return [{"reason": event.reason, "type": event.type, "message": event.message} for event in listed.items]

    def delete_mdep(self, name: str) -> None:
        client.CustomObjectsApi(self.api).delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)


@pytest.fixture
def resources(cluster: Cluster, namespace: str, modelpilot_crd: dict[str, Any]) -> Resources:
    return Resources(cluster, namespace)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    """A condition of a ModelDeployment's status, or an empty dict."""
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == type_:
            return dict(item)
    return {}


def is_ready_with(version: str) -> Callable[[dict[str, Any]], bool]:
    """Ready=True and status.stable.version == version."""

    def check(obj: dict[str, Any]) -> bool:
        stable = (obj.get("status") or {}).get("stable") or {}
        return condition(obj, "Ready").get("status") == "True" and stable.get("version") == version

    return check


def template_version(deployment: dict[str, Any] | None) -> str | None:
    """The model version label of a Deployment's pod template."""
    if deployment is None:
        return None
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels.get("modelpilot.io/version")

"""Fixtures for operator tests: a registered model in a real MLflow, the operator process, CR helpers."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from modelpilot.operator.spec import GROUP, VERSION
from tests.support.cluster import Cluster
from tests.support.mlflow_server import MlflowServer
from tests.support.namespace_objects import Resources
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

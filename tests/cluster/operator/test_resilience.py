"""The operator under failure: registry down, operator killed mid-reconcile, a spec it cannot act on."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

from tests.cluster.operator.conftest import (
    condition,
    is_ready_with,
    model_deployment,
    registered_model,
    template_version,
)
from tests.support.cluster import Cluster, wait_until
from tests.support.mlflow_server import MlflowServer, mlflow_server
from tests.support.namespace_objects import Resources
from tests.support.operator_process import kill_hard, operator_process
from tests.support.processes import free_port


def _condition_is(type_: str, status: str, reason: str | None = None) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        found = condition(obj, type_)
        return found.get("status") == status and (reason is None or found.get("reason") == reason)

    return check


def test_registry_down_keeps_serving_and_recovers(
    resources: Resources, operator: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    port = free_port()
    with mlflow_server(tmp_path / "own-mlflow", port) as server:
        model = registered_model(server)
        version = model.add_version()
        model.set_alias("champion", version)
        resources.apply(model_deployment("steady", model))
        resources.wait_mdep("steady", is_ready_with(version), "Ready")
        before = resources.deployment("steady-stable")
        assert before is not None

    down = resources.wait_mdep(
        "steady", _condition_is("RegistryReachable", "False", "RegistryUnreachable"), "registry unreachable"
    )
    assert "unreachable" in condition(down, "RegistryReachable")["message"]
    assert "RegistryUnreachable" in [event["reason"] for event in resources.events("steady")]
    after = resources.deployment("steady-stable")
    assert after is not None, "nothing that serves is deleted while the registry is down"
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert template_version(after) == version

    with mlflow_server(tmp_path / "own-mlflow", port):
        resources.wait_mdep("steady", _condition_is("RegistryReachable", "True"), "registry reachable again")
        resources.wait_mdep("steady", is_ready_with(version), "Ready again")


def test_killed_operator_converges_without_duplicates(
    cluster: Cluster, namespace: str, resources: Resources, mlflow: MlflowServer, tmp_path: Path
) -> None:
    model = registered_model(mlflow)
    version = model.add_version()
    model.set_alias("champion", version)
    log = tmp_path / "operator.log"
    with operator_process(cluster.kubeconfig, namespace, log) as first:
        resources.apply(model_deployment("crashy", model))
        wait_until(lambda: resources.deployment("crashy-stable"), timeout=60, description="the first objects exist")
        kill_hard(first)  # mid-reconcile: the status has not been written yet, or only partly
    with operator_process(cluster.kubeconfig, namespace, log):
        resources.wait_mdep("crashy", is_ready_with(version), "Ready after restart")
        selector = "modelpilot.io/deployment=crashy"
        assert resources.names("apps/v1", "Deployment", selector) == ["crashy-stable"]
        assert len(resources.list_of("apps/v1", "ReplicaSet", selector)) == 1, "a restart must not roll the Deployment"
        assert resources.names("v1", "Service", selector) == ["crashy", "crashy-stable"]


def test_spec_that_cannot_be_acted_on_gets_a_condition_not_a_crash_loop(
    cluster: Cluster,
    namespace: str,
    resources: Resources,
    mlflow: MlflowServer,
    operator: subprocess.Popen[bytes],
) -> None:
    model = registered_model(mlflow)
    version = model.add_version()
    model.set_alias("champion", version)
    manifest = model_deployment("locked", model)
    manifest["spec"]["registry"]["credentialsSecret"] = "mlflow-auth"
    resources.apply(manifest)

    stuck = resources.wait_mdep(
        "locked", _condition_is("RegistryReachable", "False", "CredentialsSecretMissing"), "missing Secret reported"
    )
    assert "mlflow-auth" in condition(stuck, "RegistryReachable")["message"]
    assert resources.deployment("locked-stable") is None
    assert operator.poll() is None, "the operator keeps running"
    warnings = [e for e in resources.events("locked") if e["reason"] == "CredentialsSecretMissing"]
    assert len(warnings) == 1, "one Event for the problem, not one per retry"

    resources.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "mlflow-auth"},
            "data": {"MLFLOW_TRACKING_TOKEN": base64.b64encode(b"token").decode()},
        }
    )
    resources.wait_mdep("locked", is_ready_with(version), "Ready once the Secret exists")

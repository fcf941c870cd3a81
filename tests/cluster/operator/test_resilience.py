"""The operator under failure: registry down, operator killed mid-reconcile, a spec it cannot act on."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path
from typing import Any

from modelpilot.operator.spec import GROUP, VERSION
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

FINALIZER = "modelpilot.io/finalizer"


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
    resources.wait_event("steady", "RegistryUnreachable")
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


def test_deleting_without_an_operator_waits_for_its_finalizer_and_the_documented_ways_out_end_it(
    cluster: Cluster, namespace: str, resources: Resources, mlflow: MlflowServer, tmp_path: Path
) -> None:
    """The finalizer (Kopf's, for the per-resource reconcile loop) holds a deletion until an operator runs:
    starting one again ends it, and so does removing the finalizer by hand (docs/operations.md)."""
    model = registered_model(mlflow)
    version = model.add_version()
    model.set_alias("champion", version)
    log = tmp_path / "operator.log"
    with operator_process(cluster.kubeconfig, namespace, log):
        for name in ("orphan-a", "orphan-b"):
            resources.apply(model_deployment(name, model))
            resources.wait_mdep(name, is_ready_with(version), "Ready")
    for name in ("orphan-a", "orphan-b"):
        assert FINALIZER in resources.mdep(name)["metadata"]["finalizers"]
        cluster.run_kubectl("delete", "mdep", "-n", namespace, name, "--wait=false")
    held = wait_until(
        lambda: resources.mdep("orphan-a")["metadata"].get("deletionTimestamp"), timeout=10, description="deleting"
    )
    time.sleep(3)
    assert resources.get(f"{GROUP}/{VERSION}", "ModelDeployment", "orphan-a") is not None, held

    # Way out 1: an operator that starts sees the deletion and lets it finish.
    with operator_process(cluster.kubeconfig, namespace, log):
        resources.wait_gone(f"{GROUP}/{VERSION}", "ModelDeployment", "orphan-a", timeout=60)
        resources.wait_gone(f"{GROUP}/{VERSION}", "ModelDeployment", "orphan-b", timeout=60)
    # Way out 2 is shown on an object deleted while no operator runs: its finalizer removed by hand.
    with operator_process(cluster.kubeconfig, namespace, log):
        resources.apply(model_deployment("orphan-c", model))
        resources.wait_mdep("orphan-c", is_ready_with(version), "Ready")
    cluster.run_kubectl("delete", "mdep", "-n", namespace, "orphan-c", "--wait=false")
    patch = '{"metadata":{"finalizers":null}}'
    cluster.run_kubectl("patch", "mdep", "-n", namespace, "orphan-c", "--type=merge", "-p", patch)
    resources.wait_gone(f"{GROUP}/{VERSION}", "ModelDeployment", "orphan-c", timeout=30)
    # Its serving objects go with it (owner references, the garbage collector).
    resources.wait_gone("apps/v1", "Deployment", "orphan-c-stable", timeout=60)

"""Fixtures for the kubectl plugin on the real API server: users with and without rights, the chart's
request policy bound to the test namespace, the plugin run as a program, the operator and MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from modelpilot.operator.crd import build_crd
from modelpilot.operator.rollout.requests import REQUEST_ANNOTATIONS
from modelpilot.operator.spec import GROUP, PLURAL, VERSION

# The operator tests' fixtures, shared: a registered model, the operator process, the namespace's resources.
from tests.cluster.operator.conftest import model, operator, resources  # noqa: F401
from tests.support.cluster import REPO_ROOT, Cluster, apply_manifest, get_object, new_api_client, wait_until

# Two people who may act on ModelDeployments in the test namespace, and one who may not.
ALICE, BOB, CAROL = "alice", "bob", "carol"
PLUGIN = [sys.executable, "-m", "modelpilot.kubectl"]


@dataclass(frozen=True)
class Outcome:
    """What a run of the plugin printed and its exit code."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass(frozen=True)
class Plugin:
    """`kubectl modelpilot` for the test namespace, as one user (impersonated by the admin kubeconfig)."""

    kubeconfig: Path
    namespace: str

    def run(self, user: str | None, *args: str, timeout: float = 120) -> Outcome:
        """Run the plugin as `user` (None: the kubeconfig's own admin)."""
        who = ["--as", user] if user else []
        result = subprocess.run(
            [*PLUGIN, *args, "--kubeconfig", str(self.kubeconfig), "-n", self.namespace, *who],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Outcome(result.returncode, result.stdout, result.stderr)


@pytest.fixture
def plugin(cluster: Cluster, namespace: str) -> Plugin:
    return Plugin(cluster.kubeconfig, namespace)


@pytest.fixture
def people(cluster: Cluster, namespace: str) -> list[str]:
    """alice and bob get the Role a person who runs rollouts needs; carol gets nothing."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "rollout-operator", "namespace": namespace},
        "rules": [
            {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": [""], "resources": ["events", "pods"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "rollout-operators", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rollout-operator"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user} for user in (ALICE, BOB)],
    }
    apply_manifest(cluster.api_client, role, namespace=namespace)
    apply_manifest(cluster.api_client, binding, namespace=namespace)
    return [ALICE, BOB]


@pytest.fixture
def request_policy(cluster: Cluster, namespace: str) -> Iterator[list[dict[str, Any]]]:
    """The chart's ValidatingAdmissionPolicy and its binding, rendered for this namespace only (the
    cluster is shared), applied, and removed afterwards."""
    rendered = subprocess.run(
        [
            str(cluster.bin_dir / "helm"),
            "template",
            f"p-{namespace}",
            str(REPO_ROOT / "charts" / "modelpilot"),
            "--kube-version",
            "1.34.0",
            "--show-only",
            "templates/request-policy.yaml",
            "--set",
            f"operator.watchNamespaces={{{namespace}}}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    manifests = [doc for doc in yaml.safe_load_all(rendered) if doc]
    for manifest in manifests:
        apply_manifest(cluster.api_client, manifest)
    # The CRD of this checkout, again: the session fixture's copy may have been replaced since.
    apply_manifest(cluster.api_client, build_crd())
    _wait_until_enforced(cluster, namespace)
    yield manifests
    admission = client.AdmissionregistrationV1Api(cluster.api_client)
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        if manifest["kind"] == "ValidatingAdmissionPolicyBinding":
            admission.delete_validating_admission_policy_binding(name)
        else:
            admission.delete_validating_admission_policy(name)


def api_as(cluster: Cluster, user: str) -> client.ApiClient:
    """An ApiClient that acts as `user` (the admin kubeconfig impersonates)."""
    api = new_api_client(cluster.kubeconfig)
    api.set_default_header("Impersonate-User", user)  # type: ignore[no-untyped-call]
    return api


def patch_annotations(api: client.ApiClient, namespace: str, name: str, annotations: dict[str, str]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"annotations": annotations}}
    )


def plugin_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has a `kubectl-modelpilot` program, as an install puts it there."""
    shim = tmp_path / "bin" / "kubectl-modelpilot"
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m modelpilot.kubectl "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}"}


def require_own_crd(cluster: Cluster) -> None:
    """Fail with the reason when the shared cluster's CRD is no longer this checkout's: another checkout's
    test session applied its own, and the API server now prunes the status fields that one lacks."""
    name = build_crd()["metadata"]["name"]
    live = get_object(cluster.api_client, "apiextensions.k8s.io/v1", "CustomResourceDefinition", name, None) or {}
    status = live["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    history = status["history"]["items"]["properties"]
    if "requestedBy" not in history or "heldBy" not in status["canary"]["properties"]:
        pytest.fail(
            "the cluster's ModelDeployment CRD was replaced during this test by one without "
            "status.history[].requestedBy or status.canary.heldBy, so the API server prunes them: "
            "another checkout's test session applied its own; run again"
        )


def _wait_until_enforced(cluster: Cluster, namespace: str) -> None:
    """A new admission policy takes effect once the API server's informers have it (seconds under load):
    until a dry-run create signed with another name is refused by it, the tests would race it."""
    custom = client.CustomObjectsApi(cluster.api_client)
    probe = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {
            "name": "policy-probe",
            "annotations": dict.fromkeys(REQUEST_ANNOTATIONS, "x") | {"modelpilot.io/requested-by": "nobody-at-all"},
        },
        "spec": {
            "model": {"name": "probe", "alias": "champion"},
            "registry": {"trackingUri": "http://127.0.0.1:9"},
            "serving": {"image": "ghcr.io/modelpilot/inference:test"},
        },
    }

    def refused_by_the_policy() -> bool:
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, probe, dry_run="All")
        except client.ApiException as error:
            if "ValidatingAdmissionPolicy" in str(error.body):
                return True
            raise
        return False

    wait_until(refused_by_the_policy, timeout=60, description="the request policy enforced", interval=0.5)

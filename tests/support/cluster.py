"""The local control plane of hack/cluster as tests see it: start it, talk to it, apply to it, wait on it."""

from __future__ import annotations

import functools
import json
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO_ROOT / "hack" / "cluster"
FIELD_MANAGER = "modelpilot-tests"
# A cold `up` builds every binary from source first: tens of minutes on two cores.
UP_TIMEOUT = 3600.0

T = TypeVar("T")


@dataclass(frozen=True)
class Cluster:
    """A running control plane: its admin kubeconfig, its binaries and an API client bound to it."""

    kubeconfig: Path
    bin_dir: Path
    api_client: client.ApiClient

    @property
    def kubectl(self) -> Path:
        """The kubectl built with the control plane (the one on PATH may not match the server)."""
        return self.bin_dir / "kubectl"

    def run_kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster and return its output; raise with stderr when `check` and it fails."""
        result = subprocess.run(
            [str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {shlex.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result


def start_cluster(timeout: float = UP_TIMEOUT) -> Cluster:
    """Run `hack/cluster up` (it only checks a running cluster) and connect to the cluster."""
    result = subprocess.run([str(CLUSTER_SCRIPT), "up"], capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"hack/cluster up failed ({result.returncode}):\n{result.stderr[-6000:]}")
    kubeconfig, bin_dir = cluster_paths()
    return Cluster(kubeconfig=kubeconfig, bin_dir=bin_dir, api_client=new_api_client(kubeconfig))


def cluster_paths() -> tuple[Path, Path]:
    """The kubeconfig and binary directory that `hack/cluster env` exports."""
    output = subprocess.run([str(CLUSTER_SCRIPT), "env"], capture_output=True, text=True, timeout=30, check=True).stdout
    exported: dict[str, str] = {}
    for line in output.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            exported[key] = value
    bin_dir = exported["PATH"].split(":", 1)[0]
    return Path(exported["KUBECONFIG"]), Path(bin_dir)


def new_api_client(kubeconfig: Path) -> client.ApiClient:
    """An ApiClient for `kubeconfig` with its own Configuration (the client's global default stays untouched)."""
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
    )
    return client.ApiClient(configuration)


@functools.cache
def _dynamic_client(api_client: client.ApiClient) -> DynamicClient:
    return DynamicClient(api_client)  # type: ignore[no-untyped-call]


def _resource(api_client: client.ApiClient, api_version: str, kind: str) -> Any:
    dynamic = _dynamic_client(api_client)
    try:
        return dynamic.resources.get(api_version=api_version, kind=kind)
    except ResourceNotFoundError:
        # A CRD installed after discovery was cached: look again once.
        dynamic.resources.invalidate_cache()
        return dynamic.resources.get(api_version=api_version, kind=kind)


def apply_manifest(
    api_client: client.ApiClient,
    manifest: Mapping[str, Any] | str,
    *,
    namespace: str | None = None,
    field_manager: str = FIELD_MANAGER,
) -> list[dict[str, Any]]:
    """Server-side apply a manifest (a dict, or YAML with one or more documents); return the applied objects.

    `namespace` is used for namespaced objects that do not name one themselves.
    """
    documents = [d for d in yaml.safe_load_all(manifest) if d] if isinstance(manifest, str) else [dict(manifest)]
    applied = []
    for document in documents:
        resource = _resource(api_client, document["apiVersion"], document["kind"])
        target = (document.get("metadata", {}).get("namespace") or namespace) if resource.namespaced else None
        result = _dynamic_client(api_client).server_side_apply(  # type: ignore[no-untyped-call]
            resource, body=document, namespace=target, field_manager=field_manager, force_conflicts=True
        )
        applied.append(cast(dict[str, Any], result.to_dict()))
    return applied


def get_object(
    api_client: client.ApiClient, api_version: str, kind: str, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    """The object as a dict, or None when it does not exist."""
    resource = _resource(api_client, api_version, kind)
    try:
        found = _dynamic_client(api_client).get(resource, name=name, namespace=namespace)  # type: ignore[no-untyped-call]
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return cast(dict[str, Any], found.to_dict())


def list_objects(
    api_client: client.ApiClient,
    api_version: str,
    kind: str,
    namespace: str | None = None,
    label_selector: str | None = None,
) -> list[dict[str, Any]]:
    """The objects of one kind as dicts (in `namespace`, or cluster-wide), optionally filtered by labels."""
    resource = _resource(api_client, api_version, kind)
    found = _dynamic_client(api_client).get(  # type: ignore[no-untyped-call]
        resource, namespace=namespace, label_selector=label_selector
    )
    return [cast(dict[str, Any], item) for item in found.to_dict()["items"]]


def wait_until(check: Callable[[], T | None], *, timeout: float, description: str, interval: float = 0.2) -> T:
    """Call `check` until it returns something truthy and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if outcome:
            return outcome
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not within {timeout}s: {description}")
        time.sleep(interval)


def condition_status(obj: Mapping[str, Any] | None, condition_type: str) -> str | None:
    """The status ("True", "False", "Unknown") of a condition in `obj["status"]["conditions"]`, if present."""
    conditions: Sequence[Mapping[str, Any]] = ((obj or {}).get("status") or {}).get("conditions") or []
    for condition in conditions:
        if condition.get("type") == condition_type:
            return str(condition.get("status"))
    return None


def wait_for_condition(
    api_client: client.ApiClient,
    api_version: str,
    kind: str,
    name: str,
    *,
    namespace: str | None = None,
    condition: str,
    status: str = "True",
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Wait until the object's `condition` has `status`; return the object as it was then."""

    def reached() -> dict[str, Any] | None:
        obj = get_object(api_client, api_version, kind, name, namespace)
        return obj if condition_status(obj, condition) == status else None

    return wait_until(reached, timeout=timeout, description=f"{kind} {namespace}/{name} {condition}={status}")


def install_this_crd(api_client: client.ApiClient) -> dict[str, Any]:
    """This tree's ModelDeployment CRD, applied and Established; the object as then. The API server is shared
    by checkouts whose CRDs differ, so a test that needs this tree's fields applies it again right before."""
    from modelpilot.operator.crd import build_crd

    crd = build_crd()
    apply_manifest(api_client, crd)
    return wait_for_condition(
        api_client,
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd["metadata"]["name"],
        condition="Established",
        timeout=60,
    )


# Pods of a namespace with these annotations go to kwok's simulated nodes (the API server's PodNodeSelector
# and PodTolerationRestriction admission plugins add the selector and the toleration to every pod), so
# tests of the operator's logic get pods whose fate the kwok stages decide; other pods run on the real node.
SIMULATED_NODES_ANNOTATIONS = {
    "scheduler.alpha.kubernetes.io/node-selector": "type=kwok",
    "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
        [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
    ),
}


def create_namespace(api_client: client.ApiClient, prefix: str = "test", *, simulated: bool = True) -> str:
    """Create a namespace with a random suffix and wait for its default ServiceAccount (pods need it).

    Its pods run on kwok's simulated nodes unless `simulated` is False (then on the real node).
    """
    name = f"{prefix}-{secrets.token_hex(4)}"
    core = client.CoreV1Api(api_client)
    labels = {"modelpilot.io/test-namespace": "true"}
    annotations = SIMULATED_NODES_ANNOTATIONS if simulated else None
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=annotations))
    )
    wait_until(
        lambda: core.list_namespaced_service_account(name, field_selector="metadata.name=default").items,
        timeout=60,
        description=f"default ServiceAccount in namespace {name}",
    )
    return name


def release_model_deployments(api_client: client.ApiClient, namespace: str) -> None:
    """Drop the operator's finalizer from every ModelDeployment left in `namespace`: once a test's own
    operator has stopped, nothing else would, and the namespace would stay Terminating for good."""
    custom = client.CustomObjectsApi(api_client)
    try:
        left = cast(
            dict[str, Any],
            custom.list_namespaced_custom_object("modelpilot.io", "v1alpha1", namespace, "modeldeployments"),
        )
    except client.ApiException as error:
        if error.status == 404:  # no CRD, or no namespace
            return
        raise
    for item in left.get("items", []):
        if not item["metadata"].get("finalizers"):
            continue
        try:
            custom.patch_namespaced_custom_object(
                "modelpilot.io",
                "v1alpha1",
                namespace,
                "modeldeployments",
                item["metadata"]["name"],
                {"metadata": {"finalizers": None}},
                _content_type="application/merge-patch+json",
            )
        except client.ApiException as error:
            if error.status != 404:
                raise


def delete_namespace(api_client: client.ApiClient, name: str) -> None:
    """Delete a namespace without waiting; the namespace controller removes its contents."""
    try:
        client.CoreV1Api(api_client).delete_namespace(name, propagation_policy="Background")
    except client.ApiException as error:
        if error.status != 404:
            raise

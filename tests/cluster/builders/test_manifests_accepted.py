"""Every object the builders produce is accepted by the real API server (server-side apply, dry run).

The examples run in every router mode, with and without a canary; the Gateway API CRDs come from
hack/gateway-api-crds. Pods of the serving and training templates are also dry-run created in a
namespace that enforces the `restricted` Pod Security Standard, so a non-compliant template fails here.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from modelpilot.operator.builders.common import Owner
from modelpilot.operator.builders.routing import RouterPlan, build_router, router_weight
from modelpilot.operator.builders.serving import build_track
from modelpilot.operator.builders.training import build_training_cronjob, build_training_job
from modelpilot.operator.kubeapi import KubeApi, KubeError
from tests.support.gateway_api import install_gateway_api_crds
from tests.unit.operator.builders.examples import gateway_raw, ingress_raw, replicas_raw, spec_of, track_plan

FIELD_MANAGER = "modelpilot"
CRD_ESTABLISHED_TIMEOUT = 60.0

EXAMPLES: dict[str, Callable[[], dict[str, Any]]] = {
    "full": gateway_raw,
    "stages-fixed-replicas": ingress_raw,
    "minimal": replicas_raw,
}
TRAFFIC = {
    "gateway": {
        "router": "gateway",
        "gateway": {
            "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
            "hostnames": ["fraud.example.com"],
            "path": "/predict",
        },
    },
    # The gRPC service through a listener of its own, with the canary header (a GRPCRoute header match).
    "gateway-grpc": {
        "router": "gateway",
        "gateway": {
            "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
            "hostnames": ["fraud.example.com"],
            "grpc": {
                "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "grpc"}],
                "hostnames": ["fraud-grpc.example.com"],
            },
        },
        "header": {"name": "X-Canary", "valueFrom": {"secretKeyRef": {"name": "fraud-canary-header", "key": "value"}}},
    },
    "ingress": {
        "router": "ingress",
        "ingress": {"host": "fraud.example.com", "tls": {"secretName": "fraud-tls"}},
        "header": {"name": "X-Canary", "valueFrom": {"secretKeyRef": {"name": "fraud-canary-header", "key": "value"}}},
    },
    "replicas": {"router": "replicas"},
}
PLANS = {"stable-only": RouterPlan(0, False), "canary-25": RouterPlan(25, True, "3f9c2a7d81b04e6a")}


@pytest.fixture(scope="session")
def gateway_api_crds(api_client: client.ApiClient) -> list[str]:
    """The Gateway API standard-channel CRDs, installed (server-side apply) and Established."""
    return install_gateway_api_crds(api_client, timeout=CRD_ESTABLISHED_TIMEOUT)


@pytest.fixture
def restricted_namespace(api_client: client.ApiClient, namespace: str) -> str:
    """The test namespace, enforcing the restricted Pod Security Standard."""
    core = client.CoreV1Api(api_client)
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    core.patch_namespace(namespace, {"metadata": {"labels": labels}})
    # Pods without a serviceAccountName use `default`, which the controller manager creates shortly
    # after the namespace; admission refuses pods until it exists.
    deadline = time.monotonic() + CRD_ESTABLISHED_TIMEOUT
    while not core.list_namespaced_service_account(namespace, field_selector="metadata.name=default").items:
        assert time.monotonic() < deadline, f"no default ServiceAccount in {namespace}"
        time.sleep(0.2)
    return namespace


def _spec_raw(example: str, router: str) -> dict[str, Any]:
    raw = EXAMPLES[example]()
    raw["traffic"] = copy.deepcopy(TRAFFIC[router])
    return raw


def _objects(owner: Owner, raw: dict[str, Any], plan: RouterPlan) -> list[dict[str, Any]]:
    spec = spec_of(raw)
    objects = build_track(owner, spec, track_plan("stable", version="3", replicas=2))
    if plan.canary_present:
        objects += build_track(owner, spec, track_plan("canary", version="4", replicas=1, min_replicas=1))
    objects += build_router(owner, spec, plan).apply
    if spec.training is not None:
        objects.append(build_training_job(owner, spec, job_name=f"{owner.name}-train-initial", trigger="initial"))
        if spec.training.schedule:
            objects.append(build_training_cronjob(owner, spec, name=f"{owner.name}-train-scheduled"))
    return objects


def _owner(namespace: str) -> Owner:
    return Owner(name="fraud", namespace=namespace, uid="0b6f3c1e-5a43-4c1e-9d6b-2f1d9a7c0e11")


def _managers(obj: dict[str, Any]) -> set[str]:
    return {entry.get("manager", "") for entry in obj["metadata"].get("managedFields") or []}


async def _dry_run_apply(kube: KubeApi, obj: dict[str, Any]) -> dict[str, Any]:
    try:
        return await kube.apply(obj, dry_run=True)
    except KubeError as error:
        pytest.fail(f"{obj['kind']} {obj['metadata']['name']} refused: {error}")


@pytest.mark.parametrize("plan_name", PLANS)
@pytest.mark.parametrize("router", TRAFFIC)
@pytest.mark.parametrize("example", EXAMPLES)
async def test_every_built_object_is_accepted_by_server_side_apply(
    api_client: client.ApiClient,
    gateway_api_crds: list[str],
    namespace: str,
    example: str,
    router: str,
    plan_name: str,
) -> None:
    plan = PLANS[plan_name]
    kube = KubeApi(api_client, field_manager=FIELD_MANAGER)
    objects = _objects(_owner(namespace), _spec_raw(example, router), plan)
    assert objects
    kinds = {obj["kind"] for obj in objects}
    assert ("GRPCRoute" in kinds) == (router == "gateway-grpc")
    for obj in objects:
        stored = await _dry_run_apply(kube, obj)
        assert stored["kind"] == obj["kind"]
        assert stored["metadata"]["name"] == obj["metadata"]["name"]
        assert FIELD_MANAGER in _managers(stored)
        assert stored["metadata"]["labels"] == obj["metadata"]["labels"]
        assert stored["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["ownerReferences"][0]["uid"]
        if obj["kind"] in {"HTTPRoute", "GRPCRoute", "Ingress"} and router_weight(obj) is not None:
            assert router_weight(stored) == router_weight(obj) == (25 if plan.canary_present else 0)


async def test_hpa_managed_deployment_leaves_replicas_to_the_server(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = KubeApi(api_client, field_manager=FIELD_MANAGER)
    deployment = next(
        obj
        for obj in build_track(_owner(namespace), spec_of(gateway_raw()), track_plan())
        if obj["kind"] == "Deployment"
    )
    stored = await _dry_run_apply(kube, deployment)
    ours = next(entry for entry in stored["metadata"]["managedFields"] if entry["manager"] == FIELD_MANAGER)
    assert "f:replicas" not in ours["fieldsV1"]["f:spec"]


def _pod_from(owner: Owner, name: str, template: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": owner.namespace, "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }


async def test_serving_and_training_pods_pass_restricted_pod_security(
    api_client: client.ApiClient, restricted_namespace: str
) -> None:
    kube = KubeApi(api_client, field_manager=FIELD_MANAGER)
    owner = _owner(restricted_namespace)
    spec = spec_of(gateway_raw())
    track = build_track(owner, spec, track_plan())
    # The ServiceAccount admission plugin wants the pod's account to exist, even for a dry run.
    account = next(obj for obj in track if obj["kind"] == "ServiceAccount")
    account = {**account, "metadata": {k: v for k, v in account["metadata"].items() if k != "ownerReferences"}}
    await kube.apply(account)
    deployment = next(obj for obj in track if obj["kind"] == "Deployment")
    job = build_training_job(owner, spec, job_name="fraud-train-initial", trigger="initial")
    pods = [
        _pod_from(owner, "serving", deployment["spec"]["template"]),
        _pod_from(owner, "training", job["spec"]["template"]),
    ]
    for pod in pods:
        await _dry_run_apply(kube, pod)

    # The check has teeth: the same pod as root is refused.
    root = copy.deepcopy(pods[0])
    root["spec"]["securityContext"]["runAsNonRoot"] = False
    root["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = False
    with pytest.raises(KubeError, match="restricted"):
        await kube.apply(root, dry_run=True)


def _without_owner(obj: dict[str, Any]) -> dict[str, Any]:
    # No ModelDeployment exists here; an owner reference to one would let the garbage collector interfere.
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "ownerReferences"}}


def _version_marker(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    # Controllers write status (which moves resourceVersion); generation moves only with the spec.
    return (
        ("generation", str(meta["generation"]))
        if "generation" in meta
        else ("resourceVersion", meta["resourceVersion"])
    )


@pytest.mark.parametrize("example", EXAMPLES)
async def test_applying_the_same_objects_again_changes_nothing(
    api_client: client.ApiClient, gateway_api_crds: list[str], namespace: str, example: str
) -> None:
    """The operator applies on every reconcile: an unchanged spec must not touch a spec (or roll pods)."""
    kube = KubeApi(api_client, field_manager=FIELD_MANAGER)
    objects = [
        _without_owner(obj) for obj in _objects(_owner(namespace), _spec_raw(example, "gateway"), PLANS["canary-25"])
    ]
    first = [_version_marker(await kube.apply(obj)) for obj in objects]
    second = [_version_marker(await kube.apply(obj)) for obj in objects]
    for obj, before, after in zip(objects, first, second, strict=True):
        assert before == after, f"{obj['kind']} {obj['metadata']['name']} changed on a repeated apply"

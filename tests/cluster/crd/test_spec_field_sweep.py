"""The spec-field sweep on a real API server (no operator): for every spec field copied into a derived object,
each value that object's API refuses is refused when the ModelDeployment is applied, or — where the CRD cannot
say it exactly — the ModelDeployment is accepted and the API server refuses the object the builders make from it
(the operator's InvalidSpec path). The edge values the CRD accepts yield objects the API server accepts, and so
does the longest name the CRD accepts. The table is tests/support/spec_fields.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from modelpilot.operator.builders.common import Owner
from modelpilot.operator.handlers.training import CRONJOB_NAME_LIMIT
from modelpilot.operator.kubeapi import KubeApi, KubeError
from modelpilot.operator.spec import GROUP, PLURAL, VERSION, parse_spec
from modelpilot.operator.spec.training import MAX_WORKERS
from tests.support.cluster import install_this_crd
from tests.support.derived_objects import derived_objects
from tests.support.gateway_api import install_gateway_api_crds
from tests.support.keda import install_keda_crds
from tests.support.kubeflow_trainer import install_kubeflow_trainer_crds
from tests.support.spec_fields import Accepted, Base, Refusal, acceptances, apply_changes, base_spec, refusals

FIELD_MANAGER = "modelpilot"
UID = "0b6f3c1e-5a43-4c1e-9d6b-2f1d9a7c0e11"
LONGEST_NAME = 56  # the CRD's bound on metadata.name
DNS1035_LABEL_MAX = 63
BASES: tuple[Base, ...] = ("gateway", "ingress", "keda", "kubeflow")


@pytest.fixture(scope="module")
def third_party_crds(api_client: client.ApiClient) -> None:
    """HTTPRoute, ScaledObject and TrainJob, whose schemas the derived objects must pass."""
    install_gateway_api_crds(api_client)
    install_keda_crds(api_client)
    install_kubeflow_trainer_crds(api_client)


@pytest.fixture
def this_crd(api_client: client.ApiClient) -> None:
    """This tree's CRD, applied again right before the case: the API server is shared with other checkouts."""
    install_this_crd(api_client)


def _create_dry_run(api_client: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": name}, "spec": spec}
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, dry_run="All"
    )


async def _refused_objects(api_client: client.ApiClient, owner: Owner, spec: dict[str, Any]) -> dict[str, str]:
    """`kind name` → the API server's reason, for each derived object a server-side dry-run apply refuses."""
    kube = KubeApi(api_client, field_manager=FIELD_MANAGER)
    refused = {}
    for obj in derived_objects(owner, parse_spec(spec)):
        try:
            await kube.apply(obj, dry_run=True)
        except KubeError as error:
            refused[f"{obj['kind']} {obj['metadata']['name']}"] = str(error)
    return refused


def _ids(cases: list[tuple[str, Any]]) -> list[str]:
    return [f"{path}-{index}" for index, (path, _) in enumerate(cases)]


@pytest.mark.usefixtures("this_crd", "third_party_crds")
@pytest.mark.parametrize(("path", "refusal"), refusals(), ids=_ids(refusals()))
async def test_a_refused_value_is_refused_with_the_model_deployment_or_its_object(
    api_client: client.ApiClient, namespace: str, path: str, refusal: Refusal
) -> None:
    spec = apply_changes(refusal.base, refusal.changes)
    if refusal.by == "crd":
        with pytest.raises(client.ApiException) as raised:
            _create_dry_run(api_client, namespace, "sweep", spec)
        assert raised.value.status == 422
        assert refusal.reason in str(raised.value.body), raised.value.body
        return
    _create_dry_run(api_client, namespace, "sweep", spec)
    refused = await _refused_objects(api_client, Owner("sweep", namespace, UID), spec)
    matching = [why for what, why in refused.items() if what.startswith(f"{refusal.kind} ")]
    assert matching, f"{path}: no {refusal.kind} refused ({refused})"
    assert any(refusal.reason in why for why in matching), matching


@pytest.mark.usefixtures("this_crd", "third_party_crds")
@pytest.mark.parametrize(("path", "accepted"), acceptances(), ids=_ids(acceptances()))
async def test_edge_values_yield_objects_the_api_server_accepts(
    api_client: client.ApiClient, namespace: str, path: str, accepted: Accepted
) -> None:
    spec = apply_changes(accepted.base, accepted.changes)
    _create_dry_run(api_client, namespace, "sweep", spec)
    assert await _refused_objects(api_client, Owner("sweep", namespace, UID), spec) == {}


@pytest.mark.usefixtures("this_crd", "third_party_crds")
@pytest.mark.parametrize("base", BASES)
async def test_the_longest_name_yields_names_every_derived_object_accepts(
    api_client: client.ApiClient, namespace: str, base: Base
) -> None:
    name = "m" + "-x" * ((LONGEST_NAME - 1) // 2) + "y" * ((LONGEST_NAME - 1) % 2)
    assert len(name) == LONGEST_NAME
    spec = base_spec(base)
    _create_dry_run(api_client, namespace, name, spec)
    with pytest.raises(client.ApiException, match="at most 56 characters"):
        _create_dry_run(api_client, namespace, name + "z", spec)
    owner = Owner(name, namespace, UID)
    assert await _refused_objects(api_client, owner, spec) == {}
    objects = derived_objects(owner, parse_spec(spec))
    for obj in objects:
        object_name = obj["metadata"]["name"]
        if obj["kind"] == "Service":
            assert len(object_name) <= DNS1035_LABEL_MAX
        if obj["kind"] == "CronJob":
            assert len(object_name) <= CRONJOB_NAME_LIMIT
        if obj["kind"] == "Job" and obj["spec"].get("completionMode") == "Indexed":
            # Each pod's hostname is `<job>-<index>`: a DNS label.
            assert len(f"{object_name}-{obj['spec']['completions'] - 1}") <= DNS1035_LABEL_MAX
        if obj["kind"] == "TrainJob":
            # JobSet refuses a JobSet whose pod names `<name>-node-0-<index>-<5 characters>` exceed a DNS label.
            assert len(f"{object_name}-node-0-{MAX_WORKERS - 1}-abcde") <= DNS1035_LABEL_MAX
    assert {obj["kind"] for obj in objects} >= {"Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"}

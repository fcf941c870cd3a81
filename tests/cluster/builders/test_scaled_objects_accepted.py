"""The ScaledObjects the builders make for request-rate autoscaling are accepted by KEDA's own CRD schema.

KEDA's CRDs come from its Go module (hack/keda-crds, the version hack/tools/keda pins). A server-side dry
run must store every field as built: the API server prunes fields a CRD's schema does not know, so a
misspelled or moved field shows up as a difference here, and a wrong type is refused.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client

from modelpilot.operator.builders.common import Owner
from modelpilot.operator.builders.traffic import plan_traffic
from modelpilot.operator.kubeapi import KubeApi, KubeError
from tests.support.keda import install_keda_crds
from tests.unit.operator.builders.examples import gateway_raw, spec_of

FIELD_MANAGER = "modelpilot"


@pytest.fixture(scope="session")
def keda_crds(api_client: client.ApiClient) -> list[str]:
    """KEDA's CRDs, installed and Established."""
    return install_keda_crds(api_client)


def _request_rate_raw() -> dict[str, Any]:
    raw = gateway_raw()
    del raw["serving"]["autoscaling"]["metric"]
    raw["serving"]["autoscaling"]["requestRate"] = {"targetPerReplica": 12.5, "window": "2m"}
    return raw


def _scaled_objects(namespace: str) -> list[dict[str, Any]]:
    owner = Owner(name="fraud", namespace=namespace, uid="0b6f3c1e-5a43-4c1e-9d6b-2f1d9a7c0e11")
    plan = plan_traffic(owner, spec_of(_request_rate_raw()), stable="3", canary="4", weight=25, autoscaler="keda")
    scaled = [copy.deepcopy(obj) for obj in plan.apply if obj["kind"] == "ScaledObject"]
    for obj in scaled:  # no ModelDeployment exists here
        obj["metadata"].pop("ownerReferences")
    return scaled


async def test_scaled_objects_of_both_tracks_are_stored_as_built(
    api_client: client.ApiClient, keda_crds: list[str], namespace: str
) -> None:
    assert "scaledobjects.keda.sh" in keda_crds
    kube = KubeApi(api_client, field_manager=FIELD_MANAGER)
    scaled = _scaled_objects(namespace)
    assert [obj["metadata"]["name"] for obj in scaled] == ["fraud-canary", "fraud-stable"]
    for obj in scaled:
        stored = await kube.apply(obj, dry_run=True)
        assert stored["spec"] == obj["spec"]  # nothing pruned, nothing defaulted away
        assert stored["metadata"]["labels"] == obj["metadata"]["labels"]


async def test_a_scaled_object_with_a_wrong_field_type_is_refused(
    api_client: client.ApiClient, keda_crds: list[str], namespace: str
) -> None:
    kube = KubeApi(api_client, field_manager=FIELD_MANAGER)
    (obj, _) = _scaled_objects(namespace)
    obj["spec"]["minReplicaCount"] = "two"
    with pytest.raises(KubeError, match="minReplicaCount"):
        await kube.apply(obj, dry_run=True)

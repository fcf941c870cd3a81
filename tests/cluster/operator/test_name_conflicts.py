"""Two owners whose derived names collide never fight over one object: an object another ModelDeployment (or any
other controller) controls is neither applied nor deleted by this one, which reports the conflict; an object
left by a deleted ModelDeployment of the same name is taken over. Real API server, no operator process."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from modelpilot.operator.builders.common import Owner
from modelpilot.operator.builders.traffic import plan_traffic
from modelpilot.operator.kubeapi import KubeApi
from modelpilot.operator.owned import AppliedMemory, OwnedElsewhereError, OwnedObjects
from modelpilot.operator.spec import GROUP, KIND, PLURAL, VERSION, parse_spec
from tests.support.crd_cases import valid_spec

pytestmark = pytest.mark.usefixtures("modelpilot_crd")

OTHER_UID = "7d1c9f0e-2b64-4d0f-8a51-3e9b6c2f4a10"


def _model_deployment(api_client: client.ApiClient, namespace: str, name: str) -> Owner:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": name}, "spec": valid_spec()}
    created = client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    assert isinstance(created, dict)
    return Owner(name, namespace, created["metadata"]["uid"])


def _service(namespace: str, name: str, controller: Owner) -> dict[str, Any]:
    reference = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": controller.name, "uid": controller.uid}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": [{**reference, "controller": True}]},
        "spec": {"ports": [{"name": "other", "port": 1234}]},
    }


def _objects(kube: KubeApi, owner: Owner) -> tuple[OwnedObjects, list[dict[str, Any]]]:
    raw = {**valid_spec(), "traffic": {"router": "replicas"}}
    for section in ("rollout", "monitoring"):
        del raw[section]
    spec = parse_spec(raw)
    plan = plan_traffic(owner, spec, stable="1", canary=None, weight=0)
    return OwnedObjects(kube, AppliedMemory(), owner, spec), plan.apply


async def test_an_object_another_model_deployment_controls_is_left_alone(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = KubeApi(api_client)
    owner = _model_deployment(api_client, namespace, "fraud")
    other = _model_deployment(api_client, namespace, "other")
    await kube.apply(_service(namespace, "fraud-stable", other))
    objects, to_apply = _objects(kube, owner)

    with pytest.raises(OwnedElsewhereError) as raised:
        await objects.apply(to_apply)
    assert raised.value.describe().startswith("Service fraud-stable that this ModelDeployment derives")
    assert "ModelDeployment other" in raised.value.describe()
    service = await kube.get("v1", "Service", namespace, "fraud-stable")
    assert service is not None
    assert [ref["uid"] for ref in service["metadata"]["ownerReferences"]] == [other.uid]
    assert [port["port"] for port in service["spec"]["ports"]] == [1234]

    await objects.delete([("v1", "Service", "fraud-stable")])
    assert await kube.get("v1", "Service", namespace, "fraud-stable") is not None


async def test_an_object_of_a_deleted_namesake_is_taken_over(api_client: client.ApiClient, namespace: str) -> None:
    kube = KubeApi(api_client)
    owner = _model_deployment(api_client, namespace, "fraud")
    # A ModelDeployment named fraud that was deleted and created again: its objects may outlive it a moment.
    await kube.apply(_service(namespace, "fraud-stable", Owner("fraud", namespace, OTHER_UID)))
    objects, to_apply = _objects(kube, owner)

    await objects.apply(to_apply)
    service = await kube.get("v1", "Service", namespace, "fraud-stable")
    assert service is not None
    assert owner.uid in [ref["uid"] for ref in service["metadata"]["ownerReferences"]]
    requests = objects.requests
    # Once applied by this process, an object is not read again before the next apply.
    await objects.apply([{**to_apply[0], "metadata": {**to_apply[0]["metadata"], "annotations": {"x": "1"}}}])
    assert objects.requests == requests + 1


async def test_a_deployment_is_not_applied_beside_a_service_account_another_owner_controls(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = KubeApi(api_client)
    owner = _model_deployment(api_client, namespace, "fraud")
    other = _model_deployment(api_client, namespace, "other")
    reference = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": other.name, "uid": other.uid}
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": "fraud-stable",
            "namespace": namespace,
            "ownerReferences": [{**reference, "controller": True}],
        },
    }
    await kube.apply(account)
    objects, to_apply = _objects(kube, owner)
    assert [obj["kind"] for obj in to_apply[:2]] == ["ServiceAccount", "Deployment"]

    # The ServiceAccount and the Deployment whose pods would run under it go out together, or neither does.
    with pytest.raises(OwnedElsewhereError) as raised:
        await objects.apply(to_apply)
    assert raised.value.describe().startswith("ServiceAccount fraud-stable that this ModelDeployment derives")
    assert await kube.get("apps/v1", "Deployment", namespace, "fraud-stable") is None

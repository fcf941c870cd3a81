"""A plan is built again only when it may differ from the one last applied: other inputs (spec, version,
settings), an object someone else changed, an object due for its resync. Otherwise an idle run neither builds
nor digests it. Real API server, no operator process; the plan builder is the real one, counted."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from modelpilot.operator.builders.common import Owner
from modelpilot.operator.builders.traffic import TrafficPlan, plan_traffic
from modelpilot.operator.kubeapi import KubeApi
from modelpilot.operator.owned import AppliedMemory, OwnedObjects
from modelpilot.operator.spec import GROUP, KIND, PLURAL, VERSION, ModelDeploymentSpec, parse_spec
from tests.support.crd_cases import valid_spec

pytestmark = pytest.mark.usefixtures("modelpilot_crd")

RESYNC = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountedPlans:
    """The real stable-only plan of a spec, counting how often it is built."""

    def __init__(self, owner: Owner, spec: ModelDeploymentSpec) -> None:
        self.owner, self.spec, self.built = owner, spec, 0

    def builder(self, version: str) -> Any:
        def build() -> TrafficPlan:
            self.built += 1
            return plan_traffic(self.owner, self.spec, stable=version, canary=None, weight=0)

        return build


def _owner(api_client: client.ApiClient, namespace: str) -> tuple[Owner, ModelDeploymentSpec]:
    raw = {**valid_spec(), "traffic": {"router": "replicas"}}
    for section in ("rollout", "monitoring"):
        del raw[section]
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": "planned"}, "spec": raw}
    created = client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    assert isinstance(created, dict)
    return Owner("planned", namespace, created["metadata"]["uid"]), parse_spec(raw)


async def test_a_plan_is_built_again_only_when_it_may_differ_from_the_one_applied(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = KubeApi(api_client)
    owner, spec = _owner(api_client, namespace)
    clock = Clock()
    memory = AppliedMemory(resync_seconds=RESYNC, clock=clock)
    plans = CountedPlans(owner, spec)

    def run() -> OwnedObjects:
        return OwnedObjects(kube, memory, owner, spec)

    await run().apply_planned(("spec", "1"), plans.builder("1"))
    assert plans.built == 1
    idle = run()
    await idle.apply_planned(("spec", "1"), plans.builder("1"))
    assert (plans.built, idle.requests) == (1, 0)

    # Another version: built, and the Deployment follows it.
    await run().apply_planned(("spec", "2"), plans.builder("2"))
    assert plans.built == 2
    deployment = await kube.get("apps/v1", "Deployment", namespace, "planned-stable")
    assert deployment is not None
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MODELPILOT_MODEL_VERSION", "value": "2"} in env

    # Someone else edits the Deployment; a read that shows it makes the memory let go: built and applied again.
    client.AppsV1Api(api_client).patch_namespaced_deployment(
        "planned-stable", namespace, {"spec": {"template": {"metadata": {"labels": {"edited": "yes"}}}}}
    )
    reader = run()
    await reader.read("apps/v1", "Deployment", "planned-stable")
    await reader.apply_planned(("spec", "2"), plans.builder("2"))
    assert plans.built == 3

    # Its resync is due: built again, although nothing changed.
    clock.now += RESYNC
    await run().apply_planned(("spec", "2"), plans.builder("2"))
    assert plans.built == 4
    await run().apply_planned(("spec", "2"), plans.builder("2"))
    assert plans.built == 4

    # A failed request forgets the resource, its plan included.
    memory.forget(namespace, owner.name)
    await run().apply_planned(("spec", "2"), plans.builder("2"))
    assert plans.built == 5

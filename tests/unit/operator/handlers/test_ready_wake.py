"""A resource whose stable track is not Ready yet looks again after 2 s, then less often (up to 10 s), and the watch
of its Deployment wakes it as soon as the Deployment is Ready. The real Runtime, fed watch events as Kopf would;
no API server: nothing here makes a request (the Kubernetes client is never called)."""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient

from modelpilot.operator.handlers.reconcile import not_ready_requeue
from modelpilot.operator.kubeapi import KubeApi
from modelpilot.operator.runtime import Runtime
from modelpilot.operator.settings import OperatorSettings
from modelpilot.operator.spec import GROUP, KIND, VERSION


def _deployment(
    owner: str, *, ready: int, generation: int = 1, observed: int = 1, track: str = "stable"
) -> dict[str, Any]:
    reference = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": owner, "uid": "u", "controller": True}
    return {
        "metadata": {
            "name": f"{owner}-{track}",
            "namespace": "ns",
            "generation": generation,
            "ownerReferences": [reference],
        },
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": observed,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": ready,
            "availableReplicas": ready,
            **({"unavailableReplicas": 2 - ready} if ready < 2 else {}),
        },
    }


def _runtime() -> Runtime:
    return Runtime(settings=OperatorSettings(), kube=KubeApi(ApiClient()))


def test_a_waiting_resource_is_woken_when_its_deployment_is_ready() -> None:
    runtime = _runtime()
    woken = runtime.wakeup("ns", "fraud")
    runtime.still_not_ready("ns", "fraud")

    runtime.deployment_seen("MODIFIED", _deployment("fraud", ready=1))
    assert not woken.is_set()
    runtime.deployment_seen("MODIFIED", _deployment("fraud", ready=2, track="canary"))
    assert not woken.is_set(), "another track's Deployment"
    runtime.deployment_seen("MODIFIED", _deployment("fraud", ready=2, generation=2, observed=1))
    assert not woken.is_set(), "its controller has not seen the current spec yet"
    runtime.deployment_seen("MODIFIED", _deployment("fraud", ready=2))
    assert woken.is_set()
    assert runtime.deployments.at_generation("ns", "fraud-stable", 1) is not None

    # The controller writes the settled status again (its conditions): the run it woke is enough.
    woken.clear()
    runtime.deployment_seen("MODIFIED", _deployment("fraud", ready=2))
    assert not woken.is_set()
    assert runtime.still_not_ready("ns", "fraud") == 0, "a woken run that still finds it not Ready starts over"


def test_a_resource_that_does_not_wait_is_not_woken() -> None:
    runtime = _runtime()
    woken = runtime.wakeup("ns", "fraud")
    runtime.deployment_seen("MODIFIED", _deployment("fraud", ready=2))
    assert not woken.is_set()

    runtime.still_not_ready("ns", "fraud")
    runtime.not_waiting("ns", "fraud")
    runtime.deployment_seen("MODIFIED", _deployment("fraud", ready=2))
    assert not woken.is_set()
    runtime.still_not_ready("ns", "fraud")
    runtime.deployment_seen("DELETED", _deployment("fraud", ready=2))
    assert not woken.is_set()


def test_it_looks_again_less_often_while_it_stays_not_ready() -> None:
    runtime = _runtime()
    runs = [runtime.still_not_ready("ns", "fraud") for _ in range(5)]
    assert runs == [0, 1, 2, 3, 4]
    assert [not_ready_requeue(run, 60.0) for run in runs] == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert not_ready_requeue(1000, 60.0) == 10.0
    assert [not_ready_requeue(run, 3.0) for run in runs] == [2.0, 3.0, 3.0, 3.0, 3.0], "never longer than the poll"
    runtime.not_waiting("ns", "fraud")
    assert runtime.still_not_ready("ns", "fraud") == 0

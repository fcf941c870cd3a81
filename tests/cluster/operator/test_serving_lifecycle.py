"""The operator against a real API server (kwok pods) and a real MLflow server: serve, follow, clean up."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.cluster.operator.conftest import (
    RegisteredModel,
    condition,
    is_ready_with,
    model_deployment,
    template_version,
)
from tests.support.cluster import wait_until
from tests.support.namespace_objects import Resources


def test_serves_the_alias_follows_it_and_cleans_up(
    resources: Resources, model: RegisteredModel, operator: subprocess.Popen[bytes]
) -> None:
    first, second = model.add_version(), model.add_version()
    model.set_alias("champion", first)
    resources.apply(
        model_deployment(
            "fraud",
            model,
            serving={
                "image": "ghcr.io/modelpilot/inference:test",
                "replicas": 2,
                "autoscaling": {"minReplicas": 2, "maxReplicas": 4},
            },
        )
    )

    ready = resources.wait_mdep("fraud", is_ready_with(first), f"Ready with version {first}")
    assert ready["status"]["phase"] == "Ready"
    # With an HPA the Deployment's replicas belong to the autoscaler (there is no metrics server here).
    assert ready["status"]["stable"]["readyReplicas"] == ready["status"]["stable"]["replicas"] >= 1
    assert ready["status"]["observedGeneration"] == ready["metadata"]["generation"]
    assert template_version(resources.deployment("fraud-stable")) == first
    assert resources.get("v1", "Service", "fraud-stable") is not None
    assert resources.get("autoscaling/v2", "HorizontalPodAutoscaler", "fraud-stable") is not None
    assert resources.get("v1", "Service", "fraud") is not None  # the replica router's shared Service

    model.set_alias("champion", second)
    resources.wait_mdep("fraud", is_ready_with(second), f"Ready with version {second}")
    deployment = resources.deployment("fraud-stable")
    assert deployment is not None
    assert template_version(deployment) == second
    env = {item["name"]: item.get("value") for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELPILOT_MODEL_URI"] == f"models:/{model.name}/{second}"
    reasons = [event["reason"] for event in resources.events("fraud")]
    assert "StableVersionChanged" in reasons
    # The operator watches its Deployments (to observe them without reading them); the watch posts no Event.
    assert not [e for e in resources.events("fraud-stable") if "watch_deployment" in (e["message"] or "")]

    edited = model_deployment("fraud", model, serving={"image": "ghcr.io/modelpilot/inference:test", "replicas": 3})
    resources.apply(edited)
    wait_until(
        lambda: (resources.deployment("fraud-stable") or {}).get("spec", {}).get("replicas") == 3,
        timeout=30,
        description="Deployment follows the spec's replicas",
    )
    wait_until(
        lambda: resources.get("autoscaling/v2", "HorizontalPodAutoscaler", "fraud-stable") is None,
        timeout=30,
        description="the HPA goes with autoscaling",
    )

    resources.delete_mdep("fraud")
    wait_until(
        lambda: resources.deployment("fraud-stable") is None, timeout=180, description="owned Deployment gone"
    )  # GC
    wait_until(lambda: resources.get("v1", "Service", "fraud-stable") is None, timeout=60, description="Service gone")
    assert model.alias("champion") == second  # the registry is never touched on delete


def test_ready_only_when_pods_serving_the_shown_version_are_ready(
    resources: Resources, model: RegisteredModel, operator: subprocess.Popen[bytes]
) -> None:
    first, second = model.add_version(), model.add_version()
    model.set_alias("champion", first)
    resources.apply(model_deployment("honest", model))
    resources.wait_mdep("honest", is_ready_with(first), "Ready")

    # A second field manager marks the pod template: kwok keeps such pods Running but unready.
    resources.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "honest-stable"},
            "spec": {"template": {"metadata": {"annotations": {"modelpilot.io/kwok-unready": "true"}}}},
        }
    )
    model.set_alias("champion", second)

    def unready_on_new_version(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready")
        return (obj["status"].get("stable") or {}).get("version") == second and ready.get("status") == "False"

    held = resources.wait_mdep("honest", unready_on_new_version, "Ready=False while the new pods are unready")
    assert condition(held, "Ready")["reason"] == "PodsNotReady"
    assert "ready with another version" in condition(held, "Ready")["message"]
    assert condition(held, "Progressing")["status"] == "True"

"""Every object the operator derives from one ModelDeployment spec, built by its pure builders, and the leaves of
the CRD's spec schema: what the spec-field sweep (tests/support/spec_fields.py) walks and applies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from modelpilot.operator.builders.common import Owner
from modelpilot.operator.builders.traffic import plan_traffic
from modelpilot.operator.builders.training import build_training_cronjob
from modelpilot.operator.builders.trainjob import build_training_run
from modelpilot.operator.crd import build_crd
from modelpilot.operator.handlers.training import cronjob_name, job_name
from modelpilot.operator.spec import ModelDeploymentSpec

# What the operator would read from the canary header's Secret.
HEADER_VALUE = "3f9c2a7d81b04e6a9d1c"


def derived_objects(owner: Owner, spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    """Every object the operator applies for `spec` in its richest state: both tracks at the first step's weight
    (mirrored when the spec has a shadow phase), the router, a training run and the scheduled-training CronJob."""
    rollout = spec.rollout
    weight = rollout.steps[0] if rollout is not None else 0
    autoscaling = spec.serving.autoscaling
    plan = plan_traffic(
        owner,
        spec,
        stable="3",
        canary="4" if rollout is not None else None,
        weight=weight,
        stable_replicas=None,
        router_proxies="10.0.0.0/8",
        canary_header_value=HEADER_VALUE if spec.traffic.header is not None else None,
        autoscaler="keda" if autoscaling is not None and autoscaling.request_rate is not None else "hpa",
        mirror=rollout is not None and rollout.shadow_enabled,
    )
    objects = list(plan.apply)
    training = spec.training
    if training is not None:
        objects += build_training_run(owner, spec, job_name=job_name(owner, "initial", "1"), trigger="initial")
        if training.schedule:
            objects.append(build_training_cronjob(owner, spec, name=cronjob_name(owner)))
    return objects


def spec_schema() -> dict[str, Any]:
    """The `spec` schema of the generated CRD."""
    version = build_crd()["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def spec_leaves(node: dict[str, Any] | None = None, path: str = "") -> Iterator[str]:
    """Dotted paths of every leaf of the spec schema: `[]` marks a list's items, `*` a map's values."""
    node = spec_schema() if node is None else node
    if node.get("properties"):
        for name, child in node["properties"].items():
            yield from spec_leaves(child, f"{path}.{name}" if path else name)
    elif node.get("type") == "array":
        yield from spec_leaves(node["items"], f"{path}[]")
    elif isinstance(node.get("additionalProperties"), dict):
        yield from spec_leaves(node["additionalProperties"], f"{path}.*")
    else:
        yield path

"""Specs the API server accepts for a ModelDeployment but from which it refuses a derived object: the
ModelDeployment shows it (phase Invalid, an InvalidSpec condition naming the object and the API server's
reason, one Event) instead of retrying in silence, and a corrected spec is acted on at once."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.cluster.operator.conftest import RegisteredModel, condition, is_ready_with, model_deployment
from tests.support.namespace_objects import Resources

Spec = dict[str, Any]


def _serving(**changes: Any) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        spec["serving"].update(changes)

    return change


def _scheduled(schedule: str) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        spec["training"] = {"image": "ghcr.io/modelpilot/train:test", "schedule": schedule}

    return change


CASES = [
    # (name, change, the object refused, a phrase of the API server's reason)
    ("selector", _serving(nodeSelector={"bad key!": "x"}), "Deployment", "nodeSelector"),
    ("annotation", _serving(podAnnotations={"a/b/c": "x"}), "Deployment", "annotations"),
    (
        "over-limit",
        _serving(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
        "Deployment",
        "must be less than or equal to cpu limit",
    ),
    ("cron", _scheduled("99 3 * * 0"), "CronJob", "schedule"),
]


@pytest.mark.parametrize(("name", "change", "kind", "reason"), CASES, ids=[case[0] for case in CASES])
def test_a_refused_derived_object_is_an_invalid_spec_with_one_event_until_the_spec_is_fixed(
    resources: Resources,
    model: RegisteredModel,
    operator: subprocess.Popen[bytes],
    name: str,
    change: Callable[[Spec], None],
    kind: str,
    reason: str,
) -> None:
    version = model.add_version()
    model.set_alias("champion", version)
    good = model_deployment(name, model)
    bad = model_deployment(name, model)
    change(bad["spec"])
    resources.apply(bad)

    invalid = resources.wait_mdep(name, lambda m: (m.get("status") or {}).get("phase") == "Invalid", "Invalid")
    found = condition(invalid, "Ready")
    assert found["reason"] == "InvalidSpec"
    assert f"the API server refused {kind}" in found["message"]
    assert reason in found["message"], found["message"]
    time.sleep(8)  # more than the operator's retry delay of an API error
    events = [e for e in resources.events(name) if e["reason"] == "InvalidSpec"]
    assert len(events) == 1, events
    assert operator.poll() is None

    resources.apply(good)
    resources.wait_mdep(name, is_ready_with(version), "Ready once the spec is fixed")

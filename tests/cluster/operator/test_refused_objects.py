"""Specs the API server accepts for a ModelDeployment but from which it refuses a derived object: the
ModelDeployment shows it (phase Invalid, an InvalidSpec condition naming the object and the API server's
reason, one Event) instead of retrying in silence, and a corrected spec is acted on at once. The cases are
representatives of the fields the CRD cannot check exactly (tests/support/spec_fields.py lists them all, with
tests/cluster/crd/test_spec_field_sweep.py); an object another owner controls is a NameConflict the same way,
and the longest name the CRD accepts is served."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from modelpilot.operator.spec import GROUP, KIND, VERSION
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
    (
        "affinity",
        _serving(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}),
        "Deployment",
        "nodeSelectorTerms",
    ),
    ("annotation-size", _serving(podAnnotations={"big": "x" * 262_144}), "Deployment", "262144 bytes"),
    ("resource-name", _serving(resources={"requests": {"gpus": "1"}}), "Deployment", "standard resource"),
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


def test_an_object_another_model_deployment_controls_is_a_name_conflict_with_one_event(
    resources: Resources, model: RegisteredModel, operator: subprocess.Popen[bytes]
) -> None:
    version = model.add_version()
    model.set_alias("champion", version)
    # Its model does not exist: it reads the registry in vain and builds nothing.
    other = model_deployment("other", model)
    other["spec"]["model"]["name"] = f"{model.name}-missing"
    resources.apply(other)
    uid = resources.mdep("other")["metadata"]["uid"]
    reference = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": "other", "uid": uid, "controller": True}
    resources.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "fraud-stable", "ownerReferences": [reference]},
            "spec": {"ports": [{"name": "other", "port": 1234}]},
        }
    )
    resources.apply(model_deployment("fraud", model))

    invalid = resources.wait_mdep("fraud", lambda m: (m.get("status") or {}).get("phase") == "Invalid", "Invalid")
    found = condition(invalid, "Ready")
    assert found["reason"] == "NameConflict"
    assert "Service fraud-stable" in found["message"]
    assert "ModelDeployment other" in found["message"]
    time.sleep(8)  # more than the operator's retry delay of an API error
    assert len([e for e in resources.events("fraud") if e["reason"] == "NameConflict"]) == 1
    service = resources.get("v1", "Service", "fraud-stable")
    assert service is not None
    assert [ref["uid"] for ref in service["metadata"]["ownerReferences"]] == [uid]
    assert [port["port"] for port in service["spec"]["ports"]] == [1234]
    assert operator.poll() is None


def test_the_longest_name_the_crd_accepts_is_served(
    resources: Resources, model: RegisteredModel, operator: subprocess.Popen[bytes]
) -> None:
    version = model.add_version()
    model.set_alias("champion", version)
    name = "m" * 56
    body = model_deployment(name, model)
    body["spec"]["training"] = {"image": "ghcr.io/modelpilot/train:test", "schedule": "0 3 * * 0"}
    resources.apply_with_this_crd(body)
    resources.wait_mdep(name, is_ready_with(version), "Ready with the longest name")
    assert resources.deployment(f"{name}-stable") is not None
    assert resources.names("batch/v1", "CronJob", f"modelpilot.io/deployment={name}")

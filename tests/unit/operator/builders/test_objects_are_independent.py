"""Built objects share no dicts or lists with each other or with the spec, so a caller may change one safely."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from modelpilot.operator.builders.routing import RouterPlan, build_router
from modelpilot.operator.builders.serving import build_track
from modelpilot.operator.builders.training import build_training_cronjob, build_training_job
from modelpilot.operator.spec import ModelDeploymentSpec
from tests.unit.operator.builders.examples import OWNER, gateway_raw, ingress_raw, spec_of, track_plan


def _containers(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _containers(value)
    elif isinstance(node, list):
        yield node
        for value in node:
            yield from _containers(value)


def _spec_containers(spec: ModelDeploymentSpec) -> set[int]:
    found: set[int] = set()
    for section in (spec.serving, spec.training):
        if section is not None:
            found |= {id(node) for node in _containers(section.affinity)}
            found |= {id(node) for node in _containers(section.node_selector)}
    return found


def _all_objects(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    return [
        *build_track(OWNER, spec, track_plan("stable")),
        *build_track(OWNER, spec, track_plan("canary")),
        *build_router(OWNER, spec, RouterPlan(30, True)).apply,
        build_training_job(OWNER, spec, job_name="j", trigger="initial"),
    ]


@pytest.mark.parametrize("raw", [gateway_raw, ingress_raw])
def test_no_dict_or_list_appears_twice(raw: Any) -> None:
    data = raw()
    affinity: dict[str, Any] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    data["serving"]["affinity"] = affinity
    data["training"]["affinity"] = affinity
    spec = spec_of(data)
    objects = _all_objects(spec)
    if spec.training is not None and spec.training.schedule:
        objects.append(build_training_cronjob(OWNER, spec, name="c"))
    seen: set[int] = set()
    for node in (node for obj in objects for node in _containers(obj)):
        assert id(node) not in seen, f"shared: {node!r}"
        seen.add(id(node))
    assert not seen & _spec_containers(spec)

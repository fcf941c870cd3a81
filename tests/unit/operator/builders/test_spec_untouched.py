"""The operator keeps a resource's parsed spec for as long as the spec's text is the same, and builds every
object from that one parsed spec, run after run: a builder that changed a list or a dict inside it would
change what every later run builds. Each builder, for each router and autoscaler, leaves the spec as it was."""

from __future__ import annotations

from typing import Any

import pytest

from modelpilot.operator.builders.common import Owner
from modelpilot.operator.builders.serving import PredictionLogPlan
from modelpilot.operator.builders.traffic import plan_traffic
from modelpilot.operator.builders.training import build_training_cronjob
from modelpilot.operator.builders.trainjob import build_training_run
from modelpilot.operator.spec import SecretKeyRef, parse_spec
from tests.support.crd_cases import valid_spec

pytestmark = pytest.mark.unit

OWNER = Owner("kept", "default", "0b5c3a53-6e61-4f4e-9d5b-0c1a3e7f2b11")


def _variant(router: str) -> dict[str, Any]:
    raw = valid_spec()
    raw["serving"]["nodeSelector"] = {"pool": "gpu"}
    raw["serving"]["env"] = [{"name": "A", "value": "1"}]
    if router == "ingress":
        raw["traffic"] = {"router": "ingress", "ingress": {"className": "nginx", "host": "m.example.com"}}
    elif router == "replicas":
        raw["traffic"] = {"router": "replicas"}
        del raw["rollout"]["shadow"]  # the replica router cannot mirror requests
    return raw


@pytest.mark.parametrize("router", ["gateway", "ingress", "replicas"])
@pytest.mark.parametrize("autoscaler", ["hpa", "keda"])
def test_building_every_object_leaves_the_parsed_spec_as_it_was(router: str, autoscaler: Any) -> None:
    spec = parse_spec(_variant(router))
    before = spec.model_dump(mode="json")
    log = PredictionLogPlan(secret=SecretKeyRef(name="log", key="dsn"), port=5432)
    for canary, weight, mirror in ((None, 0, False), ("2", 0, True), ("2", 25, False), ("2", 100, False)):
        for _ in range(2):
            plan_traffic(
                OWNER,
                spec,
                stable="1",
                canary=canary,
                weight=weight,
                stable_replicas=3,
                router_proxies="10.0.0.0/8",
                canary_header_value="secret",
                autoscaler=autoscaler,
                mirror=mirror and router != "replicas",
                prediction_log=log,
            )
    build_training_cronjob(OWNER, spec, name="kept-train-scheduled")
    build_training_run(OWNER, spec, job_name="kept-train-1", trigger="initial")
    assert spec.model_dump(mode="json") == before

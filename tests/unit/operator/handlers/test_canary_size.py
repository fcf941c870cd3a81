"""The canary's size follows its traffic share."""

from __future__ import annotations

import pytest

from modelpilot.operator.handlers.rollout import _canary_replicas
from modelpilot.operator.spec import parse_spec
from tests.support.crd_cases import valid_spec


@pytest.mark.parametrize(("weight", "minimum"), [(0, 1), (10, 1), (25, 1), (50, 1), (100, 2)])
def test_hpa_minimum_scales_with_weight(weight: int, minimum: int) -> None:
    spec = parse_spec(valid_spec())  # autoscaling minReplicas 2
    assert _canary_replicas(spec, weight) == (1, minimum)


@pytest.mark.parametrize(("weight", "replicas"), [(0, 1), (20, 2), (50, 5), (100, 10)])
def test_fixed_size_scales_with_weight(weight: int, replicas: int) -> None:
    raw = valid_spec()
    del raw["serving"]["autoscaling"]
    raw["serving"]["replicas"] = 10
    assert _canary_replicas(parse_spec(raw), weight) == (replicas, None)

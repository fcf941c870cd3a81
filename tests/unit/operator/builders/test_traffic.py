"""The traffic plan: replica counts, HPA bounds and router objects for a weight, in the order they apply."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from modelpilot.operator.builders.traffic import TrafficPlan, plan_traffic, split_replicas
from modelpilot.operator.spec import ModelDeploymentSpec
from tests.unit.operator.builders.examples import OWNER, gateway_raw, replicas_raw, spec_of

STEPS = [10, 25, 50, 100]


def _replicas_spec(**serving: Any) -> ModelDeploymentSpec:
    raw = replicas_raw()
    raw["model"]["candidateAlias"] = "challenger"
    raw["serving"].update(serving)
    raw["rollout"] = {"steps": STEPS, "analysis": {"prometheus": "http://prometheus:9090"}}
    return spec_of(raw)


def _objects(plan: TrafficPlan, kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in plan.apply if obj["kind"] == kind}


def _hpa_bounds(plan: TrafficPlan, name: str) -> tuple[int, int]:
    spec = _objects(plan, "HorizontalPodAutoscaler")[name]["spec"]
    return spec["minReplicas"], spec["maxReplicas"]


def _share(canary: int, stable: int) -> float:
    return 100 * canary / (canary + stable)


# -- split_replicas -------------------------------------------------------------------------------


def test_two_replicas_cannot_carry_ten_percent_and_the_split_says_how_many_would() -> None:
    split = split_replicas(2, 10, tolerance=5, max_extra=4)
    assert (split.stable, split.canary) == (5, 1)  # 17 %, the closest 6 pods come
    assert not split.within_tolerance
    assert split.needed == 7  # 1 of 7 pods is 14 %, within 5 points of 10 %
    assert (split_replicas(2, 10, tolerance=5, max_extra=5).stable, 1) == (6, 1)


@pytest.mark.parametrize("total", range(1, 25))
@pytest.mark.parametrize("weight", [1, 5, 10, 25, 33, 50, 67, 90, 99])
@pytest.mark.parametrize(("tolerance", "extra"), [(0, 0), (5, 0), (5, 4), (10, 2)])
def test_split_is_the_smallest_within_tolerance_or_the_closest_allowed(
    total: int, weight: int, tolerance: int, extra: int
) -> None:
    split = split_replicas(total, weight, tolerance, extra)
    start = max(total, 2)
    size = split.stable + split.canary
    assert split.stable >= 1
    assert split.canary >= 1
    assert start <= size <= start + extra

    def error(pods: int) -> float:
        return min(abs(_share(c, pods - c) - weight) for c in range(1, pods))

    def reaches(pods: int) -> bool:
        return any(abs(100 * c - weight * pods) <= tolerance * pods for c in range(1, pods))

    reachable = [pods for pods in range(start, start + extra + 1) if reaches(pods)]
    if reachable:
        assert split.within_tolerance
        assert size == reachable[0]
        assert abs(split.share - weight) <= tolerance
    else:
        assert not split.within_tolerance
        assert abs(split.share - weight) == pytest.approx(min(error(pods) for pods in range(start, start + extra + 1)))
        assert split.needed == next(pods for pods in range(start, start + 200) if reaches(pods))


def test_weights_outside_a_split_are_refused() -> None:
    with pytest.raises(ValueError, match="0 < weight < 100"):
        split_replicas(4, 0, 5, 4)


# -- the replica router -----------------------------------------------------------------------------


@pytest.mark.parametrize("weight", STEPS)
def test_replica_router_with_autoscaling_keeps_the_ratio_at_every_step_wherever_the_stable_hpa_runs(
    weight: int,
) -> None:
    spec = _replicas_spec(autoscaling={"minReplicas": 4, "maxReplicas": 20})
    first = plan_traffic(OWNER, spec, stable="7", canary="8", weight=weight)
    stable_min, stable_max = _hpa_bounds(first, "fraud-stable")
    service = _objects(first, "Service")["fraud"]["spec"]["selector"]
    if weight == 100:
        # All traffic on the canary's pods, which autoscale over the spec's bounds; one stable pod stays
        # warm outside the Service.
        assert (stable_min, stable_max) == (1, 1)
        assert service["modelpilot.io/track"] == "canary"
        assert _hpa_bounds(first, "fraud-canary") == (4, 20)
        assert first.effective_weight == 100
        return
    assert "modelpilot.io/track" not in service  # both tracks' pods
    # The stable HPA scales within the weight's share of the spec's bounds...
    canary_min, _ = _hpa_bounds(first, "fraud-canary")
    assert abs(_share(canary_min, stable_min) - weight) <= 5
    assert stable_min + canary_min >= 4
    # ...and wherever it runs, the canary is pinned to the pods that keep the share within tolerance.
    for running in [None, 1, *range(stable_min, stable_max + 1), stable_max + 5]:
        plan = plan_traffic(OWNER, spec, stable="7", canary="8", weight=weight, stable_replicas=running)
        assert _hpa_bounds(plan, "fraud-stable") == (stable_min, stable_max)
        pinned, same = _hpa_bounds(plan, "fraud-canary")
        assert pinned == same >= 1
        stable_pods = min(max(running or stable_min, stable_min), stable_max)
        assert abs(_share(pinned, stable_pods) - weight) <= 5, (running, pinned)
        assert plan.effective_weight == round(_share(pinned, stable_pods))
        assert plan.message is None


def test_replica_router_no_longer_gives_both_hpas_the_stable_minimum() -> None:
    spec = _replicas_spec(autoscaling={"minReplicas": 10, "maxReplicas": 10})
    plan = plan_traffic(OWNER, spec, stable="7", canary="8", weight=10, stable_replicas=10)
    assert _hpa_bounds(plan, "fraud-stable") == (9, 9)
    assert _hpa_bounds(plan, "fraud-canary") == (1, 1)
    assert plan.effective_weight == 10


def test_a_stable_hpa_too_small_for_the_weight_is_explained() -> None:
    spec = _replicas_spec(autoscaling={"minReplicas": 2, "maxReplicas": 2})
    plan = plan_traffic(OWNER, spec, stable="7", canary="8", weight=10, stable_replicas=2)
    assert plan.effective_weight == 17
    assert plan.message is not None
    assert "serving.autoscaling.minReplicas 2" in plan.message


def test_two_fixed_replicas_at_ten_percent_add_pods_and_say_what_is_left() -> None:
    plan = plan_traffic(OWNER, _replicas_spec(replicas=2), stable="7", canary="8", weight=10)
    deployments = _objects(plan, "Deployment")
    assert deployments["fraud-stable"]["spec"]["replicas"] == 5
    assert deployments["fraud-canary"]["spec"]["replicas"] == 1
    assert plan.effective_weight == 17
    assert plan.message is not None
    assert "needs 7 pods" in plan.message
    assert "allows 6" in plan.message


def test_replica_router_at_weight_zero_keeps_the_waiting_canary_out_of_the_service() -> None:
    plan = plan_traffic(OWNER, _replicas_spec(replicas=4), stable="7", canary="8", weight=0)
    assert _objects(plan, "Service")["fraud"]["spec"]["selector"]["modelpilot.io/track"] == "stable"
    assert _objects(plan, "Deployment")["fraud-canary"]["spec"]["replicas"] == 1
    # The stable track already grows to its size at the first step (10 %: 6 beside 1 canary), so the
    # canary's first share does not overshoot while stable pods start.
    assert _objects(plan, "Deployment")["fraud-stable"]["spec"]["replicas"] == 6
    assert plan.effective_weight == 0


def test_replica_router_at_weight_zero_never_shrinks_the_stable_track() -> None:
    raw = replicas_raw()
    raw["model"]["candidateAlias"] = "challenger"
    raw["serving"]["replicas"] = 4
    raw["rollout"] = {"steps": [50, 100], "analysis": {"prometheus": "http://prometheus:9090"}}
    spec = spec_of(raw)
    plan = plan_traffic(OWNER, spec, stable="7", canary="8", weight=0)
    assert _objects(plan, "Deployment")["fraud-stable"]["spec"]["replicas"] == 4  # 50 % alone would be 2


def test_replica_router_at_weight_zero_with_autoscaling_raises_the_stable_minimum_for_the_first_step() -> None:
    spec = _replicas_spec(autoscaling={"minReplicas": 4, "maxReplicas": 8})
    plan = plan_traffic(OWNER, spec, stable="7", canary="8", weight=0, stable_replicas=4)
    assert _hpa_bounds(plan, "fraud-stable") == (6, 8)


def test_replica_router_while_the_stable_track_rolls_to_the_canary_version_serves_from_the_canary() -> None:
    # The stable track's old pods still run the old version until its rolling update is done.
    plan = plan_traffic(OWNER, _replicas_spec(replicas=4), stable="8", canary="8", weight=100)
    assert _objects(plan, "Service")["fraud"]["spec"]["selector"]["modelpilot.io/track"] == "canary"
    assert _objects(plan, "Deployment")["fraud-stable"]["spec"]["replicas"] == 4
    assert plan.effective_weight == 100


# -- the weighted routers ---------------------------------------------------------------------------


@pytest.mark.parametrize("weight", STEPS)
def test_gateway_router_carries_the_weight_and_sizes_the_canary_for_its_share(weight: int) -> None:
    plan = plan_traffic(OWNER, spec_of(gateway_raw()), stable="7", canary="8", weight=weight)
    route = _objects(plan, "HTTPRoute")["fraud"]
    assert route["spec"]["rules"][0]["backendRefs"][1] == {"name": "fraud-canary", "port": 8080, "weight": weight}
    assert plan.effective_weight == weight
    assert _hpa_bounds(plan, "fraud-stable") == (2, 10)  # the stable track keeps its size
    assert _hpa_bounds(plan, "fraud-canary") == (max(1, -(-2 * weight // 100)), 10)


# -- what every plan keeps ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [gateway_raw, replicas_raw])
@pytest.mark.parametrize(("canary", "weight"), [("8", 0), ("8", 25), ("8", 100), (None, 0)])
def test_each_object_is_applied_once_canary_before_stable_before_router(
    raw: Any, canary: str | None, weight: int
) -> None:
    plan = plan_traffic(OWNER, spec_of(raw()), stable="7", canary=canary, weight=weight)
    keys = [(obj["kind"], obj["metadata"]["name"]) for obj in plan.apply]
    assert max(Counter(keys).values()) == 1
    tracks = [obj["metadata"]["labels"].get("modelpilot.io/track", "router") for obj in plan.apply]
    order = {"canary": 0, "stable": 1, "router": 2}
    assert tracks == sorted(tracks, key=order.__getitem__)
    assert not {(kind, name) for _, kind, name in plan.delete} & set(keys)


def test_without_a_canary_the_router_moves_first_and_the_canary_objects_go_last() -> None:
    plan = plan_traffic(OWNER, spec_of(gateway_raw()), stable="7", canary="8", weight=30)
    gone = plan_traffic(OWNER, spec_of(gateway_raw()), stable="7", canary=None, weight=30)
    assert gone.weight == 0
    assert gone.effective_weight == 0
    assert gone.canary is None
    assert not [obj for obj in gone.apply if obj["metadata"]["name"] == "fraud-canary"]
    canary_keys = {
        (obj["apiVersion"], obj["kind"], "fraud-canary") for obj in plan.apply if "canary" in obj["metadata"]["name"]
    }
    assert canary_keys <= set(gone.delete)
    route = _objects(gone, "HTTPRoute")["fraud"]
    assert [ref["name"] for ref in route["spec"]["rules"][0]["backendRefs"]] == ["fraud-stable"]


@pytest.mark.parametrize(("raw", "trusted"), [(gateway_raw, "10.42.0.0/16"), (replicas_raw, None)])
def test_router_proxies_are_trusted_only_behind_a_router_the_operator_runs(raw: Any, trusted: str | None) -> None:
    """A Service (replicas router) forwards the client's own address: no forwarded header to believe."""
    plan = plan_traffic(OWNER, spec_of(raw()), stable="7", canary=None, weight=0, router_proxies="10.42.0.0/16")
    for deployment in _objects(plan, "Deployment").values():
        env = {var["name"]: var["value"] for var in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env.get("MODELPILOT_TRUSTED_PROXIES") == trusted

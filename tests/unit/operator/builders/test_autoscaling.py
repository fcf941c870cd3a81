"""A track's autoscaler: the operator's CPU HPA, or with the keda backend a ScaledObject on the request rate."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from modelpilot.operator.builders.autoscaling import request_rate_query
from modelpilot.operator.builders.routing import router_weight
from modelpilot.operator.builders.serving import build_track, track_object_keys, unbuilt_track_keys
from modelpilot.operator.builders.traffic import plan_traffic
from modelpilot.operator.spec import InvalidSpecError
from tests.unit.operator.builders.examples import OWNER, gateway_raw, replicas_raw, spec_of, track_plan
from tests.unit.operator.builders.golden import assert_matches_golden

SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject")
HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")


def _request_rate_raw(**rate: Any) -> dict[str, Any]:
    raw = gateway_raw()
    autoscaling = raw["serving"]["autoscaling"]
    del autoscaling["metric"]
    autoscaling["requestRate"] = {"targetPerReplica": 50, **rate}
    return raw


def _autoscalers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in objects if (obj["apiVersion"], obj["kind"]) in {SCALED_OBJECT, HPA}]


def _keda_track(raw: dict[str, Any], track: Any = "stable", **plan: Any) -> dict[str, Any]:
    objects = build_track(OWNER, spec_of(raw), replace(track_plan(track, **plan), autoscaler="keda"))
    (autoscaler,) = _autoscalers(objects)
    return autoscaler


def test_scaled_object_of_the_stable_track_matches_golden() -> None:
    assert_matches_golden("autoscaling-keda-stable", [_keda_track(_request_rate_raw())])


def test_keda_scales_the_tracks_deployment_on_its_request_rate_and_cpu() -> None:
    scaled = _keda_track(_request_rate_raw(window="2m"), "canary", min_replicas=1)
    assert (scaled["apiVersion"], scaled["kind"]) == SCALED_OBJECT
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud-canary"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 10)
    rate, cpu = spec["triggers"]
    assert rate["type"] == "prometheus"
    assert rate["metricType"] == "AverageValue"  # the summed rate is divided by the replicas
    assert rate["metadata"]["serverAddress"] == "http://prometheus:9090"  # the rollout analysis's
    assert rate["metadata"]["threshold"] == "50"
    assert rate["metadata"]["query"] == request_rate_query("ml", "fraud-detector", "canary", "2m")
    assert cpu == {"type": "cpu", "name": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}
    # KEDA names its HPA itself (keda-hpa-…): never the operator's HPA name, which a backend switch deletes.
    assert "name" not in spec["advanced"]["horizontalPodAutoscalerConfig"]


def test_request_rate_query_counts_the_tracks_traffic_in_its_namespace_without_probes() -> None:
    query = request_rate_query("ml", 'fraud"x', "stable", "1m")
    assert query == (
        'sum(rate(modelpilot_http_requests_total{namespace="ml",model="fraud\\"x",track="stable",'
        'route!~"/healthz|/readyz|/livez|/metrics"}[1m]))'
    )


def test_request_rate_threshold_keeps_fractions() -> None:
    assert _keda_track(_request_rate_raw(targetPerReplica=0.5))["spec"]["triggers"][0]["metadata"]["threshold"] == "0.5"


def test_request_rate_reads_its_own_prometheus_when_given() -> None:
    scaled = _keda_track(_request_rate_raw(prometheus="http://prometheus.monitoring:9090"))
    assert scaled["spec"]["triggers"][0]["metadata"]["serverAddress"] == "http://prometheus.monitoring:9090"


def test_with_the_hpa_backend_a_request_rate_spec_gets_a_cpu_hpa() -> None:
    (hpa,) = _autoscalers(build_track(OWNER, spec_of(_request_rate_raw()), track_plan()))
    assert (hpa["apiVersion"], hpa["kind"]) == HPA
    assert [metric["type"] for metric in hpa["spec"]["metrics"]] == ["Resource"]


def test_with_the_keda_backend_a_spec_without_request_rate_keeps_the_operators_hpa() -> None:
    hpa = _keda_track(gateway_raw())
    assert (hpa["apiVersion"], hpa["kind"]) == HPA


def test_keda_backend_deletes_the_operators_hpa_of_a_request_rate_spec_and_the_scaled_object_otherwise() -> None:
    assert unbuilt_track_keys("fraud", spec_of(_request_rate_raw()), "stable", "keda") == [(*HPA, "fraud-stable")]
    assert unbuilt_track_keys("fraud", spec_of(gateway_raw()), "stable", "keda") == [(*SCALED_OBJECT, "fraud-stable")]
    assert unbuilt_track_keys("fraud", spec_of(replicas_raw()), "stable", "keda") == [
        (*SCALED_OBJECT, "fraud-stable"),
        (*HPA, "fraud-stable"),
    ]


def test_the_hpa_backend_never_names_keda_objects() -> None:
    # Without KEDA the operator has no RBAC for keda.sh: a request for one would be refused.
    for spec in (spec_of(_request_rate_raw()), spec_of(replicas_raw())):
        assert unbuilt_track_keys("fraud", spec, "stable") in ([], [(*HPA, "fraud-stable")])
    assert all(key[0] != SCALED_OBJECT[0] for key in track_object_keys("fraud", "canary"))
    assert track_object_keys("fraud", "canary", "keda")[:2] == [
        (*SCALED_OBJECT, "fraud-canary"),
        (*HPA, "fraud-canary"),
    ]


def test_traffic_plan_gives_both_tracks_scaled_objects_and_the_canary_its_weighted_minimum() -> None:
    plan = plan_traffic(OWNER, spec_of(_request_rate_raw()), stable="7", canary="8", weight=25, autoscaler="keda")
    scaled = {obj["metadata"]["name"]: obj["spec"] for obj in plan.apply if obj["kind"] == "ScaledObject"}
    assert scaled["fraud-stable"]["minReplicaCount"] == 2
    assert scaled["fraud-canary"]["minReplicaCount"] == 1  # ceil(2 * 25 %)
    assert not [obj for obj in plan.apply if obj["kind"] == "HorizontalPodAutoscaler"]
    assert (*HPA, "fraud-canary") in plan.delete
    assert (*HPA, "fraud-stable") in plan.delete


def test_removing_the_canary_deletes_its_scaled_object_before_its_deployment() -> None:
    plan = plan_traffic(OWNER, spec_of(_request_rate_raw()), stable="7", canary=None, weight=0, autoscaler="keda")
    scaled = plan.delete.index((*SCALED_OBJECT, "fraud-canary"))
    assert scaled < plan.delete.index(("apps/v1", "Deployment", "fraud-canary"))


def test_metric_and_request_rate_together_are_refused() -> None:
    raw = _request_rate_raw()
    raw["serving"]["autoscaling"]["metric"] = {"name": "x", "targetAverageValue": 1}
    with pytest.raises(InvalidSpecError, match=r"metric .* or requestRate"):
        spec_of(raw)


def test_request_rate_without_any_prometheus_is_refused() -> None:
    raw = _request_rate_raw()
    del raw["rollout"]
    with pytest.raises(InvalidSpecError, match="requestRate needs"):
        spec_of(raw)
    raw["serving"]["autoscaling"]["requestRate"]["prometheus"] = "http://prometheus:9090"
    assert spec_of(raw).request_rate_prometheus == "http://prometheus:9090"


def test_scale_down_stabilization_goes_to_keda_and_to_the_operators_hpa_alike() -> None:
    raw = _request_rate_raw()
    raw["serving"]["autoscaling"]["scaleDownStabilization"] = "1m30s"
    scaled = _keda_track(raw)
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == {"scaleDown": {"stabilizationWindowSeconds": 90}}
    (hpa,) = _autoscalers(build_track(OWNER, spec_of(raw), track_plan()))
    assert hpa["spec"]["behavior"] == behavior
    # Unset: five minutes, the HPA's own default.
    assert _keda_track(_request_rate_raw())["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == {
        "scaleDown": {"stabilizationWindowSeconds": 300}
    }


def test_scale_down_stabilization_longer_than_the_hpa_takes_is_refused() -> None:
    raw = _request_rate_raw()
    raw["serving"]["autoscaling"]["scaleDownStabilization"] = "61m"
    with pytest.raises(InvalidSpecError, match="scaleDownStabilization must be at most 1h"):
        spec_of(raw)


@pytest.mark.parametrize("target", [0, -1])
def test_request_rate_target_must_be_positive(target: float) -> None:
    with pytest.raises(InvalidSpecError, match="targetPerReplica"):
        spec_of(_request_rate_raw(targetPerReplica=target))


@pytest.mark.parametrize("weight", [10, 25, 50])
def test_behind_the_gateway_the_weight_holds_however_many_pods_the_stable_track_runs(weight: int) -> None:
    # KEDA scales each track on the traffic the router sends it; the route carries the weight by itself.
    spec = spec_of(_request_rate_raw())
    for running in (None, 2, 7, 10):
        plan = plan_traffic(
            OWNER, spec, stable="7", canary="8", weight=weight, stable_replicas=running, autoscaler="keda"
        )
        (route,) = [obj for obj in plan.apply if obj["kind"] == "HTTPRoute"]
        assert router_weight(route) == plan.effective_weight == weight
        bounds = {
            obj["metadata"]["name"]: (obj["spec"]["minReplicaCount"], obj["spec"]["maxReplicaCount"])
            for obj in plan.apply
            if obj["kind"] == "ScaledObject"
        }
        assert bounds["fraud-stable"] == (2, 10)  # the stable track scales over the spec's whole range
        assert bounds["fraud-canary"][1] == 10  # and so may the canary, from its weighted minimum

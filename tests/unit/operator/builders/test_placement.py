"""Where serving pods go: spread over nodes without GPUs, packed or spread with them (spec.serving.gpuPlacement)."""

from __future__ import annotations

from typing import Any

import pytest

from modelpilot.operator.builders.placement import HOSTNAME_KEY, ZONE_KEY, serving_placement
from modelpilot.operator.builders.serving import build_track
from tests.unit.operator.builders.examples import OWNER, gateway_raw, ingress_raw, spec_of, track_plan

TRACK_SELECTOR = {
    "modelpilot.io/deployment": "fraud",
    "app.kubernetes.io/component": "serving",
    "modelpilot.io/track": "canary",
}
BOTH_TRACKS = {"modelpilot.io/deployment": "fraud", "app.kubernetes.io/component": "serving"}


def _pod_spec(raw: dict[str, Any], track: Any = "canary") -> dict[str, Any]:
    deployment = next(obj for obj in build_track(OWNER, spec_of(raw), track_plan(track)) if obj["kind"] == "Deployment")
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def _spread_keys(pod_spec: dict[str, Any]) -> list[str]:
    return [constraint["topologyKey"] for constraint in pod_spec["topologySpreadConstraints"]]


def _gpu_raw(placement: str | None = None, affinity: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = gateway_raw()  # asks for nvidia.com/gpu: 1
    if placement is not None:
        raw["serving"]["gpuPlacement"] = placement
    if affinity is not None:
        raw["serving"]["affinity"] = affinity
    return raw


def test_pods_without_a_gpu_spread_over_nodes_and_get_no_affinity() -> None:
    pod_spec = _pod_spec(ingress_raw())
    assert _spread_keys(pod_spec) == [HOSTNAME_KEY]
    assert pod_spec["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"] == TRACK_SELECTOR
    assert "affinity" not in pod_spec


def test_gpu_placement_of_a_pod_without_a_gpu_changes_nothing() -> None:
    raw = ingress_raw()
    raw["serving"]["gpuPlacement"] = "Pack"
    assert _pod_spec(raw) == _pod_spec(ingress_raw())


def test_gpu_pods_pack_by_default_onto_nodes_running_this_deployments_pods_and_spread_over_zones() -> None:
    pod_spec = _pod_spec(_gpu_raw())
    assert _spread_keys(pod_spec) == [ZONE_KEY]  # no per-node spread: it would undo the packing
    assert all(c["whenUnsatisfiable"] == "ScheduleAnyway" for c in pod_spec["topologySpreadConstraints"])
    (term,) = pod_spec["affinity"]["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["weight"] == 100
    assert term["podAffinityTerm"]["topologyKey"] == HOSTNAME_KEY
    # Both tracks count: a canary pod packs next to the stable pods too.
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == BOTH_TRACKS
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in pod_spec["affinity"]["podAffinity"]


def test_gpu_pods_spread_over_nodes_and_zones_when_asked() -> None:
    pod_spec = _pod_spec(_gpu_raw("Spread"))
    assert _spread_keys(pod_spec) == [HOSTNAME_KEY, ZONE_KEY]
    assert all(c["labelSelector"]["matchLabels"] == TRACK_SELECTOR for c in pod_spec["topologySpreadConstraints"])
    assert all(c["maxSkew"] == 1 for c in pod_spec["topologySpreadConstraints"])
    assert "affinity" not in pod_spec


def test_packing_keeps_the_specs_own_affinity_and_adds_its_term_last() -> None:
    node_affinity = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100"]}]}]
        }
    }
    theirs = {"weight": 5, "podAffinityTerm": {"topologyKey": ZONE_KEY, "labelSelector": {"matchLabels": {"a": "b"}}}}
    affinity = {
        "nodeAffinity": node_affinity,
        "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [theirs]},
    }
    raw = _gpu_raw(affinity=affinity)
    spec = spec_of(raw)
    placed = serving_placement("fraud", spec, "stable").affinity
    assert placed is not None
    assert placed["nodeAffinity"] == node_affinity
    preferred = placed["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred[0] == theirs
    assert preferred[1]["weight"] == 100
    # The spec's own dicts are untouched: building twice gives the same result.
    assert spec.serving.affinity == affinity
    assert serving_placement("fraud", spec, "stable").affinity == placed


def test_an_unknown_gpu_placement_is_refused() -> None:
    with pytest.raises(ValueError, match="gpuPlacement"):
        spec_of(_gpu_raw("BinPack"))

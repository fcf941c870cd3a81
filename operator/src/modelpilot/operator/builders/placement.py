"""Where a track's serving pods go: spread over nodes, or, with GPUs, packed per spec.serving.gpuPlacement.

The default scheduler scores nodes by free CPU and memory (LeastAllocated), which spreads pods; for GPU
pods that leaves one GPU busy on every node, so no node stays whole for a multi-GPU training Job and the
cluster autoscaler can remove none. Pack turns that round with a preferred pod affinity to the nodes that
already run this ModelDeployment's serving pods (either track), whose score outweighs the resource score;
a zone spread keeps replicas in every zone the pods may use. Spread asks for an even count per node and per
zone. All of it is `ScheduleAnyway` / preferred: placement never keeps a pod from running.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from modelpilot.operator.builders.common import Track, requests_gpu, selector
from modelpilot.operator.spec import ModelDeploymentSpec

HOSTNAME_KEY = "kubernetes.io/hostname"
ZONE_KEY = "topology.kubernetes.io/zone"
# The highest weight a preferred term takes: packing wins over the resource score whenever it can.
PACK_AFFINITY_WEIGHT = 100


def _spread(topology_key: str, match: dict[str, str]) -> dict[str, Any]:
    return {
        "maxSkew": 1,
        "topologyKey": topology_key,
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": match},
    }


def _pack_affinity(owner_name: str) -> dict[str, Any]:
    return {
        "weight": PACK_AFFINITY_WEIGHT,
        "podAffinityTerm": {
            "topologyKey": HOSTNAME_KEY,
            "labelSelector": {"matchLabels": selector(owner_name, None)},
        },
    }


def _with_pack_affinity(affinity: dict[str, Any] | None, owner_name: str) -> dict[str, Any]:
    """The spec's affinity (copied) with the packing term added to its preferred pod affinities."""
    result = copy.deepcopy(affinity) if affinity else {}
    pod_affinity = result.get("podAffinity") or {}
    preferred = pod_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
    pod_affinity["preferredDuringSchedulingIgnoredDuringExecution"] = [*preferred, _pack_affinity(owner_name)]
    result["podAffinity"] = pod_affinity
    return result


@dataclass(frozen=True)
class Placement:
    """The pod-spec fields that place a track's pods."""

    topology_spread_constraints: list[dict[str, Any]]
    affinity: dict[str, Any] | None  # the spec's own, plus the packing term when packing


def serving_placement(owner_name: str, spec: ModelDeploymentSpec, track: Track) -> Placement:
    """Topology spread constraints and affinity of a track's serving pods."""
    serving = spec.serving
    own_track = selector(owner_name, track)
    if not requests_gpu(serving.resources):
        return Placement([_spread(HOSTNAME_KEY, own_track)], serving.affinity)
    if serving.gpu_placement == "Spread":
        return Placement([_spread(HOSTNAME_KEY, own_track), _spread(ZONE_KEY, own_track)], serving.affinity)
    return Placement([_spread(ZONE_KEY, own_track)], _with_pack_affinity(serving.affinity, owner_name))

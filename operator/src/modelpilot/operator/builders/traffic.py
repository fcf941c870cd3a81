"""The traffic plan: every object to apply and delete so that a weight reaches the canary.

`plan_traffic(owner, spec, stable=…, canary=…, weight=…)` is the one place where a weight becomes
replica counts, HPA bounds and router objects; the operator applies the plan it returns, in order, then
deletes what it lists. Per router:

- gateway / ingress: the router carries the weight exactly. The stable track keeps its full size; the
  canary gets its share of it (at least one pod, so it can become Ready before it gets traffic), and
  with autoscaling its HPA minimum is that share of `minReplicas`.
- replicas: one Service over both tracks, so each Ready pod gets an equal share and a weight is a
  ratio of pods (`split_replicas`). The two tracks' sizes are split by the weight; pods are added (up
  to `traffic.replicas.maxExtraReplicas`) until the canary's share is within
  `traffic.replicas.tolerance` of the weight, and the plan says why when it is not. With autoscaling
  the stable HPA's bounds are the weight's share of the spec's, and the canary is pinned (HPA minimum =
  maximum) to the pods that keep the ratio next to what the stable HPA runs now.
  At weight 0 the Service selects only the stable pods (a canary that waits to become Ready gets
  nothing); at 100 only the canary's.

Behind a gateway or ingress router the serving pods are told `router_proxies` (the CIDRs of the proxies'
pods, from the operator's settings) as the proxies whose X-Forwarded-For they believe. The replicas
router is a Service: clients reach the pods directly, so the pods believe no forwarded header.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from modelpilot.operator.builders.autoscaling import Autoscaler
from modelpilot.operator.builders.common import ObjectKey, Owner, Track
from modelpilot.operator.builders.routing import RouterPlan, build_router
from modelpilot.operator.builders.serving import (
    PredictionLogPlan,
    TrackPlan,
    build_track,
    track_object_keys,
    unbuilt_track_keys,
)
from modelpilot.operator.spec import ModelDeploymentSpec

FULL = 100


@dataclass(frozen=True)
class ReplicaSplit:
    """Pods of each track that carry a weight by their ratio, and how close that ratio is."""

    stable: int
    canary: int
    weight: int  # the weight asked for
    within_tolerance: bool = True
    needed: int = 0  # pods in all that would reach the tolerance, when this split does not

    @property
    def share(self) -> float:
        """The canary's share of the pods, in percent."""
        total = self.stable + self.canary
        return FULL * self.canary / total if total else 0.0


def split_replicas(total: int, weight: int, tolerance: int, max_extra: int) -> ReplicaSplit:
    """(stable, canary) pods whose ratio is within `tolerance` points of `weight` (0 < weight < 100).

    Each track keeps at least one pod. The smallest size from `total` up to `total + max_extra` that
    reaches the tolerance wins; when none does, the closest split in that range (the smallest on a tie),
    with `needed` set to the size that would.
    """
    if not 0 < weight < FULL:
        raise ValueError(f"a replica split needs 0 < weight < 100, not {weight}")
    start = max(total, 2)
    best: ReplicaSplit | None = None
    best_error = math.inf
    for size in range(start, start + max_extra + 1):
        canary = _closest_canary(size, weight)
        if _within(size, canary, weight, tolerance):
            return ReplicaSplit(size - canary, canary, weight)
        error = abs(FULL * canary - weight * size) / size
        if error < best_error:
            best, best_error = ReplicaSplit(size - canary, canary, weight), error
    assert best is not None  # the range is never empty
    # Within 100 sizes there is a multiple of 100, where the ratio is exact: the search ends.
    needed = next(
        size
        for size in range(start + max_extra + 1, start + max_extra + FULL + 1)
        if _within(size, _closest_canary(size, weight), weight, tolerance)
    )
    return ReplicaSplit(best.stable, best.canary, weight, within_tolerance=False, needed=needed)


def _closest_canary(size: int, weight: int) -> int:
    canary = (size * weight + FULL // 2) // FULL  # half rounds up
    return min(max(canary, 1), size - 1)


def _within(size: int, canary: int, weight: int, tolerance: int) -> bool:
    # |100 c / size - weight| <= tolerance, in integers.
    return abs(FULL * canary - weight * size) <= tolerance * size


@dataclass(frozen=True)
class TrackSize:
    """Pods of one track: a fixed count, or the HPA's bounds under autoscaling."""

    replicas: int
    min_replicas: int | None = None
    max_replicas: int | None = None


@dataclass(frozen=True)
class TrafficPlan:
    """Objects to apply (in order), then objects to delete (in order), for one weight."""

    apply: list[dict[str, Any]]
    delete: list[ObjectKey]
    weight: int  # the canary weight asked for (0 without a canary)
    effective_weight: int  # percent of traffic the router or the pod ratio gives the canary
    stable: TrackSize
    canary: TrackSize | None
    message: str | None = None  # why effective_weight is further from weight than the tolerance
    shared_tracks: tuple[Track, ...] = field(default=("stable",))  # replica router: pods its Service selects


def plan_traffic(
    owner: Owner,
    spec: ModelDeploymentSpec,
    *,
    stable: str,
    canary: str | None,
    weight: int,
    stable_replicas: int | None = None,
    router_proxies: str = "",
    canary_header_value: str | None = None,
    autoscaler: Autoscaler = "hpa",
    mirror: bool = False,
    prediction_log: PredictionLogPlan | None = None,
) -> TrafficPlan:
    """Everything that makes `weight` percent reach the canary at version `canary` (None: no canary)
    while the stable track serves version `stable`. `stable_replicas` is what the stable Deployment runs
    now (its HPA's choice): with the replica router and autoscaling, the canary's size follows it.
    `router_proxies`: CIDRs of the gateway's or ingress controller's pods (unused by the replicas router).
    `canary_header_value`: the value of spec.traffic.header read from its Secret; None: no header rule.
    `autoscaler`: the operator's autoscaler backend (`builders.autoscaling`).
    `mirror`: the router also sends the canary a copy of every request (the shadow phase; gateway and ingress).
    `prediction_log`: where the serving pods find the prediction log (the operator's setting); None: none."""
    weight = min(max(weight, 0), FULL) if canary is not None else 0
    proxies = router_proxies if spec.traffic.router != "replicas" else ""
    if spec.traffic.router == "replicas":
        sizes = _replica_router_sizes(
            spec, weight, canary is not None, same_version=canary == stable, stable_replicas=stable_replicas
        )
    else:
        sizes = _weighted_router_sizes(spec, weight, canary is not None)
    apply: list[dict[str, Any]] = []
    delete: list[ObjectKey] = []
    if canary is not None and sizes.canary is not None:
        canary_plan = _track_plan(spec, "canary", canary, sizes.canary, proxies, autoscaler, prediction_log)
        apply += build_track(owner, spec, canary_plan)
        delete += unbuilt_track_keys(owner.name, spec, "canary", autoscaler)
    stable_plan = _track_plan(spec, "stable", stable, sizes.stable, proxies, autoscaler, prediction_log)
    apply += build_track(owner, spec, stable_plan)
    delete += unbuilt_track_keys(owner.name, spec, "stable", autoscaler)
    router = build_router(
        owner,
        spec,
        RouterPlan(
            canary_weight=weight,
            canary_present=canary is not None,
            canary_header_value=canary_header_value,
            shared_tracks=sizes.shared_tracks,
            mirror=mirror,
        ),
    )
    apply += router.apply
    if canary is None:
        # Out of the router first (applied above), then the canary's objects go.
        delete += router.delete + track_object_keys(owner.name, "canary", autoscaler)
    else:
        delete += router.delete
    return TrafficPlan(
        apply=apply,
        delete=delete,
        weight=weight,
        effective_weight=sizes.effective_weight,
        stable=sizes.stable,
        canary=sizes.canary if canary is not None else None,
        message=sizes.message,
        shared_tracks=sizes.shared_tracks,
    )


@dataclass(frozen=True)
class _Sizes:
    stable: TrackSize
    canary: TrackSize | None
    effective_weight: int
    shared_tracks: tuple[Track, ...] = ("stable",)
    message: str | None = None


def _track_plan(
    spec: ModelDeploymentSpec,
    track: Track,
    version: str,
    size: TrackSize,
    proxies: str,
    autoscaler: Autoscaler,
    prediction_log: PredictionLogPlan | None,
) -> TrackPlan:
    return TrackPlan(
        track=track,
        version=version,
        model_uri=f"models:/{spec.model.name}/{version}",
        replicas=size.replicas,
        min_replicas=size.min_replicas,
        max_replicas=size.max_replicas,
        trusted_proxies=proxies,
        autoscaler=autoscaler,
        prediction_log=prediction_log,
    )


def _full_size(spec: ModelDeploymentSpec) -> TrackSize:
    autoscaling = spec.serving.autoscaling
    if autoscaling is None:
        return TrackSize(spec.serving.replicas)
    return TrackSize(spec.serving.replicas, autoscaling.min_replicas, autoscaling.max_replicas)


def _weighted_router_sizes(spec: ModelDeploymentSpec, weight: int, canary_present: bool) -> _Sizes:
    """The router carries the weight; the canary is sized for its share (one pod at least)."""
    stable = _full_size(spec)
    if not canary_present:
        return _Sizes(stable, None, 0)
    share = max(weight, 1) / FULL
    canary = TrackSize(max(1, math.ceil(spec.serving.replicas * share)))
    autoscaling = spec.serving.autoscaling
    if autoscaling is not None:
        canary = TrackSize(canary.replicas, max(1, math.ceil(autoscaling.min_replicas * share)), None)
    return _Sizes(stable, canary, weight)


def _replica_router_sizes(
    spec: ModelDeploymentSpec, weight: int, canary_present: bool, *, same_version: bool, stable_replicas: int | None
) -> _Sizes:
    stable = _full_size(spec)
    autoscaling = spec.serving.autoscaling
    if not canary_present:
        return _Sizes(stable, None, 0)
    one = TrackSize(1, 1, 1) if autoscaling is not None else TrackSize(1)
    if weight == 0:
        # The canary waits to become Ready (or to go) on one pod the Service does not select, while the
        # stable track grows to its size at the first step: the canary's first share never overshoots.
        return _Sizes(_stable_at_first_step(spec, stable), one, 0, ("stable",))
    if weight == FULL:
        # All traffic on the canary's pods. Before the promotion one stable pod stays warm, out of the
        # Service, for a rollback; once the stable track rolls to the canary's version (promotion) it gets
        # its full size, and still no traffic until the canary goes: its old pods serve the old version
        # until the rolling update is done.
        return _Sizes(stable if same_version else one, _full_size(spec), FULL, ("canary",))
    settings = spec.traffic.replicas
    if autoscaling is None:
        split = split_replicas(spec.serving.replicas, weight, settings.tolerance, settings.max_extra_replicas)
        sizes = (TrackSize(split.stable), TrackSize(split.canary))
        pods = (split.stable, split.canary)
        base, bound = spec.serving.replicas, "serving.replicas"
    else:
        low = split_replicas(autoscaling.min_replicas, weight, settings.tolerance, settings.max_extra_replicas)
        high = split_replicas(autoscaling.max_replicas, weight, settings.tolerance, settings.max_extra_replicas)
        # The stable track's HPA scales within the weight's share of the spec's bounds and sets the pace;
        # the canary is pinned to the pods that keep the ratio to what the stable HPA runs now, so the
        # split holds as load moves (the operator re-plans every step and while the pods converge).
        low_stable, high_stable = low.stable, max(high.stable, low.stable)
        current = min(max(stable_replicas or low_stable, low_stable), high_stable)
        canary_pods = _canary_beside(current, weight) if current != low_stable else low.canary
        sizes = (TrackSize(current, low_stable, high_stable), TrackSize(canary_pods, canary_pods, canary_pods))
        pods = (current, canary_pods)
        split = low
        base, bound = autoscaling.min_replicas, "serving.autoscaling.minReplicas"
    share = FULL * pods[1] / (pods[0] + pods[1])
    message = None
    if abs(share - weight) > settings.tolerance:
        message = f"{pods[1]} of {pods[0] + pods[1]} pods give the canary {share:.0f}% for the asked {weight}%: "
        if split.needed:
            message += (
                f"within traffic.replicas.tolerance ({settings.tolerance} points) needs {split.needed} pods, "
                f"and {bound} {base} + traffic.replicas.maxExtraReplicas {settings.max_extra_replicas} allows "
                f"{max(base, 2) + settings.max_extra_replicas}"
            )
        else:
            message += f"the stable track's HPA runs {pods[0]} pods"
    return _Sizes(sizes[0], sizes[1], round(share), ("stable", "canary"), message)


def _stable_at_first_step(spec: ModelDeploymentSpec, full: TrackSize) -> TrackSize:
    """The stable track's size while the canary waits: its full size, grown to its size at the first
    step when that split needs more stable pods (e.g. 4 replicas, 10 % ⇒ 6 stable beside 1 canary)."""
    if spec.rollout is None or spec.rollout.steps[0] >= FULL:
        return full
    first = spec.rollout.steps[0]
    settings = spec.traffic.replicas
    autoscaling = spec.serving.autoscaling
    base = spec.serving.replicas if autoscaling is None else autoscaling.min_replicas
    grown = split_replicas(base, first, settings.tolerance, settings.max_extra_replicas).stable
    if autoscaling is None:
        return TrackSize(max(full.replicas, grown))
    low = max(autoscaling.min_replicas, grown)
    return TrackSize(max(full.replicas, low), low, max(autoscaling.max_replicas, low))


def _canary_beside(stable: int, weight: int) -> int:
    """Canary pods whose share next to `stable` stable pods is closest to `weight` (one at least)."""
    rest = FULL - weight
    return max(1, (stable * weight + rest // 2) // rest)

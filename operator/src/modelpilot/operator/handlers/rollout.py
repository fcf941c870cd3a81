"""Executes the rollout state machine's decisions: observe → decide → record intent → act.

The machine (`rollout.machine.decide`) is pure; this module gathers its observations from the
cluster, the registry and Prometheus, writes the decided `status.canary` before acting (so a
registry write is only made when its intent is already recorded), and performs the actions in
order, stopping at the first failure (the next run repeats what is still needed).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from modelpilot.operator import metrics
from modelpilot.operator.analysis import AnalysisTarget, analyse
from modelpilot.operator.builders.routing import canary_ingress_name, router_weight
from modelpilot.operator.builders.serving import replica_split
from modelpilot.operator.registry import Registry, ResolvedVersions
from modelpilot.operator.rollout.actions import (
    ABORT_ANNOTATION,
    Action,
    Emit,
    EnsureCanary,
    Observation,
    PromoteInRegistry,
    RejectInRegistry,
    RemoveCanary,
    RollStable,
    RunAnalysis,
    SetWeight,
)
from modelpilot.operator.rollout.machine import decide
from modelpilot.operator.spec import ModelDeploymentSpec
from modelpilot.operator.status import AnalysisResult, append_history, now_iso

if TYPE_CHECKING:
    from modelpilot.operator.handlers.reconcile import Reconciliation

# Decisions that ask to be called again at once are followed within the same run, up to this many.
MAX_DECISIONS_PER_RUN = 8
IDLE_REQUEUE_SECONDS = 2.0


async def drive_rollout(
    rec: Reconciliation, spec: ModelDeploymentSpec, resolved: ResolvedVersions, registry: Registry
) -> float:
    """Advance the rollout as far as it can go now; seconds until it should be looked at again."""
    analysis: AnalysisResult | None = None
    requeue: float | None = None
    for _ in range(MAX_DECISIONS_PER_RUN):
        observation = await _observe(rec, spec, resolved, analysis)
        decision = decide(spec, rec.status.canary, observation)
        rec.status.canary = decision.canary
        for entry in decision.history():
            rec.status.history = append_history(rec.status.history, entry)
        await rec.write_status()  # the intent is recorded before anything is done about it
        analysis = None
        for action in decision.actions:
            result = await _execute(rec, spec, registry, action)
            if result is not None:
                analysis = result
        for outcome in decision.outcomes():
            metrics.ROLLOUTS.labels(outcome=outcome).inc()
        if decision.duration_seconds is not None:
            metrics.ROLLOUT_DURATION.observe(decision.duration_seconds)
        metrics.CANARY_WEIGHT.labels(namespace=rec.owner.namespace, name=rec.owner.name).set(decision.canary.weight)
        requeue = decision.requeue_after
        if requeue != 0:
            break
        resolved = await registry.resolve(spec.model)
    await _record_serving(rec, spec, resolved)
    return IDLE_REQUEUE_SECONDS if requeue is None or requeue == 0 else requeue


async def _observe(
    rec: Reconciliation,
    spec: ModelDeploymentSpec,
    resolved: ResolvedVersions,
    analysis: AnalysisResult | None,
) -> Observation:
    canary = rec.status.canary
    rollout_version = canary.version if canary and canary.version else resolved.candidate
    deployed = await rec.kube.get("apps/v1", "Deployment", rec.owner.namespace, f"{rec.owner.name}-canary")
    deployed_version = None
    if deployed is not None:
        deployed_version = deployed["spec"]["template"]["metadata"].get("labels", {}).get("modelpilot.io/version")
    stable_ready = False
    if resolved.stable is not None:
        stable_ready = (await rec.observe("stable", resolved.stable)).ready
    canary_ready = False
    if deployed_version is not None and rollout_version is not None:
        canary_ready = (await rec.observe("canary", rollout_version)).ready
    return Observation(
        router_weight=await _router_weight(rec, spec),
        now=datetime.now(UTC),
        stable_version=resolved.stable,
        candidate_version=resolved.candidate,
        stable_ready=stable_ready,
        canary_version_deployed=deployed_version,
        canary_ready=canary_ready,
        abort_requested=ABORT_ANNOTATION in rec.annotations,
        analysis=analysis,
    )


async def _router_weight(rec: Reconciliation, spec: ModelDeploymentSpec) -> int | None:
    """The canary weight the router carries now; None for the replica router."""
    if spec.traffic.router == "gateway":
        route = await rec.kube.get("gateway.networking.k8s.io/v1", "HTTPRoute", rec.owner.namespace, rec.owner.name)
    elif spec.traffic.router == "ingress":
        route = await rec.kube.get(
            "networking.k8s.io/v1", "Ingress", rec.owner.namespace, canary_ingress_name(rec.owner.name)
        )
    else:
        return None
    return 0 if route is None else router_weight(route)


async def _execute(
    rec: Reconciliation, spec: ModelDeploymentSpec, registry: Registry, action: Action
) -> AnalysisResult | None:
    match action:
        case Emit(type=kind, reason=reason, message=message):
            rec.emit(kind, reason, message)
        case EnsureCanary(version=version, weight=weight):
            await _apply_canary(rec, spec, version, weight)
            await _apply_weight(rec, spec, weight, version)
        case SetWeight(weight=weight):
            canary = rec.status.canary
            await _apply_weight(rec, spec, weight, canary.version if canary else None)
        case RemoveCanary():
            await _apply_weight(rec, spec, 0, None)
            await rec.remove_canary()
        case RollStable(version=version):
            await rec.apply_stable(spec, version)
        case RunAnalysis(version=version, step=step, weight=weight):
            assert spec.rollout is not None
            target = AnalysisTarget(
                model=spec.model.name, version=version, namespace=rec.owner.namespace, step=step, weight=weight
            )
            return await analyse(spec.rollout.analysis, target)
        case PromoteInRegistry(candidate=candidate, previous=previous):
            await promote(registry, spec, candidate, previous)
        case RejectInRegistry():
            await reject(registry, spec, action)
    return None


def _canary_replicas(spec: ModelDeploymentSpec, weight: int) -> tuple[int, int | None]:
    """(replicas, HPA minimum) of the canary: its share of the stable track's size, at least one."""
    share = max(weight, 1) / 100
    autoscaling = spec.serving.autoscaling
    if spec.traffic.router == "replicas":
        return replica_split(spec.serving.replicas, weight)[1] or 1, None
    if autoscaling is not None:
        return 1, max(1, math.ceil(autoscaling.min_replicas * share))
    return max(1, math.ceil(spec.serving.replicas * share)), None


async def _apply_canary(rec: Reconciliation, spec: ModelDeploymentSpec, version: str, weight: int) -> None:
    replicas, min_replicas = _canary_replicas(spec, weight)
    await rec.apply_track(spec, rec.track_plan(spec, "canary", version, replicas, min_replicas))


async def _apply_weight(
    rec: Reconciliation, spec: ModelDeploymentSpec, weight: int, canary_version: str | None
) -> None:
    """Route `weight`% to the canary: router weights, or (router replicas) the replica ratio of both tracks;
    the canary's replicas (or HPA minimum) scale with the weight."""
    if spec.traffic.router == "replicas":
        stable = rec.status.stable.version if rec.status.stable else None
        if stable is not None:
            await rec.apply_stable(spec, stable, weight)
    if canary_version is not None and weight > 0:
        # The canary's size (or its HPA minimum) follows its share of the traffic.
        await _apply_canary(rec, spec, canary_version, weight)
    await rec.apply_router(spec, canary_weight=weight, canary_present=canary_version is not None)


async def promote(registry: Registry, spec: ModelDeploymentSpec, candidate: str, previous: str | None) -> None:
    """Tag both versions, then move the stable pointer (the commit), then drop the candidate pointer."""
    model = spec.model
    stamp = now_iso()
    await registry.set_version_tag(model.name, candidate, "modelpilot.io/promoted", stamp)
    if previous is not None:
        await registry.set_version_tag(model.name, previous, "modelpilot.io/superseded", f"{stamp} by {candidate}")
    if model.alias is not None:
        await registry.set_alias(model.name, model.alias, candidate)
        if model.candidate_alias is not None and await _alias_names(registry, spec, candidate):
            await registry.delete_alias(model.name, model.candidate_alias)
    elif model.stage is not None:
        await registry.transition_stage(model.name, candidate, model.stage, archive_existing=True)


async def reject(registry: Registry, spec: ModelDeploymentSpec, action: RejectInRegistry) -> None:
    """Tag the version rejected with the reason, then stop it being the candidate; stable is untouched."""
    model = spec.model
    value = "" if action.value is None else f"{action.value:.6g}"
    await registry.set_version_tag(model.name, action.version, "modelpilot.io/rejected", action.reason)
    await registry.set_version_tag(model.name, action.version, "modelpilot.io/rejected-metric", action.metric)
    await registry.set_version_tag(model.name, action.version, "modelpilot.io/rejected-value", value)
    await registry.set_version_tag(model.name, action.version, "modelpilot.io/rejected-at", now_iso())
    if model.candidate_alias is not None:
        if await _alias_names(registry, spec, action.version):
            await registry.delete_alias(model.name, model.candidate_alias)
    elif model.candidate_stage is not None:
        await registry.transition_stage(model.name, action.version, "Archived", archive_existing=False)


async def _alias_names(registry: Registry, spec: ModelDeploymentSpec, version: str) -> bool:
    resolved = await registry.resolve(spec.model)
    return resolved.candidate == version


async def _record_serving(rec: Reconciliation, spec: ModelDeploymentSpec, resolved: ResolvedVersions) -> None:
    """status.stable, the canary's readiness, phase and conditions after the run's decisions."""
    canary = rec.status.canary
    if resolved.stable is not None:
        stable = await rec.observe("stable", resolved.stable)
        rec.record_stable(resolved.stable, stable)
        rec.set_serving_conditions(resolved.stable, stable)
    if canary is None:
        return
    if canary.version:
        observed = await rec.observe("canary", canary.version)
        canary.ready_replicas, canary.replicas = observed.ready_with_version, observed.desired
    open_states = {
        "Progressing": "Progressing",
        "Paused": "Paused",
        "Promoting": "Promoting",
        "RollingBack": "RollingBack",
    }
    if canary.state in open_states:
        rec.status.phase = open_states[canary.state]
        rec.condition("Progressing", True, f"Rollout{canary.state}", canary.reason or f"canary at {canary.weight}%")
    if canary.state == "Paused":
        rec.condition("Degraded", True, "RolloutPaused", canary.reason or "analysis inconclusive")
    elif canary.state in ("RollingBack", "RolledBack"):
        rec.condition("Degraded", canary.state == "RollingBack", "RolledBack", canary.reason or "")

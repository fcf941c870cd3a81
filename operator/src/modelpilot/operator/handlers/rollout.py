"""Executes the rollout state machine's decisions: observe → decide → record intent → act.

The machine (`rollout.machine.decide`) is pure; this module gathers its observations from the
cluster, the registry and Prometheus, writes the decided `status.canary` before acting (so a
registry write is only made when its intent is already recorded), and performs the actions in
order, stopping at the first failure (the next run repeats what is still needed).

The traffic actions of one decision (EnsureCanary, SetWeight, RemoveCanary, RollStable) describe one
state: which version each track serves and the canary's weight. They are folded into that state and
applied as one `builders.traffic.plan_traffic` plan, before the first action that depends on them
(an analysis or a registry write) and at the end, so each object is applied at most once per step.
The executor needs a few reads and one write of the cluster (`Cluster`), the registry, a Prometheus
analysis and the journal of the status: nothing else of the reconciliation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from modelpilot.operator import metrics
from modelpilot.operator.analysis import AnalysisTarget, count_shadow_comparisons
from modelpilot.operator.builders.autoscaling import Autoscaler
from modelpilot.operator.builders.common import Owner, Track
from modelpilot.operator.builders.serving import PredictionLogPlan
from modelpilot.operator.builders.traffic import TrafficPlan, plan_traffic
from modelpilot.operator.handlers.journal import Journal
from modelpilot.operator.handlers.registry_outcome import promote, reject
from modelpilot.operator.observe import TrackObservation
from modelpilot.operator.registry import Registry, ResolvedVersions
from modelpilot.operator.rollout.actions import (
    Decision,
    Emit,
    EnsureCanary,
    Observation,
    PromoteInRegistry,
    RejectInRegistry,
    RemoveCanary,
    RollStable,
    RunAnalysis,
    RunShadowCheck,
    SetWeight,
    ShadowCount,
)
from modelpilot.operator.rollout.clock import parse_stamp
from modelpilot.operator.rollout.machine import TRAFFIC_STATES, decide, is_active
from modelpilot.operator.rollout.queries import QueryTarget
from modelpilot.operator.rollout.requests import ROLLOUT_ACTIONS, Request
from modelpilot.operator.rollout.shadow import in_shadow_phase
from modelpilot.operator.spec import Analysis, ModelDeploymentSpec
from modelpilot.operator.status import AnalysisResult, CanaryStatus, append_history

# Decisions that ask to be called again at once are followed within the same run, up to this many.
MAX_DECISIONS_PER_RUN = 8
IDLE_REQUEUE_SECONDS = 2.0
# While the pods behind the replica router have not reached the planned ratio, status is refreshed this often.
CONVERGE_REQUEUE_SECONDS = 2.0
# A run for a hold that ends starts this early, observes, and waits for the end in-run: the analysis
# starts when the hold ends, not a round of API and registry reads later.
LEAD_SECONDS = 1.0

Analyse = Callable[[Analysis, AnalysisTarget], Awaitable[AnalysisResult]]
CountShadow = Callable[[str, QueryTarget, datetime], Awaitable[ShadowCount]]
OPEN_STATES = {"Progressing": "Progressing", "Paused": "Paused", "Promoting": "Promoting", "RollingBack": "RollingBack"}


class Cluster(Protocol):
    """What the executor needs of the cluster (`owned.OwnedObjects` in the operator)."""

    async def apply_plan(self, plan: TrafficPlan) -> None: ...

    async def observe(self, track: Track, version: str) -> TrackObservation: ...

    async def deployed_version(self, track: Track) -> str | None: ...

    async def deployed_replicas(self, track: Track) -> int | None: ...

    async def router_weight(self) -> int | None: ...

    async def mirror_refusal(self) -> str | None: ...


@dataclass
class _Traffic:
    """The traffic state the actions of one decision ask for, folded."""

    stable: str
    canary: str | None
    weight: int
    pending: bool = False
    mirror: bool = False


@dataclass
class RolloutExecutor:
    """Drives one resource's rollout for one reconciliation."""

    spec: ModelDeploymentSpec
    owner: Owner
    registry: Registry
    cluster: Cluster
    journal: Journal
    analyse: Analyse
    abort_requested: bool = False
    router_proxies: str = ""  # the operator's setting, for the serving pods behind a gateway or ingress
    canary_header_value: str | None = None  # spec.traffic.header's value from its Secret; None: no header rule
    autoscaler: Autoscaler = "hpa"  # the operator's autoscaler backend
    prediction_log: PredictionLogPlan | None = None  # the operator's setting, for the serving pods
    request: Request | None = None  # a person's request not answered yet (kubectl modelpilot promote, …)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    count_shadow: CountShadow = count_shadow_comparisons  # the shadow phase's comparisons in Prometheus
    mirror_checked: tuple[str | None] | None = None  # the router's mirror refusal, once asked in this run
    applied: TrafficPlan | None = None  # the last plan applied in this run
    resolved: ResolvedVersions = field(default_factory=lambda: ResolvedVersions(None, None))

    async def drive(self, resolved: ResolvedVersions) -> float:
        """Advance the rollout as far as it can go now; seconds until it should be looked at again."""
        self.resolved = resolved
        analysis: AnalysisResult | None = None
        shadow: ShadowCount | None = None
        decision: Decision | None = None
        waited = False
        for _ in range(MAX_DECISIONS_PER_RUN):
            observation = await self._observe(resolved, analysis, shadow)
            decision = decide(self.spec, self.journal.status.canary, observation)
            self._record_decision(decision)
            await self.journal.write()  # the intent is recorded before anything is done about it
            analysis, shadow, wrote_registry = await self._execute(decision)
            self._count(decision)
            if wrote_registry:
                # The write is confirmed by reading the registry again, at once.
                resolved = self.resolved = await self.registry.resolve(self.spec.model)
                continue
            if decision.requeue_after == 0:
                continue
            left = None if decision.due is None else (decision.due - self.clock()).total_seconds()
            if left is not None and left <= LEAD_SECONDS and not waited:
                # This run started early for a hold that ends now: its reads are done, decide at the end.
                await asyncio.sleep(max(left, 0.0))
                waited = True
                continue
            break
        converging = await self._record_serving(resolved)
        return self._next_run(decision, converging)

    def _next_run(self, decision: Decision | None, converging: bool) -> float:
        if decision is None or not decision.requeue_after:
            wait = IDLE_REQUEUE_SECONDS
        elif decision.due is not None:
            # Start early enough to have observed everything when the hold ends.
            wait = max((decision.due - self.clock()).total_seconds() - LEAD_SECONDS, 0.0)
        else:
            # The machine's delay counts from its decision, not from the end of this run.
            decided = parse_stamp(decision.time) or self.clock()
            wait = max(decision.requeue_after - (self.clock() - decided).total_seconds(), 0.0)
        return min(wait, CONVERGE_REQUEUE_SECONDS) if converging else wait

    # -- observe --------------------------------------------------------------------------------

    async def _observe(
        self, resolved: ResolvedVersions, analysis: AnalysisResult | None, shadow: ShadowCount | None = None
    ) -> Observation:
        canary = self.journal.status.canary
        rollout_version = canary.version if canary and canary.version else resolved.candidate

        async def stable_observed() -> bool:
            return resolved.stable is not None and (await self.cluster.observe("stable", resolved.stable)).ready

        # Independent reads go out together.
        deployed, stable_ready, router_weight = await asyncio.gather(
            self.cluster.deployed_version("canary"), stable_observed(), self.cluster.router_weight()
        )
        # Only a rollout in (or before) its shadow phase asks whether the router can mirror.
        rollout = self.spec.rollout
        shadowing = rollout is not None and in_shadow_phase(rollout, canary or CanaryStatus())
        mirror_refusal = await self._mirror_refusal() if shadowing else None
        canary_ready = share_settled = False
        if deployed is not None and rollout_version is not None:
            # Pods added for a larger step join as they become Ready; the canary stays Ready meanwhile.
            observed = await self.cluster.observe("canary", rollout_version)
            canary_ready = observed.serves_only_version
            share_settled = await self._share_settled(canary, observed)
        return Observation(
            now=self.clock(),
            stable_version=resolved.stable,
            candidate_version=resolved.candidate,
            stable_ready=stable_ready,
            canary_version_deployed=deployed,
            canary_ready=canary_ready,
            abort_requested=self.abort_requested,
            analysis=analysis,
            shadow=shadow,
            mirror_refusal=mirror_refusal,
            request=self._unanswered_request(),
            router_weight=router_weight,
            # Only the replica router sizes the stable track for a step.
            stable_sized=stable_ready or self.spec.traffic.router != "replicas",
            share_settled=share_settled,
        )

    async def _share_settled(self, canary: CanaryStatus | None, observed: TrackObservation) -> bool:
        """Whether the replica router's Ready pods give the canary the share its current weight was planned
        to, within the tolerance; true for the other routers and at weight 0."""
        if self.spec.traffic.router != "replicas" or canary is None or canary.weight == 0 or not canary.version:
            return True
        plan = await self._plan(await self._stable_track_version(), canary.version, canary.weight)
        share = await self._replica_share(observed, plan)
        return share is None or abs(share - plan.effective_weight) <= self.spec.traffic.replicas.tolerance

    async def _mirror_refusal(self) -> str | None:
        """Whether the router can mirror, asked of the cluster once per run."""
        if self.mirror_checked is None:
            self.mirror_checked = (await self.cluster.mirror_refusal(),)
        return self.mirror_checked[0]

    def _unanswered_request(self) -> Request | None:
        """The rollout request for the machine, until a decision has answered it."""
        request, answered = self.request, self.journal.status.last_request
        if request is None or request.action not in ROLLOUT_ACTIONS:
            return None
        return None if answered is not None and answered.id == request.id else request

    # -- act ------------------------------------------------------------------------------------

    def _record_decision(self, decision: Decision) -> None:
        before = self.journal.status.canary
        canary = decision.canary
        if before is not None and canary.version == before.version:
            # What the executor measured stays until it measures again.
            canary.effective_weight, canary.weight_message = before.effective_weight, before.weight_message
        self.journal.status.canary = canary
        if decision.answer is not None:
            self.journal.status.last_request = decision.answer.to_status(decision.time)
        for entry in decision.history():
            self.journal.status.history = append_history(self.journal.status.history, entry)

    async def _execute(self, decision: Decision) -> tuple[AnalysisResult | None, ShadowCount | None, bool]:
        """Perform the actions in order; the analysis result and shadow count (if one ran) and whether the
        registry was written."""
        traffic = _Traffic(
            stable=await self._stable_track_version(),
            canary=await self.cluster.deployed_version("canary"),
            weight=decision.canary.weight,
        )
        analysis: AnalysisResult | None = None
        shadow: ShadowCount | None = None
        wrote_registry = False
        for action in decision.actions:
            match action:
                case Emit(type=kind, reason=reason, message=message):
                    self.journal.emit(kind, reason, message)
                case EnsureCanary(version=version, weight=weight, mirror=mirror):
                    traffic.canary, traffic.weight, traffic.mirror, traffic.pending = version, weight, mirror, True
                case SetWeight(weight=weight):
                    traffic.weight, traffic.mirror, traffic.pending = weight, False, True
                case RemoveCanary():
                    traffic.canary, traffic.weight, traffic.mirror, traffic.pending = None, 0, False, True
                case RollStable(version=version):
                    traffic.stable, traffic.pending = version, True
                case RunAnalysis(version=version, step=step, weight=weight):
                    await self._apply(traffic)
                    assert self.spec.rollout is not None  # the machine only analyses a rollout
                    target = AnalysisTarget(self.spec.model.name, version, self.owner.namespace, step, weight)
                    analysis = await self.analyse(self.spec.rollout.analysis, target)
                case RunShadowCheck(version=version, since=since):
                    await self._apply(traffic)
                    assert self.spec.rollout is not None  # the machine only counts a rollout's shadow phase
                    where = QueryTarget(self.spec.model.name, "canary", version, self.owner.namespace)
                    began = parse_stamp(since) or self.clock()
                    shadow = await self.count_shadow(self.spec.rollout.analysis.prometheus, where, began)
                case PromoteInRegistry():
                    await self._apply(traffic)
                    await promote(self.registry, self.spec, action)
                    wrote_registry = True
                case RejectInRegistry():
                    await self._apply(traffic)
                    await reject(self.registry, self.spec, action)
                    wrote_registry = True
        await self._apply(traffic)
        return analysis, shadow, wrote_registry

    async def _stable_track_version(self) -> str:
        """The version the stable track serves: what its Deployment runs (a rollout does not change it
        before the promotion), else the registry's stable version, else what status says."""
        deployed = await self.cluster.deployed_version("stable")
        stable = self.journal.status.stable
        return deployed or self.resolved.stable or (stable.version if stable and stable.version else "")

    async def _apply(self, traffic: _Traffic) -> None:
        if not traffic.pending:
            return
        self.applied = await self._plan(traffic.stable, traffic.canary, traffic.weight, traffic.mirror)
        await self.cluster.apply_plan(self.applied)
        traffic.pending = False

    async def _plan(self, stable: str, canary: str | None, weight: int, mirror: bool = False) -> TrafficPlan:
        running = await self.cluster.deployed_replicas("stable")
        return plan_traffic(
            self.owner,
            self.spec,
            stable=stable,
            canary=canary,
            weight=weight,
            stable_replicas=running,
            router_proxies=self.router_proxies,
            canary_header_value=self.canary_header_value,
            autoscaler=self.autoscaler,
            mirror=mirror,
            prediction_log=self.prediction_log,
        )

    def _count(self, decision: Decision) -> None:
        for outcome in decision.outcomes():
            metrics.ROLLOUTS.labels(outcome=outcome).inc()
        if decision.duration_seconds is not None:
            metrics.ROLLOUT_DURATION.observe(decision.duration_seconds)
        metrics.CANARY_WEIGHT.labels(namespace=self.owner.namespace, name=self.owner.name).set(decision.canary.weight)

    # -- status ---------------------------------------------------------------------------------

    async def _record_serving(self, resolved: ResolvedVersions) -> bool:
        """status.stable, the canary's readiness and share, phase and conditions after the run's decisions;
        whether the pods behind the replica router are still on their way to the planned ratio."""
        journal, canary = self.journal, self.journal.status.canary
        stable: TrackObservation | None = None
        if resolved.stable is not None:
            stable = await self.cluster.observe("stable", resolved.stable)
            journal.record_stable(resolved.stable, stable)
            journal.set_serving_conditions(resolved.stable, stable)
        if canary is None:
            return False
        converging = await self._record_share(canary)
        if canary.state in OPEN_STATES:
            journal.status.phase = OPEN_STATES[canary.state]
            journal.condition(
                "Progressing", True, f"Rollout{canary.state}", canary.reason or f"canary at {canary.weight}%"
            )
        if canary.state == "Paused":
            journal.condition("Degraded", True, "RolloutPaused", canary.reason or "analysis inconclusive")
        elif canary.state in ("RollingBack", "RolledBack"):
            journal.condition("Degraded", canary.state == "RollingBack", "RolledBack", canary.reason or "")
        return converging

    async def _record_share(self, canary: CanaryStatus) -> bool:
        carries = canary.state in TRAFFIC_STATES or canary.state == "Promoting"
        version = canary.version if is_active(canary) and canary.version else None
        observed: TrackObservation | None = None
        if version is not None:
            observed = await self.cluster.observe("canary", version)
            canary.ready_replicas, canary.replicas = observed.ready_with_version, observed.desired
        plan = self.applied or await self._plan(
            await self._stable_track_version(), version if carries else None, canary.weight
        )
        canary.weight_message = plan.message
        share = None if observed is None else await self._replica_share(observed, plan)
        if share is None:
            canary.effective_weight = plan.effective_weight
            return False
        canary.effective_weight = share
        return abs(share - plan.effective_weight) > self.spec.traffic.replicas.tolerance

    async def _replica_share(self, canary: TrackObservation, plan: TrafficPlan) -> int | None:
        """The replica router's canary share in percent: each Ready pod behind the shared Service takes an
        equal part. None for the other routers, and at 0 or 100 % (the plan alone sets those)."""
        if self.spec.traffic.router != "replicas" or plan.effective_weight in (0, 100):
            return None
        stable = await self.cluster.observe("stable", await self._stable_track_version())
        serving = canary.serving + stable.serving
        return round(100 * canary.serving / serving) if serving else 0

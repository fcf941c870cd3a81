"""The shadow phase: its verdict on a count, and its transitions in the rollout state machine."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from modelpilot.operator.rollout import (
    Decision,
    EnsureCanary,
    Observation,
    RejectInRegistry,
    RemoveCanary,
    RunAnalysis,
    RunShadowCheck,
    SetWeight,
    ShadowCount,
    decide,
)
from modelpilot.operator.rollout.clock import parse_stamp, stamp, stamp_down
from modelpilot.operator.rollout.requests import Request
from modelpilot.operator.rollout.shadow import shadow_verdict
from modelpilot.operator.spec import InvalidSpecError, ModelDeploymentSpec, Shadow, parse_spec
from modelpilot.operator.status import CanaryStatus, ShadowStatus
from tests.unit.operator.rollout.harness import INTERVAL, STEPS, Verdict, World, at, holding, observe

SETTINGS = Shadow(min_comparisons=100, min_agreement=0.9, max_duration="5m")


def shadow_spec(**shadow: Any) -> ModelDeploymentSpec:
    """Three steps, a 30 s interval, inconclusiveLimit 3, through an HTTPRoute, with a shadow phase."""
    settings = {"minComparisons": 100, "minAgreement": 0.9, "maxDuration": "5m", **shadow}
    return parse_spec(
        {
            "model": {"name": "fraud", "alias": "champion", "candidateAlias": "challenger"},
            "registry": {"trackingUri": "http://mlflow:5000"},
            "serving": {"image": "serve:1"},
            "traffic": {"router": "gateway", "gateway": {"parentRefs": [{"name": "public"}]}},
            "rollout": {
                "steps": STEPS,
                "interval": "30s",
                "analysis": {"prometheus": "http://prometheus:9090", "inconclusiveLimit": 3},
                "shadow": settings,
            },
        }
    )


SPEC = shadow_spec()


def mirroring(since: float = 0.0, checked: float | None = None, **fields: Any) -> CanaryStatus:
    """A rollout in its shadow phase since T0 + `since`, last counted at T0 + `checked`."""
    state = fields.pop("shadow_state", "Mirroring")
    shadow = ShadowStatus(
        state=state,
        started_at=stamp(at(since)),
        checked_at=None if checked is None else stamp_down(at(checked)),
        mirrored=fields.pop("mirrored", True),
    )
    return holding(0, 0, since, shadow=shadow, **fields)


def count(seconds: float, comparisons: float, agreed: float, error: str | None = None) -> ShadowCount:
    return ShadowCount(stamp_down(at(seconds)), comparisons, agreed, error)


def reasons(decision: Any) -> list[str]:
    return [emit.reason for emit in decision.events()]


def traffic(decision: Any) -> list[Any]:
    return [a for a in decision.actions if isinstance(a, EnsureCanary | SetWeight | RemoveCanary)]


# --- The verdict ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("comparisons", "agreed", "elapsed", "outcome"),
    [
        (100, 90, 60, "Passed"),  # agreement exactly at the bound passes
        (100, 89, 60, "Failed"),
        (99.6, 99.6, 60, "Waiting"),  # increase() is fractional: below minComparisons is not enough
        (40, 40, 299, "Waiting"),
        (40, 40, 300, "Inconclusive"),  # maxDuration reached with too few comparisons
        (0, 0, 400, "Inconclusive"),
        (5000, 1000, 400, "Failed"),  # enough comparisons decide even after maxDuration
    ],
)
def test_the_verdict_needs_min_comparisons_then_compares_the_agreement(
    comparisons: float, agreed: float, elapsed: float, outcome: str
) -> None:
    assert shadow_verdict(SETTINGS, comparisons, agreed, elapsed).outcome == outcome


def test_the_verdict_names_its_numbers() -> None:
    failed = shadow_verdict(SETTINGS, 240.4, 150.2, 60)
    assert (failed.comparisons, failed.agreed) == (240, 150)
    assert failed.agreement == pytest.approx(150.2 / 240.4)
    assert failed.reason == "shadow_agreement 0.6248 below minAgreement 0.9 over 240 comparisons"
    waiting = shadow_verdict(SETTINGS, 0, 0, 10)
    assert waiting.agreement is None
    assert waiting.reason == "0 of minComparisons 100 comparisons"
    late = shadow_verdict(SETTINGS, 12, 12, 300)
    assert late.reason == "12 comparisons in maxDuration 5m, fewer than minComparisons 100, agreement 1 so far"


# --- The spec -------------------------------------------------------------------------------------


def test_the_replica_router_cannot_have_a_shadow_phase() -> None:
    raw = SPEC.model_dump(by_alias=True, exclude_none=True)
    raw["traffic"] = {"router": "replicas"}
    with pytest.raises(InvalidSpecError, match=r"rollout\.shadow needs traffic\.router gateway or ingress"):
        parse_spec(raw)
    raw["rollout"]["shadow"]["enabled"] = False
    assert parse_spec(raw).rollout is not None  # kept but switched off: accepted


# --- The machine ----------------------------------------------------------------------------------


def test_a_ready_canary_first_gets_a_mirror_of_live_traffic_and_no_weight() -> None:
    start = decide(SPEC, None, observe(canary_version_deployed=None, canary_ready=False))
    decision = decide(SPEC, start.canary, observe(1))
    assert decision.canary.weight == 0
    assert decision.canary.shadow is not None
    assert decision.canary.shadow.state == "Mirroring"
    assert decision.canary.shadow.mirrored
    assert traffic(decision) == [EnsureCanary("2", 0, mirror=True)]
    assert reasons(decision) == ["ShadowStarted"]
    assert decision.requeue_after == INTERVAL


def test_the_phase_is_counted_every_interval_since_it_began() -> None:
    waiting = decide(SPEC, mirroring(), observe(10))
    assert traffic(waiting) == [EnsureCanary("2", 0, mirror=True)]
    assert waiting.requeue_after == pytest.approx(INTERVAL - 10)
    due = decide(SPEC, mirroring(), observe(INTERVAL))
    assert due.actions[-1] == RunShadowCheck("2", stamp(at(0)))
    assert due.requeue_after == 0.0


def test_agreement_passes_to_the_first_live_step_in_the_same_decision_and_ends_the_mirror() -> None:
    decision = decide(SPEC, mirroring(), observe(INTERVAL, shadow=count(INTERVAL, 150, 148)))
    canary = decision.canary
    assert canary.shadow is not None
    assert (canary.shadow.state, canary.shadow.comparisons, canary.shadow.agreed) == ("Passed", 150, 148)
    assert not canary.shadow.mirrored
    assert (canary.state, canary.step, canary.weight) == ("Progressing", 0, STEPS[0])
    assert traffic(decision)[-1] == EnsureCanary("2", STEPS[0])
    assert reasons(decision) == ["ShadowPassed", "StepStarted"]
    assert traffic(decision) == [EnsureCanary("2", STEPS[0])]  # no stale mirror statement before it
    # From then on the live steps are analysed as without a shadow phase.
    later = decide(SPEC, canary, observe(2 * INTERVAL + 1, router_weight=STEPS[0]))
    assert any(isinstance(action, RunAnalysis) for action in later.actions)


def test_disagreement_rolls_back_before_any_live_weight_with_the_agreement_as_evidence() -> None:
    decision = decide(SPEC, mirroring(), observe(INTERVAL, shadow=count(INTERVAL, 200, 120)))
    canary = decision.canary
    assert canary.state == "RollingBack"
    assert canary.shadow is not None
    assert canary.shadow.state == "Failed"
    assert canary.shadow.agreement == pytest.approx(0.6)
    assert all(action.weight == 0 for action in traffic(decision) if isinstance(action, EnsureCanary | SetWeight))
    assert traffic(decision)[-2:] == [SetWeight(0), RemoveCanary()]
    assert reasons(decision) == ["RollbackStarted"]
    assert "shadow_agreement 0.6 below minAgreement 0.9" in (canary.reason or "")
    # The registry is told what decided it.
    reject = decide(SPEC, canary, observe(INTERVAL + 1, canary_version_deployed=None))
    written = [action for action in reject.actions if isinstance(action, RejectInRegistry)]
    assert len(written) == 1
    assert (written[0].version, written[0].metric, written[0].at) == ("2", "shadow_agreement", canary.outcome_at)
    assert written[0].value == pytest.approx(0.6)


def test_too_few_comparisons_keep_mirroring_until_max_duration_then_pause() -> None:
    waiting = decide(SPEC, mirroring(), observe(INTERVAL, shadow=count(INTERVAL, 30, 30)))
    assert waiting.canary.state == "Progressing"
    assert waiting.canary.shadow is not None
    assert waiting.canary.shadow.state == "Mirroring"
    assert "30 of minComparisons 100" in (waiting.canary.reason or "")
    late = 300.0
    paused = decide(SPEC, mirroring(checked=late - INTERVAL), observe(late, shadow=count(late, 60, 60)))
    assert paused.canary.state == "Paused"
    assert paused.canary.shadow is not None
    assert paused.canary.shadow.state == "Inconclusive"
    assert reasons(paused) == ["ShadowInconclusive"]
    assert traffic(paused) == [EnsureCanary("2", 0, mirror=True)]  # mirroring goes on, never live weight
    # A verdict reached later still counts: enough agreeing comparisons resume the rollout at its first step.
    resumed = decide(SPEC, paused.canary, observe(late + INTERVAL, shadow=count(late + INTERVAL, 120, 119)))
    assert (resumed.canary.state, resumed.canary.weight) == ("Progressing", STEPS[0])
    assert reasons(resumed) == ["ShadowPassed", "StepStarted"]


def test_a_count_prometheus_could_not_give_is_inconclusive_and_pauses_at_the_limit() -> None:
    status = mirroring(inconclusive=2)
    decision = decide(SPEC, status, observe(INTERVAL, shadow=count(INTERVAL, 0, 0, error="Prometheus unavailable")))
    assert decision.canary.state == "Paused"
    assert decision.canary.inconclusive == 3
    assert reasons(decision) == ["RolloutPaused"]
    assert traffic(decision) == [EnsureCanary("2", 0, mirror=True)]


def test_a_canary_that_stops_being_ready_loses_the_mirror_until_it_is_ready_again() -> None:
    unready = decide(SPEC, mirroring(), observe(10, canary_ready=False))
    assert unready.canary.shadow is not None
    assert not unready.canary.shadow.mirrored
    assert traffic(unready)[-1] == EnsureCanary("2", 0)
    assert reasons(unready) == ["CanaryNotReady"]
    ready = decide(SPEC, unready.canary, observe(12))
    assert ready.canary.shadow is not None
    assert ready.canary.shadow.mirrored
    assert traffic(ready) == [EnsureCanary("2", 0, mirror=True)]


def test_a_resume_request_starts_the_phase_anew() -> None:
    status = mirroring(shadow_state="Inconclusive", state="Paused")
    request = Request(id="r1", action="resume", requested_by="ada", reason="more traffic now")
    decision = decide(SPEC, status, observe(400, request=request))
    canary = decision.canary
    assert canary.state == "Progressing"
    assert canary.shadow is not None
    assert (canary.shadow.state, canary.shadow.started_at) == ("Mirroring", stamp(at(400)))
    assert traffic(decision) == [EnsureCanary("2", 0, mirror=True)]
    assert "RolloutResumed" in reasons(decision)


def test_without_a_shadow_phase_the_first_step_comes_at_once() -> None:
    spec = shadow_spec(enabled=False)
    start = decide(spec, None, observe(canary_version_deployed=None, canary_ready=False))
    decision = decide(spec, start.canary, observe(1))
    assert decision.canary.shadow is None
    assert decision.canary.weight == STEPS[0]


def test_a_router_that_cannot_mirror_gets_no_mirror_and_the_rollout_pauses_once() -> None:
    why = "GatewayClass traefik (of Gateway gateways/public) does not list HTTPRouteRequestMirror"
    start = decide(SPEC, None, observe(canary_version_deployed=None, canary_ready=False))
    paused = decide(SPEC, start.canary, observe(1, mirror_refusal=why))
    assert paused.canary.state == "Paused"
    assert paused.canary.shadow is None  # the phase never began
    assert why in (paused.canary.reason or "")
    assert traffic(paused) == [EnsureCanary("2", 0)]
    assert reasons(paused) == ["ShadowUnsupported"]
    again = decide(SPEC, paused.canary, observe(1 + INTERVAL, mirror_refusal=why))
    assert reasons(again) == []
    assert traffic(again) == [EnsureCanary("2", 0)]
    # Mid-phase (the class changed): the mirror goes at once.
    mid = decide(SPEC, mirroring(), observe(10, mirror_refusal=why))
    assert mid.canary.shadow is not None
    assert not mid.canary.shadow.mirrored
    assert traffic(mid) == [EnsureCanary("2", 0)]


def test_once_the_router_can_mirror_the_phase_begins_and_the_pause_ends() -> None:
    why = "GatewayClass traefik (of Gateway gateways/public) does not list HTTPRouteRequestMirror"
    start = decide(SPEC, None, observe(canary_version_deployed=None, canary_ready=False))
    paused = decide(SPEC, start.canary, observe(1, mirror_refusal=why))
    begun = decide(SPEC, paused.canary, observe(1 + INTERVAL))
    assert begun.canary.state == "Progressing"
    assert begun.canary.shadow is not None
    assert begun.canary.shadow.mirrored
    assert reasons(begun) == ["ShadowStarted"]
    assert traffic(begun) == [EnsureCanary("2", 0, mirror=True)]


# --- Crash points ---------------------------------------------------------------------------------


def test_killed_after_asking_for_a_count_the_phase_is_counted_again_and_keeps_its_start() -> None:
    asked = decide(SPEC, mirroring(), observe(INTERVAL))
    assert RunShadowCheck("2", stamp(at(0))) in asked.actions
    # The count died with the process: the restarted operator counts again, from the same start.
    restarted = decide(SPEC, asked.canary, observe(INTERVAL + 5))
    assert RunShadowCheck("2", stamp(at(0))) in restarted.actions
    assert traffic(restarted) == [EnsureCanary("2", 0, mirror=True)]


def test_killed_before_a_passing_count_was_recorded_no_live_weight_comes_before_a_new_count() -> None:
    status = mirroring()
    passed = decide(SPEC, status, observe(INTERVAL, shadow=count(INTERVAL, 150, 150)))
    assert passed.canary.weight == STEPS[0]
    # The status write never happened: the replay from the old status counts again, still mirroring.
    replay = decide(SPEC, status, observe(INTERVAL + 2))
    assert replay.canary.weight == 0
    assert any(isinstance(action, RunShadowCheck) for action in replay.actions)
    assert traffic(replay) == [EnsureCanary("2", 0, mirror=True)]


def test_killed_after_the_rollback_was_recorded_the_registry_is_told_once_with_the_agreement() -> None:
    failed = decide(SPEC, mirroring(), observe(INTERVAL, shadow=count(INTERVAL, 200, 100)))
    restarted = decide(SPEC, failed.canary, observe(INTERVAL + 3))
    [written] = [action for action in restarted.actions if isinstance(action, RejectInRegistry)]
    assert (written.metric, written.value) == ("shadow_agreement", 0.5)
    # Once the registry shows it (the candidate pointer gone), nothing more is written.
    done = decide(SPEC, restarted.canary, observe(INTERVAL + 4, candidate_version=None, canary_version_deployed=None))
    assert done.canary.state == "RolledBack"
    assert not any(isinstance(action, RejectInRegistry) for action in done.actions)


@dataclass
class ShadowWorld(World):
    """The harness's world with the router's mirror and Prometheus's count of the shadow comparisons."""

    mirror: bool = False
    pending_count: ShadowCount | None = None
    agreement: float = 1.0

    def observation(self, now: datetime) -> Observation:
        return replace(super().observation(now), shadow=self.pending_count)

    def execute(self, decision: Decision, rollout_key: str | None, now: datetime, verdict: Verdict) -> None:
        super().execute(decision, rollout_key, now, verdict)
        for action in decision.actions:
            if isinstance(action, EnsureCanary):
                self.mirror = action.mirror
            elif isinstance(action, SetWeight | RemoveCanary):
                self.mirror = False
            elif isinstance(action, RunShadowCheck):
                since = parse_stamp(action.since) or now
                compared = 4.0 * (now - since).total_seconds()  # 4 comparisons a second since the phase began
                self.pending_count = ShadowCount(stamp_down(now), compared, compared * self.agreement)


def test_random_runs_with_crashes_never_give_live_weight_before_the_shadow_phase_passed() -> None:
    outcomes: set[str] = set()
    for seed in range(40):
        rng = random.Random(seed)
        world = ShadowWorld(agreement=rng.choice([0.5, 0.99, 1.0]))
        status: CanaryStatus | None = None
        now = at(0)
        for _ in range(150):
            if world.canary_deployed is not None and rng.random() < 0.6:
                world.canary_pods_ready = True
            elif rng.random() < 0.05:
                world.canary_pods_ready = False
            world.stable_track_ready = True
            decision = decide(SPEC, status, world.observation(now))
            world.pending_analysis, world.pending_count = None, None
            crash = rng.random()
            if crash >= 0.1:  # below: killed before the status write, nothing happened
                status = decision.canary
                cut = len(decision.actions) if crash >= 0.3 else rng.randrange(len(decision.actions) + 1)
                world.execute(replace(decision, actions=decision.actions[:cut]), status.started_at, now, "Passed")
                if cut < len(decision.actions):
                    world.pending_analysis, world.pending_count = None, None
                shadow = status.shadow
                if world.router_weight > 0:
                    assert shadow is not None
                    assert shadow.state == "Passed", (world, status)
                if world.mirror:  # a mirror never goes with live weight
                    assert world.router_weight == 0
                if world.mirror and cut == len(decision.actions):  # and, all done, only in the phase
                    assert shadow is not None
                    assert shadow.state in ("Mirroring", "Inconclusive"), (world, status)
            outcomes.add(decision.canary.state)
            for key, written in world.writes.items():
                assert written <= 1, f"registry written {written} times for rollout {key}"
            if decision.canary.state in ("Succeeded", "RolledBack"):
                break
            now += timedelta(
                seconds=(decision.requeue_after if decision.requeue_after is not None else 30.0) + rng.random()
            )
    assert {"Succeeded", "RolledBack"} <= outcomes

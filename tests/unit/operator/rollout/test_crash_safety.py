"""An operator killed at any moment resumes at the same step, never skips an analysis and never writes
the registry twice; checked on chosen interruptions and on random runs with a seeded RNG."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

from modelpilot.operator.rollout import (
    Decision,
    EnsureCanary,
    Observation,
    PromoteInRegistry,
    RejectInRegistry,
    RunAnalysis,
    SetWeight,
    decide,
)
from modelpilot.operator.rollout.machine import TRAFFIC_STATES
from modelpilot.operator.status import CanaryStatus
from tests.unit.operator.rollout.harness import SPEC, T0, VERDICTS, World, analysis, at, holding, observe


def test_the_same_inputs_give_the_same_decision() -> None:
    status = holding(1, 50, since=100)
    result = analysis(131, 1, 50)
    assert decide(SPEC, status, observe(131, analysis=result)) == decide(SPEC, status, observe(131, analysis=result))


def test_killed_after_asking_for_an_analysis_the_same_step_is_analysed_again() -> None:
    status = holding(1, 50, since=100)
    asked = decide(SPEC, status, observe(130))
    assert RunAnalysis("2", 1, 50) in asked.actions
    # The result died with the process: the restarted operator has only the status.
    restarted = decide(SPEC, asked.canary, observe(140))
    assert RunAnalysis("2", 1, 50) in restarted.actions
    assert (restarted.canary.step, restarted.canary.weight) == (1, 50)


def test_killed_before_a_passed_analysis_was_recorded_the_step_is_not_skipped() -> None:
    status = holding(1, 50, since=100)
    passed = decide(SPEC, status, observe(131, analysis=analysis(131, 1, 50)))
    assert passed.canary.step == 2
    # The status write never happened: the replay from the old status asks for a new analysis.
    replay = decide(SPEC, status, observe(135))
    assert replay.canary.step == 1
    assert RunAnalysis("2", 1, 50) in replay.actions


def test_killed_after_a_step_was_recorded_the_next_step_is_held_before_its_analysis() -> None:
    passed = decide(SPEC, holding(1, 50, since=100), observe(131, analysis=analysis(131, 1, 50)))
    restarted = decide(SPEC, passed.canary, observe(140))
    assert restarted.actions == (EnsureCanary("2", 100),)


def test_promotion_interrupted_between_intent_and_write_writes_exactly_once() -> None:
    world = World(canary_deployed="2", canary_pods_ready=True)
    passed = analysis(131, 2, 100)
    intent = decide(SPEC, holding(2, 100, since=100), replace(world.observation(at(131)), analysis=passed))
    assert intent.canary.state == "Promoting"
    assert intent.registry_writes() == ()
    status = intent.canary  # persisted: the intent survives the crash that follows
    first = decide(SPEC, status, world.observation(at(140)))
    write = PromoteInRegistry("2", "1", status.outcome_at or "")
    assert first.registry_writes() == (write,)
    # Killed before the write: the restarted operator asks again with the same facts (tag values included).
    again = decide(SPEC, status, world.observation(at(150)))
    assert again.registry_writes() == (write,)
    world.execute(again, status.started_at, T0, "Passed")
    # Killed after the write, before anything was recorded: the registry confirms it, no new write.
    confirmed = decide(SPEC, status, world.observation(at(160)))
    assert confirmed.registry_writes() == ()
    assert confirmed.canary.registry_written is True
    replayed = decide(SPEC, status, world.observation(at(161)))
    assert replayed.registry_writes() == ()
    assert sum(world.writes.values()) == 1


def test_rollback_interrupted_between_intent_and_rejection_rejects_exactly_once() -> None:
    world = World(canary_deployed="2", canary_pods_ready=True, router_weight=50)
    failed = analysis(131, 1, 50, "Failed", error_rate=0.3)
    intent = decide(SPEC, holding(1, 50, since=100, failures=1), replace(world.observation(at(131)), analysis=failed))
    assert intent.registry_writes() == ()
    world.execute(intent, intent.canary.started_at, at(131), "Failed")
    assert (world.router_weight, world.canary_deployed) == (0, None)
    status = intent.canary
    reject = decide(SPEC, status, world.observation(at(132)))
    assert reject.registry_writes() == (
        RejectInRegistry("2", status.reason or "", "error_rate", 0.3, status.outcome_at or ""),
    )
    # Killed before the rejection: asked again; then killed after it: confirmed, not repeated.
    assert decide(SPEC, status, world.observation(at(133))).registry_writes() == reject.registry_writes()
    world.execute(reject, status.started_at, at(133), "Failed")
    done = decide(SPEC, status, world.observation(at(134)))
    assert done.canary.state == "RolledBack"
    assert done.registry_writes() == ()
    assert world.stable == "1"
    assert sum(world.writes.values()) == 1


def _check(before: CanaryStatus | None, obs: Observation, decision: Decision) -> None:
    """The invariants every single decision keeps."""
    canary = decision.canary
    for action in decision.actions:
        if isinstance(action, EnsureCanary | SetWeight) and action.weight > 0:
            version = action.version if isinstance(action, EnsureCanary) else canary.version
            assert obs.canary_ready, f"traffic to an unready canary: {action}"
            assert obs.canary_version_deployed == version, f"traffic to pods of another version: {action}"
    if canary.weight > 0:
        assert obs.canary_ready
    if before is not None and before.state == "Paused":
        assert not any(isinstance(action, PromoteInRegistry) for action in decision.actions)
        assert canary.state != "Promoting"
    advanced = (
        before is not None
        and before.state in TRAFFIC_STATES
        and canary.version == before.version
        and (canary.step > before.step or canary.state == "Promoting")
    )
    if advanced:
        assert before is not None
        assert obs.analysis is not None, "a step was left without an analysis"
        assert (obs.analysis.verdict, obs.analysis.step) == ("Passed", before.step)


def test_random_runs_with_crashes_keep_every_invariant() -> None:
    outcomes: set[str] = set()
    for seed in range(60):
        outcomes |= _random_run(random.Random(seed))
    # The runs visited every way a rollout ends, so the invariants were checked along each.
    assert {"Succeeded", "RolledBack", "Aborted", "Paused", "superseded"} <= outcomes


def _random_run(rng: random.Random) -> set[str]:
    world = World()
    status: CanaryStatus | None = None
    now = T0
    next_version = 3
    seen: set[str] = set()
    for _ in range(250):
        roll = rng.random()
        if roll < 0.02:
            world.candidate, next_version = str(next_version), next_version + 1
        elif roll < 0.03:
            world.abort = not world.abort
        elif roll < 0.04:
            world.candidate = None
        if world.canary_deployed is not None and rng.random() < 0.5:
            world.canary_pods_ready = True
        elif rng.random() < 0.05:
            world.canary_pods_ready = False
        if rng.random() < 0.5:
            world.stable_track_ready = True

        obs = world.observation(now)
        decision = decide(SPEC, status, obs)
        _check(status, obs, decision)
        world.pending_analysis = None
        seen.add(decision.canary.state)
        seen.update(decision.outcomes())

        verdict = rng.choice(VERDICTS)
        crash = rng.random()
        if crash >= 0.1:  # below: killed before the status write, nothing happened
            status = decision.canary
            if crash >= 0.2:  # below: killed right after the status write
                cut = len(decision.actions) if crash >= 0.3 else rng.randrange(len(decision.actions) + 1)
                partial = replace(decision, actions=decision.actions[:cut])
                world.execute(partial, status.started_at, now, verdict)
                if cut < len(decision.actions):
                    world.pending_analysis = None
        for key, count in world.writes.items():
            assert count <= 1, f"registry written {count} times for rollout {key}"
        delay = decision.requeue_after if decision.requeue_after is not None else 30.0
        now += timedelta(seconds=delay + rng.random() * 5)
    return seen


def test_killed_before_the_weight_reached_the_router_the_hold_starts_over() -> None:
    # The step to 100% was recorded at t=131, but the router still carries 50%: the operator stopped in between.
    passed = decide(SPEC, holding(1, 50, since=100), observe(131, analysis=analysis(131, 1, 50)))
    restarted = decide(SPEC, passed.canary, observe(200, router_weight=50))
    assert restarted.actions == (EnsureCanary("2", 100),)
    assert restarted.canary.step_started_at == "2026-03-01T12:03:20Z"
    # Once the router carries the weight, the new hold runs its full interval before any analysis.
    held = decide(SPEC, restarted.canary, observe(201, router_weight=100))
    assert not any(isinstance(action, RunAnalysis) for action in held.actions)

"""Every transition of the rollout state machine, one behaviour per test."""

from __future__ import annotations

from typing import Any

import pytest

from modelpilot.operator.rollout import (
    Emit,
    EnsureCanary,
    PromoteInRegistry,
    RejectInRegistry,
    RemoveCanary,
    RollStable,
    RunAnalysis,
    SetWeight,
    decide,
)
from modelpilot.operator.rollout.clock import parse_stamp, stamp, stamp_down
from modelpilot.operator.rollout.machine import CONFIRM_POLL_SECONDS, is_active
from modelpilot.operator.rollout.step import READY_POLL_SECONDS
from modelpilot.operator.status import CanaryStatus
from tests.unit.operator.rollout.harness import (
    INTERVAL,
    SPEC,
    STEPS,
    World,
    analysis,
    at,
    holding,
    make_spec,
    observe,
    run_to_rest,
)


def reasons(decision: object) -> list[str]:
    return [emit.reason for emit in decision.events()]  # type: ignore[attr-defined]


# --- Starting -------------------------------------------------------------------------------------


def test_no_candidate_is_no_rollout() -> None:
    decision = decide(SPEC, None, observe(candidate_version=None, canary_version_deployed=None))
    assert decision.canary.state == "Idle"
    assert decision.actions == ()
    assert decision.requeue_after is None


def test_candidate_equal_to_stable_is_no_rollout() -> None:
    decision = decide(SPEC, None, observe(candidate_version="1", canary_version_deployed=None))
    assert decision.canary.state == "Idle"
    assert decision.actions == ()


def test_new_candidate_starts_with_a_canary_at_weight_zero() -> None:
    decision = decide(SPEC, None, observe(canary_version_deployed=None, canary_ready=False))
    canary = decision.canary
    assert (canary.state, canary.version, canary.step, canary.weight) == ("Progressing", "2", 0, 0)
    assert canary.started_at == "2026-03-01T12:00:00Z"
    assert decision.actions[0] == EnsureCanary("2", 0)
    assert reasons(decision) == ["RolloutStarted"]
    assert decision.outcomes() == ("started",)
    assert decision.history()[0].event == "RolloutStarted"
    assert decision.history()[0].version == "2"


def test_abort_annotation_keeps_a_new_candidate_from_starting() -> None:
    decision = decide(SPEC, None, observe(abort_requested=True, canary_version_deployed=None))
    assert decision.canary.state == "Idle"
    assert not any(isinstance(action, EnsureCanary) for action in decision.actions)


def test_leftover_canary_objects_are_removed_at_rest() -> None:
    decision = decide(SPEC, CanaryStatus(state="Succeeded", version="2"), observe(candidate_version=None))
    assert decision.actions == (RemoveCanary(),)


def test_no_stable_version_is_no_rollout() -> None:
    decision = decide(SPEC, None, observe(stable_version=None, canary_version_deployed=None))
    assert decision.canary.state == "Idle"


# --- Readiness gate -------------------------------------------------------------------------------


def test_weight_stays_zero_while_the_canary_is_not_ready() -> None:
    waiting = holding(0, 0)
    decision = decide(SPEC, waiting, observe(60, canary_ready=False))
    assert decision.canary.weight == 0
    assert decision.actions == (EnsureCanary("2", 0),)
    assert decision.requeue_after == READY_POLL_SECONDS


def test_pods_of_another_version_do_not_count_as_a_ready_canary() -> None:
    decision = decide(SPEC, holding(0, 0), observe(10, canary_version_deployed="7", canary_ready=True))
    assert decision.canary.weight == 0


def test_a_ready_canary_gets_the_first_step_weight_and_the_hold_starts() -> None:
    decision = decide(SPEC, holding(0, 0), observe(12.3004))
    assert decision.canary.weight == STEPS[0]
    assert decision.canary.step_started_at == "2026-03-01T12:00:12.301Z"  # rounded up: the hold is never short
    assert decision.actions[0] == EnsureCanary("2", STEPS[0])
    assert reasons(decision) == ["StepStarted"]
    assert decision.requeue_after == INTERVAL


def test_a_ready_canary_waits_at_weight_zero_until_the_stable_track_has_its_pods() -> None:
    decision = decide(SPEC, holding(0, 0), observe(12, stable_sized=False))
    assert decision.canary.weight == 0
    assert decision.actions == (EnsureCanary("2", 0),)
    assert "stable track" in (decision.canary.reason or "")
    assert decision.requeue_after == READY_POLL_SECONDS
    assert decide(SPEC, holding(0, 0), observe(13)).canary.weight == STEPS[0]


def test_a_stable_track_still_growing_does_not_take_weight_from_a_canary_that_has_it() -> None:
    decision = decide(SPEC, holding(1, STEPS[1]), observe(1, stable_sized=False))
    assert decision.canary.weight == STEPS[1]


def test_a_step_whose_pods_do_not_carry_its_share_yet_is_held_from_when_they_do() -> None:
    # The replica router: step 2's pods were applied at t=100, but at t=100 + INTERVAL they still start.
    stepped = holding(1, STEPS[1], since=100)
    late = decide(SPEC, stepped, observe(100 + INTERVAL, share_settled=False))
    assert not any(isinstance(action, RunAnalysis) for action in late.actions)
    assert late.actions == (EnsureCanary("2", STEPS[1]),)
    assert late.canary.step_started_at == stamp(at(100 + INTERVAL))
    assert "waiting for its pods" in (late.canary.reason or "")
    assert late.requeue_after == READY_POLL_SECONDS
    # Ready at the next look: the step's full interval runs from then, with the usual reason.
    settled = decide(SPEC, late.canary, observe(102 + INTERVAL))
    assert settled.canary.reason == f"holding step 2/{len(STEPS)} at {STEPS[1]}%"
    assert not any(isinstance(action, RunAnalysis) for action in settled.actions)
    assert settled.due == at(100 + 2 * INTERVAL)
    analysed = decide(SPEC, settled.canary, observe(100 + 2 * INTERVAL))
    assert RunAnalysis("2", 1, STEPS[1]) in analysed.actions


def test_canary_not_ready_within_the_timeout_rolls_back() -> None:
    decision = decide(SPEC, holding(0, 0), observe(120, canary_ready=False))
    assert decision.canary.state == "RollingBack"
    assert decision.canary.weight == 0
    assert decision.actions[:2] == (SetWeight(0), RemoveCanary())
    assert "not Ready within 2m" in (decision.canary.reason or "")
    assert not decision.registry_writes()


def test_rejection_after_readiness_timeout_names_readiness() -> None:
    rolling_back = holding(0, 0, state="RollingBack", reason="canary of version 2 not Ready within 2m")
    decision = decide(SPEC, rolling_back, observe(121, canary_version_deployed=None))
    assert decision.registry_writes() == (
        RejectInRegistry("2", "canary of version 2 not Ready within 2m", "canary_ready", 120.0),
    )


def test_a_canary_that_stops_being_ready_loses_its_weight_and_the_step_starts_over() -> None:
    decision = decide(SPEC, holding(1, 50, since=100), observe(110, canary_ready=False))
    assert decision.canary.weight == 0
    assert decision.canary.step == 1
    assert decision.actions[0] == SetWeight(0)
    assert reasons(decision) == ["CanaryNotReady"]
    again = decide(SPEC, decision.canary, observe(115))
    assert again.canary.weight == 50
    assert again.canary.step_started_at == "2026-03-01T12:01:55Z"


# --- Holding and analysing ------------------------------------------------------------------------


def test_the_step_is_held_for_the_interval_before_any_analysis() -> None:
    decision = decide(SPEC, holding(0, 10, since=100), observe(110))
    assert decision.actions == (EnsureCanary("2", 10),)
    assert decision.requeue_after == pytest.approx(20.0)


def test_an_analysis_is_asked_for_when_the_hold_ends() -> None:
    status = holding(0, 10, since=100)
    decision = decide(SPEC, status, observe(130))
    assert decision.actions == (EnsureCanary("2", 10), RunAnalysis("2", 0, 10))
    assert decision.requeue_after == 0
    assert decision.canary == status


def test_a_passed_analysis_moves_to_the_next_step() -> None:
    result = analysis(131, 0, 10, error_rate=0.0)
    decision = decide(SPEC, holding(0, 10, since=100), observe(131, analysis=result))
    canary = decision.canary
    assert (canary.step, canary.weight) == (1, 50)
    assert canary.last_analysis == result
    assert canary.analyses == [result]
    assert EnsureCanary("2", 50) in decision.actions
    assert reasons(decision) == ["StepStarted"]


def test_passing_the_last_step_records_the_intent_to_promote_without_writing() -> None:
    result = analysis(131, 2, 100)
    decision = decide(SPEC, holding(2, 100, since=100), observe(131, analysis=result))
    assert decision.canary.state == "Promoting"
    assert decision.canary.registry_written is False
    assert decision.canary.weight == 100
    assert decision.registry_writes() == ()
    assert decision.requeue_after == 0
    assert reasons(decision) == ["PromotionStarted"]


def test_a_failed_analysis_counts_and_holds_the_step_again() -> None:
    result = analysis(131, 1, 50, "Failed", error_rate=0.2)
    decision = decide(SPEC, holding(1, 50, since=100), observe(131, analysis=result))
    assert decision.canary.failures == 1
    assert (decision.canary.state, decision.canary.step, decision.canary.weight) == ("Progressing", 1, 50)
    assert reasons(decision) == ["AnalysisFailed"]
    # The next analysis comes one interval after this one, not at once.
    assert decide(SPEC, decision.canary, observe(140)).actions == (EnsureCanary("2", 50),)
    assert RunAnalysis("2", 1, 50) in decide(SPEC, decision.canary, observe(161)).actions


def test_reaching_the_failure_limit_rolls_back_weight_zero_first() -> None:
    result = analysis(131, 1, 50, "Failed", error_rate=0.2)
    decision = decide(SPEC, holding(1, 50, since=100, failures=1), observe(131, analysis=result))
    assert decision.canary.state == "RollingBack"
    assert decision.canary.weight == 0
    assert decision.actions[:2] == (SetWeight(0), RemoveCanary())
    assert decision.registry_writes() == ()
    assert reasons(decision) == ["RollbackStarted"]


def test_rollback_rejects_the_candidate_with_the_failing_metric_and_value() -> None:
    failed = analysis(131, 1, 50, "Failed", error_rate=0.2, p99_latency_seconds=0.1)
    status = holding(1, 50, state="RollingBack", failures=2, last_analysis=failed, reason="error_rate too high")
    decision = decide(SPEC, status, observe(132, canary_version_deployed=None))
    assert decision.actions[:2] == (SetWeight(0), RemoveCanary())
    assert decision.actions[2] == RejectInRegistry("2", "error_rate too high", "error_rate", 0.2)
    assert decision.canary.state == "RollingBack"
    assert decision.requeue_after == CONFIRM_POLL_SECONDS


def test_rollback_ends_once_the_candidate_pointer_is_gone_and_leaves_stable_alone() -> None:
    status = holding(1, 0, state="RollingBack", failures=2, reason="error_rate too high")
    decision = decide(SPEC, status, observe(133, candidate_version=None, canary_version_deployed=None))
    assert decision.canary.state == "RolledBack"
    assert decision.canary.registry_written is True
    assert decision.registry_writes() == ()
    assert not any(isinstance(action, RollStable) for action in decision.actions)
    assert reasons(decision) == ["RolledBack"]
    assert decision.outcomes() == ("rolled_back",)
    assert decision.duration_seconds == pytest.approx(133)


def test_inconclusive_analyses_are_counted_and_the_limit_pauses() -> None:
    status = holding(1, 50, since=100, inconclusive=1)
    decision = decide(SPEC, status, observe(131, analysis=analysis(131, 1, 50, "Inconclusive")))
    assert (decision.canary.state, decision.canary.inconclusive) == ("Progressing", 2)
    assert decision.events() == ()
    paused = decide(SPEC, decision.canary, observe(162, analysis=analysis(162, 1, 50, "Inconclusive")))
    assert (paused.canary.state, paused.canary.inconclusive, paused.canary.weight) == ("Paused", 3, 50)
    assert reasons(paused) == ["RolloutPaused"]


def test_paused_keeps_analysing_and_a_passed_analysis_resumes_the_same_step() -> None:
    status = holding(2, 100, since=100, state="Paused", inconclusive=3)
    asked = decide(SPEC, status, observe(131))
    assert RunAnalysis("2", 2, 100) in asked.actions
    resumed = decide(SPEC, status, observe(131, analysis=analysis(131, 2, 100, "Passed")))
    assert (resumed.canary.state, resumed.canary.step, resumed.canary.inconclusive) == ("Progressing", 2, 0)
    assert resumed.registry_writes() == ()
    assert reasons(resumed) == ["RolloutResumed"]
    # The step is analysed anew after a full interval before promotion.
    assert RunAnalysis("2", 2, 100) in decide(SPEC, resumed.canary, observe(162)).actions


def test_paused_stays_paused_while_analyses_are_inconclusive() -> None:
    status = holding(1, 50, since=100, state="Paused", inconclusive=3)
    decision = decide(SPEC, status, observe(131, analysis=analysis(131, 1, 50, "Inconclusive")))
    assert (decision.canary.state, decision.canary.inconclusive) == ("Paused", 4)


def test_a_failed_analysis_while_paused_can_still_roll_back() -> None:
    status = holding(1, 50, since=100, state="Paused", inconclusive=3, failures=1)
    decision = decide(SPEC, status, observe(131, analysis=analysis(131, 1, 50, "Failed", error_rate=1.0)))
    assert decision.canary.state == "RollingBack"


def test_an_analysis_already_recorded_is_not_counted_twice() -> None:
    result = analysis(131, 1, 50, "Failed", error_rate=0.2)
    once = decide(SPEC, holding(1, 50, since=100), observe(131, analysis=result))
    twice = decide(SPEC, once.canary, observe(170, analysis=result))
    assert twice.canary.failures == 1
    assert RunAnalysis("2", 1, 50) in twice.actions


def test_an_analysis_of_another_step_or_taken_before_the_hold_is_ignored() -> None:
    status = holding(1, 50, since=100)
    other_step = decide(SPEC, status, observe(131, analysis=analysis(131, 0, 10)))
    assert other_step.canary.step == 1
    assert RunAnalysis("2", 1, 50) in other_step.actions
    too_old = decide(SPEC, status, observe(131, analysis=analysis(90, 1, 50)))
    assert too_old.canary.step == 1


# --- Promotion ------------------------------------------------------------------------------------


PROMOTING: dict[str, Any] = {"state": "Promoting", "replaces": "1", "outcome_at": "2026-03-01T12:02:11Z"}


def test_the_last_passed_step_records_when_and_what_the_promotion_replaces() -> None:
    decision = decide(SPEC, holding(2, 100, since=100), observe(131, analysis=analysis(131, 2, 100)))
    assert decision.canary.state == "Promoting"
    assert (decision.canary.replaces, decision.canary.outcome_at) == ("1", "2026-03-01T12:02:11Z")
    assert decision.registry_writes() == ()


def test_promotion_asks_for_the_registry_write_once_the_intent_is_recorded() -> None:
    status = holding(2, 100, **PROMOTING)
    decision = decide(SPEC, status, observe(140))
    assert decision.registry_writes() == (PromoteInRegistry("2", "1", "2026-03-01T12:02:11Z"),)
    assert decision.canary.registry_written is False
    assert EnsureCanary("2", 100) in decision.actions


def test_promotion_cut_off_before_the_candidate_pointer_went_is_asked_again_with_the_same_facts() -> None:
    # The stable alias moved, the candidate alias still names the version: the write is not complete.
    status = holding(2, 100, **PROMOTING)
    decision = decide(SPEC, status, observe(141, stable_version="2", candidate_version="2"))
    assert decision.registry_writes() == (PromoteInRegistry("2", "1", "2026-03-01T12:02:11Z"),)
    assert decision.canary.registry_written is False


def test_promotion_is_confirmed_by_the_registry_and_then_the_stable_track_rolls() -> None:
    status = holding(2, 100, **PROMOTING)
    decision = decide(SPEC, status, observe(141, stable_version="2", candidate_version=None, stable_ready=False))
    assert decision.canary.registry_written is True
    assert decision.registry_writes() == ()
    assert RollStable("2") in decision.actions
    assert reasons(decision) == ["RegistryPromoted"]


def test_promotion_waits_for_the_stable_track_and_keeps_traffic_on_the_ready_canary() -> None:
    status = holding(2, 100, state="Promoting", registry_written=True)
    decision = decide(SPEC, status, observe(142, stable_version="2", candidate_version=None, stable_ready=False))
    assert decision.canary.state == "Promoting"
    assert decision.actions == (EnsureCanary("2", 100), RollStable("2"))
    unready = decide(
        SPEC, status, observe(142, stable_version="2", candidate_version=None, stable_ready=False, canary_ready=False)
    )
    assert unready.canary.weight == 0
    assert SetWeight(0) in unready.actions


def test_promotion_ends_with_weight_back_on_stable_and_the_canary_removed() -> None:
    status = holding(2, 100, state="Promoting", registry_written=True)
    decision = decide(SPEC, status, observe(150, stable_version="2", candidate_version=None, stable_ready=True))
    assert decision.canary.state == "Succeeded"
    assert decision.canary.weight == 0
    assert decision.actions[:3] == (RollStable("2"), SetWeight(0), RemoveCanary())
    assert reasons(decision) == ["Promoted"]
    assert decision.duration_seconds == pytest.approx(150)
    assert decision.requeue_after is None


def test_promotion_is_committed_abort_and_newer_candidates_wait() -> None:
    status = holding(2, 100, **PROMOTING)
    decision = decide(SPEC, status, observe(140, candidate_version="3", abort_requested=True))
    assert decision.canary.state == "Promoting"
    assert decision.registry_writes() == (PromoteInRegistry("2", "1", "2026-03-01T12:02:11Z"),)
    # The newer candidate does not name the version: the stable pointer alone confirms the write.
    moved = decide(SPEC, status, observe(141, stable_version="2", candidate_version="3"))
    assert moved.canary.registry_written is True


def test_someone_moving_the_stable_pointer_after_the_promotion_stops_it() -> None:
    status = holding(2, 100, state="Promoting", registry_written=True)
    decision = decide(SPEC, status, observe(150, stable_version="5", candidate_version=None))
    assert decision.canary.state == "Idle"
    assert decision.actions[:2] == (SetWeight(0), RemoveCanary())


# --- Abort, supersede, cancel ---------------------------------------------------------------------


def test_the_abort_annotation_stops_the_rollout_without_touching_the_registry() -> None:
    decision = decide(SPEC, holding(1, 50, since=100), observe(110, abort_requested=True))
    assert decision.canary.state == "Aborted"
    assert decision.canary.weight == 0
    assert decision.actions[:2] == (SetWeight(0), RemoveCanary())
    assert decision.registry_writes() == ()
    assert decision.outcomes() == ("aborted",)


def test_aborted_stays_until_the_annotation_goes_then_starts_afresh() -> None:
    aborted = CanaryStatus(state="Aborted", version="2", failures=1)
    assert decide(SPEC, aborted, observe(200, abort_requested=True, canary_version_deployed=None)).canary == aborted
    restarted = decide(SPEC, aborted, observe(300, canary_version_deployed=None))
    assert (restarted.canary.state, restarted.canary.step, restarted.canary.failures) == ("Progressing", 0, 0)


def test_a_new_candidate_supersedes_the_rollout_with_fresh_counters() -> None:
    status = holding(1, 50, since=100, failures=1, inconclusive=2)
    decision = decide(SPEC, status, observe(110, candidate_version="3"))
    canary = decision.canary
    assert (canary.state, canary.version, canary.step, canary.weight) == ("Progressing", "3", 0, 0)
    assert (canary.failures, canary.inconclusive, canary.analyses) == (0, 0, [])
    work = [action for action in decision.actions if not isinstance(action, Emit)]
    assert work == [SetWeight(0), EnsureCanary("3", 0)]
    assert reasons(decision) == ["RolloutSuperseded", "RolloutStarted"]
    assert decision.outcomes() == ("superseded", "started")


@pytest.mark.parametrize(("candidate", "why"), [(None, "no candidate"), ("1", "now the stable version")])
def test_the_rollout_stops_when_the_candidate_goes_away(candidate: str | None, why: str) -> None:
    decision = decide(SPEC, holding(1, 50, since=100), observe(110, candidate_version=candidate))
    assert decision.canary.state == "Idle"
    assert decision.actions[:2] == (SetWeight(0), RemoveCanary())
    assert why in (decision.canary.reason or "")


def test_removing_the_rollout_from_the_spec_stops_the_rollout() -> None:
    spec = SPEC.model_copy(update={"rollout": None})
    decision = decide(spec, holding(1, 50, since=100), observe(110))
    assert decision.canary.state == "Idle"
    assert decision.actions[:2] == (SetWeight(0), RemoveCanary())


def test_fewer_steps_in_a_changed_spec_clamp_the_current_step() -> None:
    spec = make_spec(steps=[20, 100])
    decision = decide(spec, holding(2, 100, since=100), observe(110))
    assert (decision.canary.step, decision.canary.weight) == (1, 100)


# --- Whole rollouts -------------------------------------------------------------------------------


def test_a_good_candidate_is_promoted_in_steps_times_interval() -> None:
    world = World()
    status, decisions = run_to_rest(world)
    assert status is not None
    assert status.state == "Succeeded"
    assert (world.stable, world.candidate, world.stable_track) == ("2", None, "2")
    assert (world.canary_deployed, world.router_weight) == (None, 0)
    assert sum(world.writes.values()) == 1
    assert [a.weight for a in status.analyses] == STEPS
    last = decisions[-1]
    assert last.duration_seconds is not None
    assert len(STEPS) * INTERVAL <= last.duration_seconds < len(STEPS) * INTERVAL + 20
    events = [emit.reason for decision in decisions for emit in decision.events()]
    assert events == [
        "RolloutStarted",
        "StepStarted",
        "StepStarted",
        "StepStarted",
        "PromotionStarted",
        "RegistryPromoted",
        "Promoted",
    ]


def test_a_failing_candidate_is_rolled_back_and_the_champion_is_untouched() -> None:
    world = World()
    status, _ = run_to_rest(world, verdict="Failed")
    assert status is not None
    assert status.state == "RolledBack"
    assert status.failures == 2
    assert (world.stable, world.candidate, world.stable_track) == ("1", None, "1")
    assert (world.canary_deployed, world.router_weight) == (None, 0)
    assert sum(world.writes.values()) == 1


def test_every_transition_emits_an_event_and_a_history_entry() -> None:
    _, decisions = run_to_rest(World())
    for decision in decisions:
        assert len(decision.history()) == len(decision.events())
        for entry, emit in zip(decision.history(), decision.events(), strict=True):
            assert (entry.event, entry.message, entry.time) == (emit.reason, emit.message, decision.time)
    states = [decision.canary.state for decision in decisions]
    changes = [i for i in range(1, len(states)) if states[i] != states[i - 1]]
    assert all(decisions[i].events() for i in changes)


def test_is_active_names_the_states_that_drive_the_canary() -> None:
    assert is_active(holding(0, 0))
    assert is_active(CanaryStatus(state="Promoting"))
    assert not is_active(CanaryStatus(state="RolledBack"))
    assert not is_active(None)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(SPEC, None, observe(0, now=at(0).replace(tzinfo=None)))


def test_emits_carry_the_rollout_version() -> None:
    decision = decide(SPEC, None, observe(canary_version_deployed=None))
    assert decision.events() == (
        Emit("Normal", "RolloutStarted", "rolling out version 2 as a canary (stable is 1)", "2"),
    )


def test_status_times_keep_milliseconds_holds_round_up_and_analyses_round_down() -> None:
    moment = at(12.3004)
    assert stamp(moment) == "2026-03-01T12:00:12.301Z"
    assert stamp_down(moment) == "2026-03-01T12:00:12.300Z"
    assert stamp(at(12)) == stamp_down(at(12)) == "2026-03-01T12:00:12Z"
    assert parse_stamp(stamp(moment)) == at(12.301)

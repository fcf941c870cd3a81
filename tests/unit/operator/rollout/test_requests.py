"""A person's requests (promote, abort, pause, resume) in the rollout state machine: each action in each state
it applies to, the states it does not apply to, and the audit each answer carries."""

from __future__ import annotations

import pytest

from modelpilot.operator.rollout import Emit, EnsureCanary, PromoteInRegistry, RemoveCanary, RunAnalysis, SetWeight
from modelpilot.operator.rollout.machine import decide
from modelpilot.operator.rollout.requests import (
    Request,
    pending_request,
    read_request,
    registry_tag,
)
from modelpilot.operator.status import CanaryStatus, RequestStatus
from tests.unit.operator.rollout.harness import INTERVAL, SPEC, analysis, holding, observe


def asked(action: str, by: str = "alice", reason: str = "looks good", id_: str = "r1") -> Request:
    return Request(id=id_, action=action, requested_by=by, reason=reason)


def the_emit(decision: object, reason: str) -> Emit:
    found: list[Emit] = [emit for emit in decision.events() if emit.reason == reason]  # type: ignore[attr-defined]
    assert len(found) == 1, [emit.reason for emit in decision.events()]  # type: ignore[attr-defined]
    return found[0]


# --- Reading requests -----------------------------------------------------------------------------


def test_a_request_is_read_from_its_annotations_and_is_pending_until_answered() -> None:
    annotations = {
        "modelpilot.io/request": "pause",
        "modelpilot.io/request-id": "20261130T0700Z-ab12",
        "modelpilot.io/requested-by": "alice",
        "modelpilot.io/request-reason": "latency spike upstream",
    }
    request = read_request(annotations)
    assert request == Request("20261130T0700Z-ab12", "pause", "alice", "latency spike upstream")
    assert pending_request(annotations, None) == request
    answered = RequestStatus(id="20261130T0700Z-ab12", action="pause", outcome="Applied")
    assert pending_request(annotations, answered) is None
    assert pending_request({**annotations, "modelpilot.io/request-id": "next"}, answered) is not None


def test_an_annotation_set_without_an_id_or_an_action_is_no_request() -> None:
    assert read_request({"modelpilot.io/request": "promote"}) is None
    assert read_request({"modelpilot.io/request-id": "x"}) is None


def test_the_registry_tag_has_one_key_per_request_and_says_what_who_why_and_when() -> None:
    status = RequestStatus(
        id="r/1 x", action="abort", requested_by="bob", reason="bad", time="2026-11-30T07:00:00Z", outcome="Applied"
    )
    key, value = registry_tag(status)
    assert key == "modelpilot.io/request.r/1 x"
    assert value == "abort by bob at 2026-11-30T07:00:00Z: bad"
    # Ids from the annotation are cut to characters an MLflow tag key accepts.
    read = read_request({"modelpilot.io/request": "abort", "modelpilot.io/request-id": "a/b c$d"})
    assert read is not None
    assert read.id == "a-b-c-d"


# --- promote --------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["Progressing", "Paused"])
def test_promote_skips_the_remaining_steps_and_records_the_intent_first(state: str) -> None:
    decision = decide(SPEC, holding(0, 10, since=100, state=state), observe(110, request=asked("promote")))
    canary = decision.canary
    assert canary.state == "Promoting"
    assert canary.registry_written is False
    assert canary.replaces == "1"
    assert canary.outcome_at is not None
    assert "promoted by alice: looks good" in (canary.reason or "")
    # The intent only: the registry is written by the next decision, once the status holds it.
    assert decision.registry_writes() == ()
    assert decision.requeue_after == 0.0
    emit = the_emit(decision, "PromotionStarted")
    assert (emit.requested_by, emit.request_reason) == ("alice", "looks good")
    assert decision.answer is not None
    assert (decision.answer.applied, decision.answer.version) == (True, "2")

    following = decide(SPEC, canary, observe(111))
    assert PromoteInRegistry("2", "1", canary.outcome_at or "") in following.actions
    # Traffic goes to the canary in full while the registry is written: the steps are skipped.
    assert EnsureCanary("2", 100) in following.actions


# --- abort ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["Progressing", "Paused"])
def test_abort_by_request_stops_traffic_and_holds_the_version(state: str) -> None:
    decision = decide(SPEC, holding(1, 50, since=100, state=state), observe(110, request=asked("abort", by="bob")))
    canary = decision.canary
    assert (canary.state, canary.weight, canary.held_by) == ("Aborted", 0, "bob")
    assert decision.actions[:2] == (SetWeight(0), RemoveCanary())
    assert decision.registry_writes() == ()
    assert the_emit(decision, "RolloutAborted").requested_by == "bob"
    history = decision.history()
    assert [(entry.event, entry.requested_by, entry.request_reason) for entry in history] == [
        ("RolloutAborted", "bob", "looks good")
    ]

    # At rest the aborted version is not rolled out again by itself, unlike an annotation abort.
    at_rest = decide(SPEC, canary, observe(200, canary_version_deployed=None))
    assert at_rest.canary.state == "Aborted"
    assert not any(isinstance(action, EnsureCanary) for action in at_rest.actions)
    # A newer candidate starts its own rollout.
    newer = decide(SPEC, canary, observe(300, candidate_version="3", canary_version_deployed=None))
    assert (newer.canary.state, newer.canary.version, newer.canary.held_by) == ("Progressing", "3", None)


# --- pause and resume -----------------------------------------------------------------------------


def test_pause_holds_the_weight_and_runs_no_analysis_until_resumed() -> None:
    paused = decide(SPEC, holding(1, 50, since=100), observe(110, request=asked("pause"))).canary
    assert (paused.state, paused.weight, paused.held_by) == ("Paused", 50, "alice")

    # Long after the interval: no analysis is asked for, the weight stays.
    later = decide(SPEC, paused, observe(100 + 10 * INTERVAL, router_weight=50))
    assert later.canary.state == "Paused"
    assert EnsureCanary("2", 50) in later.actions
    assert not any(isinstance(action, RunAnalysis) for action in later.actions)

    resumed = decide(SPEC, paused, observe(1000, request=asked("resume", by="carol", id_="r2")))
    canary = resumed.canary
    assert (canary.state, canary.held_by, canary.weight, canary.step) == ("Progressing", None, 50, 1)
    assert the_emit(resumed, "RolloutResumed").requested_by == "carol"
    # The step is held anew from the resume: its analysis falls due one interval later.
    assert resumed.requeue_after == INTERVAL


def test_a_pause_request_holds_a_rollout_paused_by_inconclusive_analyses() -> None:
    status = holding(1, 50, since=100, state="Paused", inconclusive=3)
    decision = decide(SPEC, status, observe(110, request=asked("pause")))
    assert (decision.canary.state, decision.canary.held_by) == ("Paused", "alice")
    # A conclusive analysis would resume an inconclusive pause; a held one does not analyse at all.
    passed = analysis(200, 1, 50)
    later = decide(SPEC, decision.canary, observe(200, analysis=passed, router_weight=50))
    assert later.canary.state == "Paused"


def test_resume_ends_a_pause_from_inconclusive_analyses_too() -> None:
    status = holding(1, 50, since=100, state="Paused", inconclusive=3)
    decision = decide(SPEC, status, observe(110, request=asked("resume")))
    assert (decision.canary.state, decision.canary.inconclusive) == ("Progressing", 0)


def test_resume_of_a_rollout_aborted_by_request_starts_it_again_at_the_first_step() -> None:
    aborted = CanaryStatus(state="Aborted", version="2", held_by="bob", failures=1)
    decision = decide(SPEC, aborted, observe(200, canary_version_deployed=None, request=asked("resume")))
    canary = decision.canary
    assert (canary.state, canary.version, canary.step, canary.weight, canary.failures) == ("Progressing", "2", 0, 0, 0)
    assert EnsureCanary("2", 0) in decision.actions
    assert the_emit(decision, "RolloutStarted").requested_by == "alice"


# --- requests that do not apply -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "status", "says"),
    [
        ("promote", CanaryStatus(state="Succeeded", version="2"), "Succeeded: promote applies while it is Progressing"),
        ("abort", CanaryStatus(state="RolledBack", version="2"), "RolledBack: abort applies"),
        ("pause", CanaryStatus(state="Promoting", version="2", registry_written=True), "Promoting: pause applies"),
        ("resume", holding(1, 50, since=100), "Progressing: resume applies while it is Paused"),
        ("resume", CanaryStatus(state="Aborted", version="2"), "remove it to roll out again"),
        ("pause", holding(1, 50, since=100, state="Paused", held_by="bob"), "already paused by bob"),
    ],
)
def test_a_request_that_does_not_apply_is_refused_and_the_rollout_goes_on(
    action: str, status: CanaryStatus, says: str
) -> None:
    decision = decide(SPEC, status, observe(110, stable_version="2", request=asked(action)))
    expected = decide(SPEC, status, observe(110, stable_version="2"))
    assert decision.answer is not None
    assert decision.answer.applied is False
    assert says in decision.answer.message
    refused = the_emit(decision, "RequestRefused")
    assert (refused.type, refused.requested_by) == ("Warning", "alice")
    # Apart from the refusal, the decision is the one taken without the request.
    assert decision.canary == expected.canary
    assert [a for a in decision.actions if a != refused] == list(expected.actions)


def test_a_refused_answer_needs_no_registry_tag_and_an_applied_one_does() -> None:
    refused = decide(SPEC, CanaryStatus(state="Succeeded", version="2"), observe(110, request=asked("abort")))
    applied = decide(SPEC, holding(1, 50, since=100), observe(110, request=asked("abort")))
    assert refused.answer is not None
    assert applied.answer is not None
    assert refused.answer.to_status("t").recorded is True
    assert applied.answer.to_status("t").recorded is False

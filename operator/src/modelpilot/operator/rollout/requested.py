"""A person's rollout requests in the machine's decision: promote, abort, pause and resume applied in the
states they apply to (`requests.refusal`), refused with the reason elsewhere."""

from __future__ import annotations

from modelpilot.operator.rollout.actions import Decision, EnsureCanary
from modelpilot.operator.rollout.clock import stamp
from modelpilot.operator.rollout.requests import Answer, Request, refusal
from modelpilot.operator.rollout.shadow import begin_shadow_phase
from modelpilot.operator.rollout.step import (
    READY_POLL_SECONDS,
    Step,
    begin_promotion,
    mirrored,
    start_rollout,
    stop_traffic,
)
from modelpilot.operator.spec import Rollout
from modelpilot.operator.status import CanaryStatus


def held_abort(canary: CanaryStatus) -> bool:
    """Aborted by a person's request: the version waits for `resume` instead of rolling out again."""
    return canary.state == "Aborted" and bool(canary.held_by)


def answer_request(rollout: Rollout, step: Step, request: Request) -> Decision | None:
    """Apply a person's request when it applies in the current state (`requests.refusal`): the decision that
    does it. Else the refusal is recorded (`step.answer`, a RequestRefused Event) and None lets the usual
    decision follow."""
    canary, obs = step.canary, step.obs
    version = step.version
    why = refusal(request.action, canary)
    gone = obs.candidate_version != version or obs.stable_version is None or obs.abort_requested
    if why is None and request.action == "resume" and canary.state == "Aborted" and gone:
        why = f"version {version} is not the candidate any more, or the abort annotation is set"
    if why is not None:
        step.answer = Answer(request, False, why, step.canary.version)
        step.emit("Warning", "RequestRefused", f"{request.describe()}: refused, {why}", request)
        return None
    said = request.requester + (f": {request.reason}" if request.reason else "")
    step.answer = Answer(request, True, f"{request.action} applied to the rollout of version {version}", version)
    if request.action == "promote":
        step.act(EnsureCanary(version, canary.weight))
        begin_promotion(step, f"promoted by {said}; the remaining steps are skipped")
        step.emit("Normal", "PromotionStarted", f"promoting version {version} at once: {canary.reason}", request)
        return step.done(0.0)
    if request.action == "abort":
        stop_traffic(step, "Aborted")
        canary.held_by, canary.reason = request.requester, f"aborted by {said}"
        step.emit("Warning", "RolloutAborted", f"rollout of version {version} {canary.reason}", request)
        step.finish_rollout()
        return step.done(None)
    if request.action == "pause":
        canary.state, canary.held_by, canary.reason = "Paused", request.requester, f"paused by {said}"
        step.act(EnsureCanary(version, canary.weight, mirror=mirrored(canary)))
        step.emit("Normal", "RolloutPaused", f"rollout paused at {canary.weight}%: {canary.reason}", request)
        return step.done(rollout.interval_seconds)
    if canary.state == "Aborted":
        start_rollout(step, version, obs.stable_version or "unknown", request)
        return step.done(READY_POLL_SECONDS)
    canary.state, canary.held_by, canary.inconclusive = "Progressing", None, 0
    if canary.shadow is not None and canary.shadow.state in ("Mirroring", "Inconclusive") and canary.weight == 0:
        # Resumed in the shadow phase: the phase starts anew, its comparisons counted from now.
        step.emit("Normal", "RolloutResumed", f"rollout resumed in a new shadow phase: resumed by {said}", request)
        return begin_shadow_phase(step, rollout.interval_seconds, f"resumed by {said}")
    canary.step_started_at = stamp(obs.now)
    canary.reason = f"resumed by {said}; step {canary.step + 1} held anew"
    step.act(EnsureCanary(version, canary.weight))
    step.emit("Normal", "RolloutResumed", f"rollout resumed at {canary.weight}%: {canary.reason}", request)
    return step.hold(rollout.interval_seconds)

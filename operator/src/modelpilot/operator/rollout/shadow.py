"""The shadow phase before a rollout's first live step: its verdict and its part of the machine's decision (pure).

Once the canary is Ready at weight 0, the router mirrors live traffic to it (`EnsureCanary(mirror=True)`):
clients only ever get stable's answers. Every `interval` the executor counts the candidate's answers compared
with stable's since the phase began, and how many agreed (`RunShadowCheck` → `Observation.shadow`);
`shadow_verdict` judges the count:

- at least minComparisons, agreement ≥ minAgreement ⇒ Passed: the mirror ends and the first live step
  begins in the same decision;
- at least minComparisons, agreement below ⇒ Failed: RollingBack exactly as after failed analyses (the
  registry tags the version rejected, with `shadow_agreement` and its value);
- fewer, within maxDuration ⇒ the phase goes on;
- fewer at maxDuration ⇒ Inconclusive: the rollout pauses (an Event says why) while mirroring and counting go
  on; a later verdict resumes it or rolls it back, and a resume request starts the phase anew.

A count Prometheus could not give is an inconclusive analysis: counted, `inconclusiveLimit` in a row pause.
When the cluster says the router cannot mirror (`Observation.mirror_refusal`: a parent Gateway's class lists
its features without RequestMirror, and an unsupported filter may break the route), nothing is mirrored and
the rollout pauses (`ShadowUnsupported`) until the spec drops the phase or a person promotes or aborts.
The canary losing readiness turns the mirror off (`machine._wait_for_canary`) until it is Ready again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from modelpilot.operator.rollout.actions import Decision, EnsureCanary, RunShadowCheck, ShadowCount
from modelpilot.operator.rollout.clock import parse_stamp, stamp
from modelpilot.operator.rollout.step import Step, begin_rollback, end_mirror
from modelpilot.operator.spec import Rollout, Shadow
from modelpilot.operator.spec.rollout import SHADOW_AGREEMENT
from modelpilot.operator.status import CanaryStatus, ShadowStatus

ShadowOutcome = Literal["Passed", "Failed", "Waiting", "Inconclusive"]


@dataclass(frozen=True)
class ShadowVerdict:
    """The judgement of a shadow phase's count so far."""

    outcome: ShadowOutcome
    reason: str
    comparisons: int
    agreed: int
    agreement: float | None


def shadow_verdict(settings: Shadow, comparisons: float, agreed: float, elapsed_seconds: float) -> ShadowVerdict:
    """Judge `comparisons` compared answers, `agreed` of them agreeing, `elapsed_seconds` into the phase.

    The counts come from increase() and may be fractional; they are shown rounded.
    """
    compared = max(comparisons, 0.0)
    agreement = min(max(agreed, 0.0) / compared, 1.0) if compared > 0 else None
    shown = round(compared)
    if agreement is not None and compared >= settings.min_comparisons:
        numbers = f"over {shown} comparisons"
        if agreement >= settings.min_agreement:
            reason = f"{SHADOW_AGREEMENT} {agreement:.4g} >= minAgreement {settings.min_agreement:g} {numbers}"
            return ShadowVerdict("Passed", reason, shown, round(agreed), agreement)
        reason = f"{SHADOW_AGREEMENT} {agreement:.4g} below minAgreement {settings.min_agreement:g} {numbers}"
        return ShadowVerdict("Failed", reason, shown, round(agreed), agreement)
    so_far = "" if agreement is None else f", agreement {agreement:.4g} so far"
    if elapsed_seconds >= settings.max_duration_seconds:
        reason = (
            f"{shown} comparisons in maxDuration {settings.max_duration}, fewer than minComparisons "
            f"{settings.min_comparisons}{so_far}"
        )
        return ShadowVerdict("Inconclusive", reason, shown, round(max(agreed, 0.0)), agreement)
    reason = f"{shown} of minComparisons {settings.min_comparisons} comparisons{so_far}"
    return ShadowVerdict("Waiting", reason, shown, round(max(agreed, 0.0)), agreement)


def in_shadow_phase(rollout: Rollout, canary: CanaryStatus) -> bool:
    """Whether the rollout is before its first live step with a shadow phase still to pass."""
    if not rollout.shadow_enabled or canary.step != 0 or canary.weight != 0:
        return False
    return canary.shadow is None or canary.shadow.state != "Passed"


def begin_shadow_phase(step: Step, interval: float, why: str) -> Decision:
    """Mirror live traffic to the Ready canary from now on; comparisons count from now."""
    now = stamp(step.obs.now)
    if not step.canary.held_by:
        step.canary.state = "Progressing"  # e.g. after a pause because the router could not mirror
    step.canary.shadow = ShadowStatus(started_at=now, mirrored=True, reason="waiting for the first count")
    step.canary.step_started_at = now
    step.canary.reason = "shadow phase: the canary answers a mirror of live traffic, clients get stable's answers"
    step.act(EnsureCanary(step.version, 0, mirror=True))
    step.emit("Normal", "ShadowStarted", f"{why}: mirroring live traffic to version {step.version} (no live answers)")
    return step.hold(interval)


def shadow_phase(rollout: Rollout, step: Step) -> Decision | None:
    """The decision of the shadow phase for a Ready canary, or None once it passed (the first step follows)."""
    settings = rollout.shadow
    assert settings is not None  # in_shadow_phase checked it
    canary, obs = step.canary, step.obs
    interval = rollout.interval_seconds
    if obs.mirror_refusal is not None:
        return _cannot_mirror(step, interval, obs.mirror_refusal)
    shadow = canary.shadow
    if shadow is None:
        return begin_shadow_phase(step, interval, "canary Ready")
    shadow.mirrored = True  # again, if the canary was not Ready for a while
    mirror = EnsureCanary(step.version, 0, mirror=True)  # restated by every decision that keeps the phase
    if canary.state == "Paused" and canary.held_by:
        # Paused by request: the mirror stays, nothing is counted until a resume request.
        step.act(mirror)
        return step.done(interval)
    since = parse_stamp(shadow.checked_at) or parse_stamp(shadow.started_at) or obs.now
    due = since + timedelta(seconds=interval)
    if obs.now < due:
        step.act(mirror)
        return step.done((due - obs.now).total_seconds(), due=due)
    count = obs.shadow
    taken = parse_stamp(count.time) if count is not None else None
    if count is None or taken is None or taken < due:
        step.act(mirror, RunShadowCheck(step.version, shadow.started_at or stamp(obs.now)))
        return step.done(0.0)
    return _judge_count(rollout, settings, step, count)


def _cannot_mirror(step: Step, interval: float, why: str) -> Decision:
    """The router cannot mirror: no mirror (it could break the route), paused until the spec or a person decides."""
    canary = step.canary
    end_mirror(canary)
    step.act(EnsureCanary(step.version, 0))
    reason = f"the shadow phase cannot mirror: {why}; set rollout.shadow.enabled false, or promote or abort"
    if canary.state != "Paused" or canary.reason != reason:
        canary.state, canary.reason = "Paused", reason
        step.emit("Warning", "ShadowUnsupported", f"rollout paused before its shadow phase: {reason}")
    return step.done(interval)


def _judge_count(rollout: Rollout, settings: Shadow, step: Step, count: ShadowCount) -> Decision | None:
    canary, interval = step.canary, rollout.interval_seconds
    shadow = canary.shadow
    assert shadow is not None
    shadow.checked_at = count.time
    was_paused = canary.state == "Paused"
    mirror = EnsureCanary(step.version, 0, mirror=True)
    if count.error is not None:
        step.act(mirror)
        shadow.reason = count.error
        canary.inconclusive += 1
        if not was_paused and canary.inconclusive >= rollout.analysis.inconclusive_limit:
            canary.state = "Paused"
            canary.reason = f"{canary.inconclusive} shadow counts in a row failed: {count.error}"
            step.emit("Warning", "RolloutPaused", f"rollout paused in its shadow phase: {canary.reason}")
        return step.hold(interval)
    canary.inconclusive = 0
    started = parse_stamp(shadow.started_at) or step.obs.now
    verdict = shadow_verdict(settings, count.comparisons, count.agreed, (step.obs.now - started).total_seconds())
    shadow.comparisons, shadow.agreed, shadow.agreement = verdict.comparisons, verdict.agreed, verdict.agreement
    shadow.reason = verdict.reason
    if verdict.outcome == "Waiting":
        step.act(mirror)
        if not was_paused:
            canary.reason = f"shadow phase: {verdict.reason}"
        return step.hold(interval)
    if verdict.outcome == "Inconclusive":
        step.act(mirror)
        if shadow.state != "Inconclusive":
            shadow.state = "Inconclusive"
            canary.state = "Paused"
            canary.reason = f"shadow phase inconclusive: {verdict.reason}"
            message = f"rollout paused in its shadow phase: {verdict.reason}; mirroring goes on"
            step.emit("Warning", "ShadowInconclusive", message)
        return step.hold(interval)
    if verdict.outcome == "Failed":
        shadow.state = "Failed"
        return begin_rollback(step, f"shadow phase: {verdict.reason}")
    shadow.state, shadow.mirrored = "Passed", False
    canary.state = "Progressing"
    resumed = "; rollout resumed" if was_paused else ""
    step.emit("Normal", "ShadowPassed", f"shadow phase passed: {verdict.reason}{resumed}")
    return None

"""The rollout state machine: `decide(spec, status.canary, observation) -> Decision`, a pure function.

States (`CanaryStatus.state`):

    Idle ─▶ Progressing(step i, weight w) ─▶ Promoting ─▶ Succeeded
                 │   ▲
                 ▼   │ conclusive analysis
               Paused          Progressing/Paused ─▶ RollingBack ─▶ RolledBack
    Progressing/Paused ─▶ Aborted (annotation)   Progressing/Paused ─▶ Idle (candidate gone or now stable)

- A rollout starts when the candidate differs from the stable version (neither missing) and the
  abort annotation is absent. Idle, Succeeded, RolledBack and Aborted are at rest; a new candidate
  starts a rollout from any of them (re-setting a rejected version's alias retries it).
- With `rollout.shadow`, the first step is preceded by a shadow phase (`rollout.shadow`): once the canary
  is Ready it gets a mirror of live traffic at weight 0, and the comparisons of its answers with stable's
  decide: agreement ⇒ the first step; disagreement ⇒ RollingBack; too few comparisons by maxDuration ⇒
  Paused (mirroring and counting go on; a verdict resumes or rolls back).
- Progressing and Paused carry traffic. Each step: wait for the canary to be Ready (weight 0 until it
  is; `canaryReadyTimeout` ⇒ RollingBack) and, from weight 0, for the stable track to have the pods it
  was sized for (`stable_sized`; the replica router grows it for the step), set the step's weight, hold
  `interval` (with the replica router, from when the Ready pods carry the step's share:
  `share_settled`), ask for an analysis (`RunAnalysis`). Passed ⇒ next step (after the 100% step ⇒ Promoting);
  Failed ⇒ failures + 1, `failureLimit` ⇒ RollingBack; Inconclusive ⇒ counted, `inconclusiveLimit` in a
  row ⇒ Paused. After an analysis that does not advance, the step is held another `interval` from that
  analysis. Paused never promotes: a conclusive analysis resumes Progressing at the same step, which is
  held and analysed anew. A canary that stops being Ready gets weight 0 at once, and the step starts
  over.
- A new candidate during Progressing/Paused supersedes the rollout (weight 0, canary replaced, fresh
  counters). From Promoting on, the outcome is committed; a newer candidate waits for the next rollout.
- Promoting: record the intent (state Promoting, `registryWritten` false, `outcomeAt`, and in
  `replaces` the stable version being replaced), then on the next call ask for `PromoteInRegistry` —
  again on every call until the registry's stable pointer names the version and its candidate pointer
  no longer does, which confirms the whole write (`registryWritten` true). Then roll the stable track
  to the version, wait until it is Ready, set weight 0, remove the canary ⇒ Succeeded.
- RollingBack: weight 0 and remove the canary at once; from the next call on, `RejectInRegistry` until
  the candidate pointer no longer names the version ⇒ RolledBack. The stable pointer is untouched.

- A person's request (`Observation.request`: promote, abort, pause, resume; `requested`) is answered
  first, in the same decision: promote records the intent to promote at once (the remaining steps are
  skipped); abort ends the traffic and holds the version (`heldBy`) until resume; pause holds the weight
  with no analysis until resume; resume goes back to Progressing (the step held anew) or rolls a held
  aborted version out again. A request that does not apply is refused and the usual decision follows.

Crash safety: all state is in `status.canary`. A registry write is only asked for when the status the
machine was given already records the intent, and never once the registry shows it done, so an
operator killed anywhere resumes without skipping an analysis or writing the registry twice. The
other actions are restated on every call while they apply.

Timestamps written by the machine are rounded up to the millisecond (`clock.stamp`), so a hold is
never shorter than `interval`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelpilot.operator.rollout.actions import (
    Decision,
    EnsureCanary,
    Observation,
    PromoteInRegistry,
    RejectInRegistry,
    RemoveCanary,
    RollStable,
    RunAnalysis,
    SetWeight,
)
from modelpilot.operator.rollout.clock import parse_stamp, stamp
from modelpilot.operator.rollout.queries import violations
from modelpilot.operator.rollout.requested import answer_request, held_abort
from modelpilot.operator.rollout.requests import ROLLOUT_ACTIONS
from modelpilot.operator.rollout.shadow import in_shadow_phase, shadow_phase
from modelpilot.operator.rollout.step import (
    READY_POLL_SECONDS,
    Step,
    begin_promotion,
    begin_rollback,
    end_mirror,
    mirrored,
    start_rollout,
    stop_traffic,
)
from modelpilot.operator.spec import ModelDeploymentSpec, Rollout, parse_duration
from modelpilot.operator.spec.rollout import SHADOW_AGREEMENT
from modelpilot.operator.status import AnalysisResult, CanaryStatus

CONFIRM_POLL_SECONDS = 1.0
ANALYSES_KEPT = 30

ACTIVE_STATES = frozenset({"Progressing", "Paused", "Promoting", "RollingBack"})
TRAFFIC_STATES = frozenset({"Progressing", "Paused"})


def is_active(canary: CanaryStatus | None) -> bool:
    """Whether a rollout is in flight (the canary track and the router are the machine's to drive)."""
    return canary is not None and canary.state in ACTIVE_STATES


def decide(spec: ModelDeploymentSpec, canary: CanaryStatus | None, obs: Observation) -> Decision:
    """The next status of the rollout and the actions that get there; see the module docstring."""
    if obs.now.tzinfo is None:
        raise ValueError("Observation.now must be timezone-aware")
    current = canary or CanaryStatus()
    step = Step(current.model_copy(deep=True), obs)
    if spec.rollout is None:
        return _without_rollout(step)
    if obs.request is not None and obs.request.action in ROLLOUT_ACTIONS:
        answered = answer_request(spec.rollout, step, obs.request)
        if answered is not None:
            return answered
    if current.state in TRAFFIC_STATES:
        return _progress(spec.rollout, step)
    if current.state == "Promoting":
        return _promote(step)
    if current.state == "RollingBack":
        return _roll_back(spec.rollout, step)
    return _at_rest(step)


def _without_rollout(step: Step) -> Decision:
    if step.canary.state in ACTIVE_STATES:
        stop_traffic(step, "Idle")
        step.emit("Normal", "RolloutCancelled", f"rollout of version {step.version} stopped: spec.rollout was removed")
    elif step.obs.canary_version_deployed is not None:
        step.act(RemoveCanary())
    return step.done(None)


def _at_rest(step: Step) -> Decision:
    obs = step.obs
    if step.canary.weight:
        step.canary.weight = 0
        step.act(SetWeight(0))
    if obs.canary_version_deployed is not None:
        step.act(RemoveCanary())
    candidate = obs.candidate_version
    if candidate is None or obs.stable_version is None or candidate == obs.stable_version or obs.abort_requested:
        return step.done(None)
    if held_abort(step.canary) and candidate == step.canary.version:
        # Aborted by request: this version waits for a resume request; a new candidate starts its own rollout.
        return step.done(None)
    start_rollout(step, candidate, obs.stable_version)
    return step.done(READY_POLL_SECONDS)


def _progress(rollout: Rollout, step: Step) -> Decision:
    obs, canary = step.obs, step.canary
    version = step.version
    if obs.abort_requested:
        stop_traffic(step, "Aborted")
        step.canary.reason = "aborted by the modelpilot.io/abort annotation"
        step.emit("Warning", "RolloutAborted", f"rollout of version {version} aborted; all traffic on stable")
        step.finish_rollout()
        return step.done(None)
    if obs.candidate_version is None or obs.candidate_version == obs.stable_version:
        why = "no candidate any more" if obs.candidate_version is None else "it is now the stable version"
        stop_traffic(step, "Idle")
        step.canary.reason = why
        step.emit("Normal", "RolloutCancelled", f"rollout of version {version} stopped: {why}")
        step.finish_rollout()
        return step.done(None)
    if obs.candidate_version != version:
        step.act(SetWeight(0))
        step.emit("Normal", "RolloutSuperseded", f"version {obs.candidate_version} replaces version {version}")
        step.finish_rollout()
        start_rollout(step, obs.candidate_version, obs.stable_version or "unknown")
        return step.done(READY_POLL_SECONDS)

    index = min(canary.step, len(rollout.steps) - 1)
    target = rollout.steps[index]
    canary.step = index
    if not _canary_ready(step):
        return _wait_for_canary(rollout, step)
    if canary.weight == 0 and not obs.stable_sized:
        # Replica router: the stable track grows for the first step while the canary waits; the canary's
        # first share would overshoot the step's weight if it joined before those pods are Ready.
        canary.reason = f"canary Ready; waiting for the stable track's pods for step {index + 1}"
        step.act(EnsureCanary(version, 0))
        return step.done(READY_POLL_SECONDS)
    if in_shadow_phase(rollout, canary):
        shadowed = shadow_phase(rollout, step)
        if shadowed is not None:
            return shadowed
    if canary.weight != target:
        canary.weight = target
        canary.step_started_at = stamp(obs.now)
        canary.reason = _holding(rollout, index)
        step.act(EnsureCanary(version, target))
        step.emit("Normal", "StepStarted", f"canary Ready: step {index + 1}/{len(rollout.steps)}, weight {target}%")
        return step.hold(rollout.interval_seconds)

    if canary.state == "Paused" and canary.held_by:
        # Paused by request: the weight is held and nothing is analysed until a resume request.
        step.act(EnsureCanary(version, target))
        return step.done(rollout.interval_seconds)

    restarted = _restart_hold(rollout, step, index)
    if restarted is not None:
        return restarted

    hold_start = _holdstart_rollout(canary)
    due = hold_start + timedelta(seconds=rollout.interval_seconds)
    if obs.now < due:
        step.act(EnsureCanary(version, target))
        return step.done((due - obs.now).total_seconds(), due=due)
    result = _fresh_analysis(canary, obs.analysis, hold_start)
    if result is None:
        step.act(EnsureCanary(version, target), RunAnalysis(version, index, target))
        return step.done(0.0)
    return _judge(rollout, step, result)


def _restart_hold(rollout: Rollout, step: Step, index: int) -> Decision | None:
    """The step's hold starts over while its weight is not yet what the traffic gets; None once it is."""
    obs, canary, target = step.obs, step.canary, rollout.steps[index]
    waiting = f"{_holding(rollout, index)}: waiting for its pods to be Ready"
    if obs.router_weight is not None and obs.router_weight != target:
        # The step was recorded but its weight never reached the router (the operator stopped in between):
        # the hold starts now, so the step is analysed on traffic at its own weight.
        canary.step_started_at = stamp(obs.now)
        step.act(EnsureCanary(step.version, target))
        return step.hold(rollout.interval_seconds)
    if not obs.share_settled:
        # Replica router: the step's pods are still starting, so the canary's share is not yet the step's.
        # The hold (and so the analysis) starts once the Ready pods carry it.
        canary.step_started_at = stamp(obs.now)
        canary.reason = waiting
        step.act(EnsureCanary(step.version, target))
        return step.done(READY_POLL_SECONDS)
    if canary.reason == waiting:
        canary.reason = _holding(rollout, index)
    return None


def _holding(rollout: Rollout, index: int) -> str:
    return f"holding step {index + 1}/{len(rollout.steps)} at {rollout.steps[index]}%"


def _canary_ready(step: Step) -> bool:
    return step.obs.canary_ready and step.obs.canary_version_deployed == step.version


def _wait_for_canary(rollout: Rollout, step: Step) -> Decision:
    canary, now = step.canary, step.obs.now
    if canary.weight > 0 or mirrored(canary):
        # It carried traffic (or a mirror of it) and is not Ready any more: none until it is, and the step starts over.
        canary.weight = 0
        end_mirror(canary)
        canary.step_started_at = stamp(now)
        canary.reason = "canary not Ready; weight 0 until it is"
        step.act(SetWeight(0), EnsureCanary(step.version, 0))
        step.emit("Warning", "CanaryNotReady", f"canary of version {step.version} is not Ready; weight set to 0")
        return step.done(READY_POLL_SECONDS)
    timeout = parse_duration(rollout.canary_ready_timeout)
    waited = (now - (parse_stamp(canary.step_started_at) or now)).total_seconds()
    if waited >= timeout:
        reason = f"canary of version {step.version} not Ready within {rollout.canary_ready_timeout}"
        return begin_rollback(step, reason)
    step.act(EnsureCanary(step.version, 0))
    return step.done(min(READY_POLL_SECONDS, timeout - waited))


def _holdstart_rollout(canary: CanaryStatus) -> datetime:
    """When the current hold began: the step's start, or the step's latest analysis if later."""
    start = parse_stamp(canary.step_started_at) or datetime.min.replace(tzinfo=UTC)
    last = canary.last_analysis
    if last is not None and last.step == canary.step and last.weight == canary.weight:
        analysed = parse_stamp(last.time)
        if analysed is not None and analysed > start:
            return analysed
    return start


def _fresh_analysis(canary: CanaryStatus, result: AnalysisResult | None, hold_start: datetime) -> AnalysisResult | None:
    """`result` if it is a new analysis of the current step taken after the hold began, else None."""
    if result is None or result.step != canary.step or result.weight != canary.weight:
        return None
    if result in canary.analyses:
        return None
    taken = parse_stamp(result.time)
    if taken is None or taken < hold_start:
        return None
    return result


def _judge(rollout: Rollout, step: Step, result: AnalysisResult) -> Decision:
    canary = step.canary
    canary.last_analysis = result
    canary.analyses = [*canary.analyses, result][-ANALYSES_KEPT:]
    steps = rollout.steps
    analysis = rollout.analysis
    was_paused = canary.state == "Paused"
    hold = EnsureCanary(step.version, canary.weight)
    if result.verdict == "Inconclusive":
        step.act(hold)
        canary.inconclusive += 1
        if not was_paused and canary.inconclusive >= analysis.inconclusive_limit:
            canary.state = "Paused"
            canary.reason = f"{canary.inconclusive} inconclusive analyses in a row: {result.reason}"
            step.emit("Warning", "RolloutPaused", f"rollout paused at {canary.weight}%: {canary.reason}")
        return step.hold(rollout.interval_seconds)

    canary.inconclusive = 0
    canary.state = "Progressing"
    if result.verdict == "Failed":
        canary.failures += 1
        if canary.failures >= analysis.failure_limit:
            return begin_rollback(step, result.reason)
        canary.reason = f"analysis failed ({canary.failures} of {analysis.failure_limit}): {result.reason}"
        step.act(hold)
        step.emit("Warning", "AnalysisFailed", f"step {canary.step + 1} at {canary.weight}%: {canary.reason}")
        return step.hold(rollout.interval_seconds)
    if was_paused:
        canary.reason = f"analysis conclusive again; step {canary.step + 1} held anew"
        step.act(hold)
        step.emit("Normal", "RolloutResumed", f"rollout resumed at {canary.weight}%: {result.reason}")
        return step.hold(rollout.interval_seconds)
    if canary.step + 1 >= len(steps):
        step.act(hold)
        begin_promotion(step, "every step passed; promoting")
        step.emit("Normal", "PromotionStarted", f"every step passed; promoting version {step.version}")
        return step.done(0.0)
    canary.step += 1
    canary.weight = steps[canary.step]
    canary.step_started_at = stamp(step.obs.now)
    canary.reason = _holding(rollout, canary.step)
    step.act(EnsureCanary(step.version, canary.weight))
    step.emit(
        "Normal",
        "StepStarted",
        f"analysis passed ({result.reason}); step {canary.step + 1}/{len(steps)}, weight {canary.weight}%",
    )
    return step.hold(rollout.interval_seconds)


def _promote(step: Step) -> Decision:
    obs, canary, version = step.obs, step.canary, step.version
    full = 100
    if not canary.registry_written:
        _keep_canary(step, full)
        if obs.stable_version != version or obs.candidate_version == version:
            step.act(PromoteInRegistry(version, canary.replaces, canary.outcome_at or ""))
            return step.done(CONFIRM_POLL_SECONDS)
        canary.registry_written = True
        canary.reason = "registry names the version stable; rolling the stable track"
        step.act(RollStable(version))
        step.emit("Normal", "RegistryPromoted", f"registry's stable pointer now names version {version}")
        return step.done(READY_POLL_SECONDS)
    if obs.stable_version != version:
        stop_traffic(step, "Idle")
        canary.reason = f"stable pointer moved to version {obs.stable_version} during the promotion"
        step.emit("Warning", "RolloutCancelled", f"promotion of version {version} stopped: {canary.reason}")
        step.finish_rollout()
        return step.done(None)
    if not obs.stable_ready:
        _keep_canary(step, full)
        step.act(RollStable(version))
        return step.done(READY_POLL_SECONDS)
    step.act(RollStable(version))
    stop_traffic(step, "Succeeded")
    canary.reason = f"version {version} serves on the stable track"
    step.finish_rollout()
    step.emit("Normal", "Promoted", f"version {version} promoted after {step.duration or 0:.0f}s")
    return step.done(None)


def _keep_canary(step: Step, weight: int) -> None:
    """Keep serving from the canary while the stable track catches up; never from an unready one."""
    ready = _canary_ready(step)
    step.canary.weight = weight if ready else 0
    if ready:
        step.act(EnsureCanary(step.version, weight))
    else:
        step.act(SetWeight(0))


def _roll_back(rollout: Rollout, step: Step) -> Decision:
    obs, canary, version = step.obs, step.canary, step.version
    step.act(SetWeight(0), RemoveCanary())
    if obs.candidate_version == version and not canary.registry_written:
        metric, value = _rejection_evidence(rollout, canary)
        step.act(RejectInRegistry(version, canary.reason or "rolled back", metric, value, canary.outcome_at or ""))
        return step.done(CONFIRM_POLL_SECONDS)
    canary.state = "RolledBack"
    canary.registry_written = True
    step.finish_rollout()
    step.emit("Warning", "RolledBack", f"version {version} rejected: {canary.reason}")
    return step.done(None)


def _rejection_evidence(rollout: Rollout, canary: CanaryStatus) -> tuple[str, float | None]:
    """The metric and value that caused the rollback, recomputed from the status."""
    if canary.shadow is not None and canary.shadow.state == "Failed":
        return SHADOW_AGREEMENT, canary.shadow.agreement
    last = canary.last_analysis
    # Analyses only cause a rollback by reaching failureLimit; below it, readiness did.
    if canary.failures >= rollout.analysis.failure_limit and last is not None:
        broken = violations(rollout.analysis, last.values)
        if broken:
            return broken[0].metric, broken[0].value
        return "analysis", None
    return "canary_ready", parse_duration(rollout.canary_ready_timeout)

"""The decision being built by the rollout machine (`Step`), and the moves the machine and a person's
requests share: start a rollout, record the intent to promote, end the traffic."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from modelpilot.operator.rollout.actions import (
    Action,
    Decision,
    Emit,
    EnsureCanary,
    Observation,
    RemoveCanary,
    SetWeight,
)
from modelpilot.operator.rollout.clock import parse_stamp, stamp, stamp_down
from modelpilot.operator.rollout.requests import Answer, Request
from modelpilot.operator.status import CanaryStatus

READY_POLL_SECONDS = 2.0


@dataclass
class Step:
    """The decision being built: the status changes, then the actions, in order."""

    canary: CanaryStatus
    obs: Observation
    actions: list[Action] = field(default_factory=list)
    duration: float | None = None
    answer: Answer | None = None

    @property
    def version(self) -> str:
        return self.canary.version or ""

    def act(self, *actions: Action) -> None:
        self.actions.extend(actions)

    def emit(
        self, type_: Literal["Normal", "Warning"], reason: str, message: str, request: Request | None = None
    ) -> None:
        by, why = (request.requester, request.reason) if request else (None, None)
        self.actions.append(Emit(type_, reason, message, self.canary.version, by, why))

    def finish_rollout(self) -> None:
        started = parse_stamp(self.canary.started_at)
        self.duration = max((self.obs.now - started).total_seconds(), 0.0) if started else None

    def done(self, requeue_after: float | None, due: datetime | None = None) -> Decision:
        requeue = None if requeue_after is None else max(requeue_after, 0.0)
        return Decision(
            self.canary, tuple(self.actions), requeue, stamp_down(self.obs.now), self.duration, due, self.answer
        )

    def hold(self, seconds: float) -> Decision:
        """Done, and call again when the hold that starts now ends (an analysis falls due)."""
        return self.done(seconds, due=self.obs.now + timedelta(seconds=seconds))


def start_rollout(step: Step, candidate: str, stable: str, request: Request | None = None) -> None:
    now = stamp(step.obs.now)
    step.canary = CanaryStatus(
        version=candidate,
        state="Progressing",
        weight=0,
        step=0,
        started_at=now,
        step_started_at=now,
        reason=f"waiting for the canary of version {candidate} to be Ready",
    )
    step.act(EnsureCanary(candidate, 0))
    why = f"; {request.describe()}" if request else ""
    step.emit(
        "Normal", "RolloutStarted", f"rolling out version {candidate} as a canary (stable is {stable}){why}", request
    )


def begin_promotion(step: Step, reason: str) -> None:
    """Record the intent to promote; the registry is written on the next call (`_promote`)."""
    canary = step.canary
    canary.state = "Promoting"
    canary.registry_written = False
    canary.outcome_at = stamp(step.obs.now)
    canary.replaces = step.obs.stable_version
    canary.reason = reason
    end_mirror(canary)


def begin_rollback(step: Step, reason: str) -> Decision:
    """Record the intent to roll back: weight 0 and the canary goes now, the registry is told next (`_roll_back`)."""
    step.canary.state = "RollingBack"
    step.canary.weight = 0
    step.canary.registry_written = False
    step.canary.outcome_at = stamp(step.obs.now)
    step.canary.reason = reason
    end_mirror(step.canary)
    step.act(SetWeight(0), RemoveCanary())
    step.emit("Warning", "RollbackStarted", f"rolling back version {step.version}: {reason}")
    return step.done(0.0)


def end_mirror(canary: CanaryStatus) -> None:
    """The shadow phase's mirror is off from now on (the phase ended, or the traffic did)."""
    if canary.shadow is not None:
        canary.shadow.mirrored = False


def mirrored(canary: CanaryStatus) -> bool:
    """Whether the router mirrors live traffic to the canary now (its shadow phase)."""
    return canary.shadow is not None and canary.shadow.mirrored


def stop_traffic(step: Step, state: str) -> None:
    """End the rollout's traffic: weight 0 first, then the canary goes."""
    step.canary.state = state
    step.canary.weight = 0
    end_mirror(step.canary)
    step.act(SetWeight(0), RemoveCanary())

"""The status of one ModelDeployment during a reconciliation, and the Events that go with its changes.

Every reconciliation starts from the status it read and ends with at most one write of the status
(only when something changed); the rollout executor writes it earlier, before it acts, so a registry
write is only made when its intent is already recorded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from modelpilot.operator.observe import FAILURE_CAUSES, TrackObservation
from modelpilot.operator.status import (
    ConditionType,
    HistoryEntry,
    ModelDeploymentStatus,
    TrackStatus,
    append_history,
    set_condition,
)

# (type, reason, message) → posts a Kubernetes Event on the resource.
EmitEvent = Callable[[str, str, str], None]
# The status as JSON → writes it (a merge patch of the status subresource).
WriteStatus = Callable[[dict[str, Any]], Awaitable[Any]]
EventType = Literal["Normal", "Warning"]


class Journal:
    """The status being built, what was last written, and the Events of its transitions."""

    def __init__(self, status: dict[str, Any] | None, generation: int, emit: EmitEvent, write: WriteStatus) -> None:
        # Validated twice rather than deep-copied: the validator is native code, a deep copy walks Python objects.
        self.previous = ModelDeploymentStatus.model_validate(status or {})
        self.status = ModelDeploymentStatus.model_validate(status or {})
        self.status.observed_generation = generation
        self.generation = generation
        self._emit = emit
        self._write = write

    def emit(self, kind: str, reason: str, message: str) -> None:
        """Post an Event only (the history entry is written by whoever decided it)."""
        self._emit(kind, reason, message)

    def notify(
        self,
        kind: str,
        reason: str,
        message: str,
        version: str | None = None,
        *,
        requested_by: str | None = None,
        request_reason: str | None = None,
    ) -> None:
        """Record a transition: an Event and a status history entry (with who asked and why, for a request)."""
        entry = HistoryEntry(
            event=reason, version=version, message=message, requested_by=requested_by, request_reason=request_reason
        )
        self.status.history = append_history(self.status.history, entry)
        self._emit(kind, reason, message)

    def condition(self, type_: ConditionType, value: bool | None, reason: str, message: str = "") -> None:
        """Set a condition for this generation."""
        self.status.conditions = set_condition(self.status.conditions, type_, value, reason, message, self.generation)

    def drop_condition(self, type_: ConditionType) -> None:
        """Remove a condition that no longer applies (its part of the spec is gone)."""
        self.status.conditions = [c for c in self.status.conditions if c.type != type_]

    def was(self, type_: ConditionType) -> tuple[str | None, str | None, str | None]:
        """(status, reason, message) of a condition in the status as it was read."""
        found = next((c for c in self.previous.conditions if c.type == type_), None)
        return (None, None, None) if found is None else (found.status, found.reason, found.message)

    async def write(self) -> None:
        """Write the status when it differs from what was read (ignoring condition timestamps)."""
        if _comparable(self.previous) == _comparable(self.status):
            return
        body = _clearing(self.previous.dump(), self.status.dump())
        await self._write(body)
        self.previous = self.status.model_copy(deep=True)

    # -- serving ------------------------------------------------------------------------------

    def record_stable(self, version: str, observation: TrackObservation) -> None:
        """status.stable from an observation; a version change is a transition."""
        before = self.status.stable.version if self.status.stable else None
        self.status.stable = TrackStatus(
            version=version, ready_replicas=observation.ready_with_version, replicas=observation.desired
        )
        if before != version:
            self.notify(
                "Normal", "StableVersionChanged", f"stable track serves version {version} (was {before})", version
            )

    def set_serving_conditions(self, version: str, observation: TrackObservation) -> None:
        """Ready, Progressing and Degraded from what the stable track's pods show."""
        if observation.ready:
            self.status.phase = "Ready"
            self.condition(
                "Ready", True, "Serving", f"version {version} serves on {observation.ready_with_version} ready pod(s)"
            )
            self.condition("Progressing", False, "Stable")
        else:
            self.status.phase = "Progressing"
            message = (
                f"{observation.ready_with_version}/{max(observation.desired, 1)} pod(s) ready with version {version}"
            )
            if observation.ready_with_other_version:
                message += f", {observation.ready_with_other_version} ready with another version"
            self.condition("Ready", False, "PodsNotReady", message)
            self.condition("Progressing", True, "RollingOut", message)
        self.set_pod_failure_condition(observation)

    def set_pod_failure_condition(self, observation: TrackObservation) -> None:
        """Degraded while serving pods cannot start (image, entrypoint, crash loop), with one Event per cause."""
        if not observation.failures:
            self.condition("Degraded", False, "AsExpected")
            return
        message = "; ".join(observation.failures[:3])
        if len(observation.failures) > 3:
            message += f" (and {len(observation.failures) - 3} more pod(s))"
        _, was_reason, was_message = self.was("Degraded")
        self.condition("Degraded", True, "PodsFailing", message)
        # The kubelet's reasons and messages change with every retry; the Event repeats only when what the
        # failures mean changes.
        if was_reason != "PodsFailing" or _failure_causes(was_message or "") != _failure_causes(message):
            self.notify("Warning", "PodsFailing", message)

    def mark_invalid(self, message: str, reason: str = "InvalidSpec") -> None:
        """The spec cannot be acted on (InvalidSpec), or its objects' names are another's (NameConflict): phase
        Invalid, and one Event per distinct problem."""
        _, was_reason, was_message = self.was("Ready")
        self.status.phase = "Invalid"
        self.condition("Ready", False, reason, message)
        self.condition("Degraded", True, reason, message)
        if was_reason != reason or was_message != message:
            self.notify("Warning", reason, message)


def _clearing(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """`after` as a merge patch over `before`: a merge patch keeps keys it does not mention, so each key that
    went away — a section, or a field of one such as `canary.heldBy` — is set to null explicitly."""
    body = dict(after)
    for key, old in before.items():
        if key not in body:
            body[key] = None
        elif isinstance(old, dict) and isinstance(body[key], dict):
            body[key] = _clearing(old, body[key])
    return body


def _comparable(status: ModelDeploymentStatus) -> dict[str, Any]:
    dumped = status.dump()
    for condition in dumped.get("conditions", []):
        condition.pop("lastTransitionTime", None)
    return dumped


def _failure_causes(message: str) -> set[str]:
    """What the container failures named in a PodsFailing message mean, without pods, retries and details."""
    reasons = (part.split(": ")[2] for part in message.split("; ") if part.count(": ") >= 2)
    return {FAILURE_CAUSES.get(reason, reason) for reason in reasons}

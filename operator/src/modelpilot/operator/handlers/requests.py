"""A person's requests (`kubectl modelpilot promote|abort|pause|resume|retrain`) outside the rollout machine.

The machine answers the rollout actions while a rollout is in flight (`rollout.machine`). This module
answers what is left in the same reconciliation — retrain, and a rollout action with no rollout to act
on — and keeps every applied request in the registry, as a tag of the version it concerned, so the
audit trail outlives the resource. The tag is written after the answer is in the status, and again by
the next reconciliation until the status says it was (`status.lastRequest.recorded`); the write is
skipped when the version carries it already, so it reaches the registry once.
"""

from __future__ import annotations

from modelpilot.operator.handlers.journal import Journal
from modelpilot.operator.registry import Registry
from modelpilot.operator.rollout.requests import (
    REQUEST_ACTIONS,
    RETRAIN_ANNOTATION,
    ROLLOUT_ACTIONS,
    Answer,
    Request,
    registry_tag,
)
from modelpilot.operator.spec import ModelDeploymentSpec
from modelpilot.operator.status import now_iso


def answer_request(
    request: Request | None,
    spec: ModelDeploymentSpec,
    journal: Journal,
    annotations: dict[str, str],
    stable_version: str | None,
) -> None:
    """Answer `request` if no decision of this reconciliation did: in the status, an Event and the history."""
    answered = journal.status.last_request
    if request is None or (answered is not None and answered.id == request.id):
        return
    applied, version, event = False, None, "RequestRefused"
    if request.action == "retrain":
        if spec.training is None:
            message = "spec.training is not set: there is nothing to retrain with"
        elif annotations.get(RETRAIN_ANNOTATION) != request.id:
            message = f"retrain needs the {RETRAIN_ANNOTATION} annotation set to the request id (the plugin sets it)"
        else:
            applied, version, event = True, stable_version, "RetrainRequested"
            message = "a training Job is requested (after the one that runs, if any)"
    elif request.action in ROLLOUT_ACTIONS:
        canary = journal.status.canary
        state = canary.state if canary is not None else "Idle"
        message = f"no rollout in flight (it is {state}): {request.action} applies while a rollout runs"
    else:
        message = f"unknown action {request.action!r}: one of {', '.join(REQUEST_ACTIONS)}"
    journal.status.last_request = Answer(request, applied, message, version).to_status(now_iso())
    journal.notify(
        "Normal" if applied else "Warning",
        event,
        f"{request.describe()}: {message}" if not applied else f"{request.describe()}; {message}",
        version,
        requested_by=request.requester,
        request_reason=request.reason,
    )


async def record_request(registry: Registry, model_name: str, journal: Journal) -> None:
    """Tag the version of the last applied request with it, once."""
    last = journal.status.last_request
    if last is None or last.recorded or last.version is None:
        return
    key, value = registry_tag(last)
    version = await registry.get_version(model_name, last.version)
    if version.tags.get(key) != value:
        await registry.set_version_tag(model_name, last.version, key, value)
    last.recorded = True

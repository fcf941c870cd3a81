"""Requests a person makes of a ModelDeployment (`kubectl modelpilot promote|abort|pause|resume|retrain`).

A request is four annotations written together: the action, a fresh id, who asks and why. The id
makes a request handled once: the operator answers it (applied, or refused with why it does not
apply) in `status.lastRequest`, and a request whose id is already there is not new. Who asks is the
requester's Kubernetes user name; the chart's ValidatingAdmissionPolicy refuses a write of these
annotations that names anyone but the user making it, so the name cannot be forged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from modelpilot.operator.status import CanaryStatus, RequestStatus

REQUEST_ANNOTATION = "modelpilot.io/request"
REQUEST_ID_ANNOTATION = "modelpilot.io/request-id"
REQUESTED_BY_ANNOTATION = "modelpilot.io/requested-by"
REQUEST_REASON_ANNOTATION = "modelpilot.io/request-reason"
# The training's own annotation (a new value starts a Job); a retrain request sets it to the request id.
RETRAIN_ANNOTATION = "modelpilot.io/retrain"
REQUEST_ANNOTATIONS = (REQUEST_ANNOTATION, REQUEST_ID_ANNOTATION, REQUESTED_BY_ANNOTATION, REQUEST_REASON_ANNOTATION)

RequestAction = Literal["promote", "abort", "pause", "resume", "retrain"]
REQUEST_ACTIONS: tuple[RequestAction, ...] = ("promote", "abort", "pause", "resume", "retrain")
# The actions the rollout state machine answers; retrain is the training's.
ROLLOUT_ACTIONS = frozenset({"promote", "abort", "pause", "resume"})
# An MLflow tag key may hold letters, digits, `_-./: ` only; ids the plugin makes fit, others are cut down.
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_.:-]")
ID_LIMIT = 64
REASON_LIMIT = 1024
UNKNOWN_REQUESTER = "unknown"


@dataclass(frozen=True)
class Request:
    """One request read from the annotations. `action` is as written: the answer refuses one not in
    REQUEST_ACTIONS."""

    id: str
    action: str
    requested_by: str
    reason: str

    @property
    def requester(self) -> str:
        """Who asked, for messages."""
        return self.requested_by or UNKNOWN_REQUESTER

    def describe(self) -> str:
        """`<action> requested by <user>: <reason>`."""
        why = f": {self.reason}" if self.reason else ""
        return f"{self.action} requested by {self.requester}{why}"


@dataclass(frozen=True)
class Answer:
    """How a request was answered: applied (the rollout changed) or refused, and the version concerned."""

    request: Request
    applied: bool
    message: str
    version: str | None = None

    def to_status(self, time: str) -> RequestStatus:
        """The answer as `status.lastRequest`; a refused request, or one without a version, has nothing to tag."""
        request = self.request
        return RequestStatus(
            id=request.id,
            action=request.action,
            requested_by=request.requested_by or None,
            reason=request.reason,
            time=time,
            outcome="Applied" if self.applied else "Refused",
            message=self.message,
            version=self.version,
            recorded=not self.applied or self.version is None,
        )


def refusal(action: str, canary: CanaryStatus | None) -> str | None:
    """Why a rollout action does not apply to the rollout in `canary`'s state; None when it does.

    promote, abort and pause apply while the rollout carries traffic (Progressing or Paused; pause not
    twice); resume applies while it is Paused, or Aborted by a request (an annotation abort ends when the
    annotation goes)."""
    state = canary.state if canary is not None else "Idle"
    if action not in ROLLOUT_ACTIONS:
        return f"unknown action {action!r}: one of {', '.join(REQUEST_ACTIONS)}"
    if action == "resume":
        if state == "Paused" or (state == "Aborted" and canary is not None and canary.held_by):
            return None
        if state == "Aborted":
            return "the rollout was aborted by the modelpilot.io/abort annotation: remove it to roll out again"
        return f"the rollout is {state}: resume applies while it is Paused, or Aborted by request"
    if state not in ("Progressing", "Paused"):
        return f"the rollout is {state}: {action} applies while it is Progressing or Paused"
    if action == "pause" and canary is not None and canary.held_by:
        return f"the rollout of version {canary.version} is already paused by {canary.held_by}"
    return None


def read_request(annotations: dict[str, str]) -> Request | None:
    """The request the annotations carry, or None when there is none (no action or no id)."""
    action = annotations.get(REQUEST_ANNOTATION, "").strip()
    request_id = _UNSAFE_ID.sub("-", annotations.get(REQUEST_ID_ANNOTATION, "").strip())[:ID_LIMIT]
    if not action or not request_id:
        return None
    return Request(
        id=request_id,
        action=action,
        requested_by=annotations.get(REQUESTED_BY_ANNOTATION, "").strip(),
        reason=annotations.get(REQUEST_REASON_ANNOTATION, "").strip()[:REASON_LIMIT],
    )


def pending_request(annotations: dict[str, str], answered: RequestStatus | None) -> Request | None:
    """The request of the annotations when it has not been answered yet."""
    request = read_request(annotations)
    if request is None or (answered is not None and answered.id == request.id):
        return None
    return request


def registry_tag(status: RequestStatus) -> tuple[str, str]:
    """The (key, value) of the MLflow version tag that keeps an applied request: one key per request, so
    the tags are the version's audit trail, and the value says what, who, why and when."""
    key = f"modelpilot.io/request.{status.id}"
    who = status.requested_by or UNKNOWN_REQUESTER
    why = f": {status.reason}" if status.reason else ""
    return key, f"{status.action} by {who} at {status.time}{why}"

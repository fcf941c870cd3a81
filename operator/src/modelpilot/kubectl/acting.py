"""Acting on a ModelDeployment: one request (action, id, who, why) written as annotations, then the
operator's answer read back from `status.lastRequest`.

The plugin checks first that the action applies in the current state (the operator's own rule,
`rollout.requests.refusal`), so a request that cannot apply is refused at once and nothing is written;
the operator checks again when it answers, since the rollout may move in between.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from modelpilot.kubectl.cluster import Cluster
from modelpilot.kubectl.errors import NoAnswerError, NotApplicableError
from modelpilot.operator.rollout.requests import (
    REQUEST_ANNOTATION,
    REQUEST_ID_ANNOTATION,
    REQUEST_REASON_ANNOTATION,
    REQUESTED_BY_ANNOTATION,
    RETRAIN_ANNOTATION,
    ROLLOUT_ACTIONS,
    refusal,
)
from modelpilot.operator.status import ModelDeploymentStatus, RequestStatus

POLL_SECONDS = 0.5


def new_request_id(now: datetime | None = None) -> str:
    """A request id that sorts by time and does not repeat: `20261130T070102123Z-3f9a1c`."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S}{moment.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def request_annotations(action: str, request_id: str, user: str, reason: str) -> dict[str, str | None]:
    """The annotations of one request; retrain also sets the training's own annotation to the request id."""
    annotations: dict[str, str | None] = {
        REQUEST_ANNOTATION: action,
        REQUEST_ID_ANNOTATION: request_id,
        REQUESTED_BY_ANNOTATION: user,
        REQUEST_REASON_ANNOTATION: reason,
    }
    if action == "retrain":
        annotations[RETRAIN_ANNOTATION] = request_id
    return annotations


def check_applies(action: str, obj: dict[str, Any]) -> None:
    """Raise NotApplicableError when `action` cannot apply to the ModelDeployment as it is now."""
    name = obj["metadata"]["name"]
    status = ModelDeploymentStatus.model_validate(obj.get("status") or {})
    spec = obj.get("spec") or {}
    if action == "retrain":
        if not spec.get("training"):
            raise NotApplicableError(f"cannot retrain {name}: its spec has no training section")
        return
    if action in ROLLOUT_ACTIONS and not spec.get("rollout") and status.canary is None:
        raise NotApplicableError(f"cannot {action} {name}: its spec has no rollout section")
    why = refusal(action, status.canary)
    if why is not None:
        raise NotApplicableError(f"cannot {action} {name}: {why}")


def make_request(
    cluster: Cluster,
    name: str,
    action: str,
    reason: str,
    *,
    wait_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RequestStatus | None:
    """Check, write the request signed with the caller's user name, and wait for the operator's answer
    (None when not waiting). The answer may still be a refusal: the rollout may have moved meanwhile."""
    check_applies(action, cluster.get(name))
    user = cluster.whoami()
    request_id = new_request_id()
    cluster.annotate(name, request_annotations(action, request_id, user, reason))
    if wait_seconds <= 0:
        return None
    deadline = clock() + wait_seconds
    while True:
        status = ModelDeploymentStatus.model_validate(cluster.get(name).get("status") or {})
        answered = status.last_request
        if answered is not None and answered.id == request_id:
            return answered
        if clock() >= deadline:
            raise NoAnswerError(
                f"{action} requested (id {request_id}) but the operator did not answer within {wait_seconds:.0f}s: "
                "is it running? `kubectl modelpilot status` shows the answer when it comes"
            )
        sleep(POLL_SECONDS)

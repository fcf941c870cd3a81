"""What the dashboard shows about ModelDeployments: plain JSON documents made from the objects alone.

Pure functions of the objects (and the time now), so what a person sees is tested without a cluster or a
browser. Everything is data; the page puts each string into the document as text, never as markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from modelpilot.kubectl.screen import BUILT_IN_VALUES, age, status_of, time_left
from modelpilot.operator.rollout.clock import parse_stamp
from modelpilot.operator.status import CanaryStatus, HistoryEntry, ModelDeploymentStatus

ACTIVE_STATES = ("Progressing", "Paused", "Promoting", "RollingBack")
# History entries about training, shown with the training runs.
TRAINING_EVENTS = (
    "TrainingStarted",
    "TrainingSucceeded",
    "TrainingFailed",
    "TrainingEngineMissing",
    "RetrainRequested",
)


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj.get("spec") or {})


def _steps(obj: dict[str, Any]) -> list[int]:
    return [int(step) for step in (_spec(obj).get("rollout") or {}).get("steps") or []]


def _active(canary: CanaryStatus | None) -> bool:
    return canary is not None and canary.state in ACTIVE_STATES


def summary(obj: dict[str, Any], now: datetime) -> dict[str, Any]:
    """One row of the list: name, model, versions, the canary's weight and step, phase, drift, age."""
    meta, status = obj["metadata"], status_of(obj)
    canary = status.canary if _active(status.canary) else None
    created = parse_stamp(meta.get("creationTimestamp"))
    steps = _steps(obj)
    return {
        "namespace": meta["namespace"],
        "name": meta["name"],
        "model": (_spec(obj).get("model") or {}).get("name", ""),
        "stable": status.stable.version if status.stable else None,
        "canary": canary.version if canary else None,
        "weight": canary.effective_weight if canary else None,
        "step": f"{min(canary.step, len(steps) - 1) + 1}/{len(steps)}" if canary and steps else None,
        "rollout": status.canary.state if status.canary else None,
        "phase": status.phase,
        "drift": status.drift.state if status.drift else None,
        "training": status.training.result if status.training else None,
        "age": age(now - created) if created else None,
    }


def rollout_view(obj: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The rollout over time: the canary's weight at each recorded moment, and each analysis with its numbers."""
    status = status_of(obj)
    canary = status.canary
    if canary is None:
        return {"state": None, "weights": [], "analyses": [], "metrics": [], "steps": _steps(obj)}
    analyses = [result.dump() for result in canary.analyses]
    step_left, total_left = time_left(obj, canary, now)
    return {
        "state": canary.state,
        "version": canary.version,
        "stableVersion": status.stable.version if status.stable else None,
        "steps": _steps(obj),
        "step": canary.step,
        "weight": canary.weight,
        "effectiveWeight": canary.effective_weight,
        "weightMessage": canary.weight_message,
        "startedAt": canary.started_at,
        "reason": canary.reason,
        "heldBy": canary.held_by,
        "failures": canary.failures,
        "inconclusive": canary.inconclusive,
        "nextAnalysisSeconds": step_left,
        "promotionSeconds": total_left,
        "weights": weight_points(canary, status.history),
        "analyses": analyses,
        "metrics": metric_names(analyses),
    }


def weight_points(canary: CanaryStatus, history: Sequence[HistoryEntry]) -> list[dict[str, Any]]:
    """(time, weight) of the canary, oldest first: 0 when the rollout started, the weight of each analysis,
    the current step's weight since it took effect, and 0 or 100 where the rollout ended."""
    points: dict[str, int] = {}
    if canary.started_at:
        points[canary.started_at] = 0
    for result in canary.analyses:
        points[result.time] = result.weight
    if canary.step_started_at and canary.weight:
        points.setdefault(canary.step_started_at, canary.weight)
    ended = {"Promoted": 100, "RolledBack": 0, "RolloutAborted": 0, "RolloutCancelled": 0, "RolloutSuperseded": 0}
    started = parse_stamp(canary.started_at)
    for entry in history:
        moment = parse_stamp(entry.time)
        if entry.event in ended and (started is None or (moment is not None and moment >= started)):
            points[entry.time] = ended[entry.event]
    ordered = sorted(points.items(), key=lambda item: parse_stamp(item[0]) or datetime.min.replace(tzinfo=UTC))
    return [{"time": time, "weight": weight} for time, weight in ordered]


def metric_names(analyses: Sequence[dict[str, Any]]) -> list[str]:
    """The measured values of the analyses, the built-in ones first, then custom metrics by name."""
    found = {key for result in analyses for key in result.get("values") or {}}
    return [key for key in BUILT_IN_VALUES if key in found] + sorted(found - set(BUILT_IN_VALUES))


def drift_view(status: ModelDeploymentStatus) -> dict[str, Any] | None:
    """The drift of the served inputs: the state and each scored feature's score against the threshold."""
    drift = status.drift
    if drift is None:
        return None
    over = set(drift.features)
    features = [
        {
            "feature": name,
            "score": score,
            "over": name in over or (drift.threshold is not None and score > drift.threshold),
        }
        for name, score in sorted(drift.scores.items(), key=lambda item: -item[1])
    ]
    # Features named over the threshold without a recorded score (a status written before scores were kept).
    features += [{"feature": name, "score": None, "over": True} for name in drift.features if name not in drift.scores]
    return {**drift.dump(), "featureScores": features}


def training_view(status: ModelDeploymentStatus) -> dict[str, Any]:
    """The latest training Job and the training runs the history remembers, newest first."""
    runs = [entry.dump() for entry in reversed(status.history) if entry.event in TRAINING_EVENTS]
    return {"latest": status.training.dump() if status.training else None, "history": runs}


def detail(obj: dict[str, Any], events: Sequence[Any], now: datetime) -> dict[str, Any]:
    """Everything the page of one ModelDeployment shows."""
    status = status_of(obj)
    spec = _spec(obj)
    return {
        "summary": summary(obj, now),
        "spec": {
            "model": spec.get("model") or {},
            "rollout": spec.get("rollout") or {},
            "monitoring": spec.get("monitoring") or {},
            "training": bool(spec.get("training")),
        },
        "conditions": [condition.dump() for condition in status.conditions],
        "rollout": rollout_view(obj, now),
        "drift": drift_view(status),
        "training": training_view(status),
        "history": [entry.dump() for entry in reversed(status.history)],
        "lastRequest": status.last_request.dump() if status.last_request else None,
        "events": [_event(event) for event in reversed(list(events))],
    }


def _event(event: Any) -> dict[str, Any]:
    moment = event.last_timestamp or event.event_time or event.first_timestamp
    return {
        "time": moment.isoformat() if moment else None,
        "type": event.type or "",
        "reason": event.reason or "",
        "message": event.message or "",
        "count": event.count or 1,
    }

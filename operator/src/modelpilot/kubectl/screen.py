"""What the plugin prints for people: tables and the one-screen status of a ModelDeployment.

Pure functions from the objects (and the time now) to text, so what a person sees is tested without
a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from modelpilot.operator.rollout.clock import parse_stamp
from modelpilot.operator.spec import parse_duration
from modelpilot.operator.status import AnalysisResult, CanaryStatus, HistoryEntry, ModelDeploymentStatus

ANALYSES_SHOWN = 5
HISTORY_SHOWN = 10
EVENTS_SHOWN = 8
# Values of an analysis shown first, in this order; custom metrics follow by name.
BUILT_IN_VALUES = ("request_count", "error_rate", "p99_latency_seconds")
# Shown after those when an analysis measured them (minAccuracy, minPrecision, minRecall).
QUALITY_VALUES = ("labelled_predictions", "accuracy", "precision", "recall")
LIST_HEADERS = ["NAME", "MODEL", "STABLE", "CANARY", "WEIGHT", "STEP", "PHASE", "AGE"]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, as kubectl prints them."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "   ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)) for row in [headers, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def age(delta: timedelta) -> str:
    """A duration the way kubectl shows ages: 42s, 5m, 3h, 2d."""
    seconds = max(int(delta.total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def status_of(obj: dict[str, Any]) -> ModelDeploymentStatus:
    """The object's status as the operator's model reads it."""
    return ModelDeploymentStatus.model_validate(obj.get("status") or {})


def list_rows(objs: Sequence[dict[str, Any]], now: datetime, all_namespaces: bool) -> str:
    """The `list` table; with every namespace, a NAMESPACE column first."""
    rows = []
    for obj in objs:
        status, meta = status_of(obj), obj["metadata"]
        canary = status.canary
        active = canary is not None and canary.state in ("Progressing", "Paused", "Promoting", "RollingBack")
        created = parse_stamp(meta.get("creationTimestamp"))
        row = [
            meta["name"],
            ((obj.get("spec") or {}).get("model") or {}).get("name", ""),
            (status.stable.version if status.stable else None) or "-",
            (canary.version if canary is not None and active else None) or "-",
            f"{canary.effective_weight}%" if canary is not None and active else "-",
            _step_cell(obj, canary) if active else "-",
            status.phase or "-",
            age(now - created) if created else "-",
        ]
        rows.append([meta["namespace"], *row] if all_namespaces else row)
    headers = ["NAMESPACE", *LIST_HEADERS] if all_namespaces else LIST_HEADERS
    return table(headers, rows)


def _steps(obj: dict[str, Any]) -> list[int]:
    rollout = (obj.get("spec") or {}).get("rollout") or {}
    return [int(step) for step in rollout.get("steps") or []]


def _interval(obj: dict[str, Any]) -> float | None:
    rollout = (obj.get("spec") or {}).get("rollout") or {}
    try:
        return parse_duration(str(rollout.get("interval", "60s")))
    except ValueError:
        return None


def _step_cell(obj: dict[str, Any], canary: CanaryStatus | None) -> str:
    steps = _steps(obj)
    if canary is None or not steps:
        return "-"
    return f"{min(canary.step, len(steps) - 1) + 1}/{len(steps)}"


def time_left(obj: dict[str, Any], canary: CanaryStatus, now: datetime) -> tuple[float | None, float | None]:
    """(seconds until the current step's analysis, seconds until the last step's analysis if every one passes);
    None where it cannot be told (no weight yet, no interval, held by a person)."""
    interval, steps = _interval(obj), _steps(obj)
    if canary.state != "Progressing" or not canary.weight or interval is None or not steps:
        return None, None
    start = parse_stamp(canary.step_started_at)
    last = canary.last_analysis
    if last is not None and last.step == canary.step and last.weight == canary.weight:
        analysed = parse_stamp(last.time)
        if analysed is not None and (start is None or analysed > start):
            start = analysed
    if start is None:
        return None, None
    step_left = max((start + timedelta(seconds=interval) - now).total_seconds(), 0.0)
    remaining_steps = max(len(steps) - 1 - canary.step, 0)
    return step_left, step_left + remaining_steps * interval


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return age(timedelta(seconds=round(value)))


def analysis_rows(analyses: Sequence[AnalysisResult]) -> str:
    """The last analyses with their numbers, newest last."""
    shown = list(analyses)[-ANALYSES_SHOWN:]
    measured = {key for result in shown for key in result.values}
    quality = [key for key in QUALITY_VALUES if key in measured]
    custom = sorted(measured - set(BUILT_IN_VALUES) - set(QUALITY_VALUES))
    keys = [*BUILT_IN_VALUES, *quality, *custom]
    headers = ["TIME", "STEP", "WEIGHT", "VERDICT", *(key.upper() for key in keys), "REASON"]
    rows = [
        [
            result.time,
            str(result.step + 1),
            f"{result.weight}%",
            result.verdict,
            *(_number(result.values.get(key)) for key in keys),
            result.reason,
        ]
        for result in shown
    ]
    return table(headers, rows)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def history_rows(entries: Sequence[HistoryEntry]) -> str:
    """Status history, newest last, with who asked when a person's request caused the entry."""
    rows = [
        [
            entry.time,
            entry.event,
            entry.version or "-",
            entry.requested_by or "-",
            entry.message + (f" (why: {entry.request_reason})" if entry.request_reason else ""),
        ]
        for entry in entries
    ]
    return table(["TIME", "EVENT", "VERSION", "BY", "MESSAGE"], rows)


def status_screen(obj: dict[str, Any], events: Sequence[Any], now: datetime) -> str:
    """One screen: versions, weights, current step and time left, the last analyses with their numbers,
    drift, training, the last request and the history."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    status = status_of(obj)
    model = spec.get("model") or {}
    pointers = model.get("alias") or model.get("stage") or "?"
    candidate = model.get("candidateAlias") or model.get("candidateStage")
    lines = [
        f"Name:         {meta['name']}",
        f"Namespace:    {meta['namespace']}",
        f"Model:        {model.get('name', '?')} (stable: {pointers}"
        + (f", candidate: {candidate})" if candidate else ")"),
        f"Phase:        {status.phase or '-'}",
    ]
    stable = status.stable
    if stable is not None:
        lines.append(
            f"Stable:       version {stable.version or '-'}, {stable.ready_replicas}/{stable.replicas} pods ready"
        )
    canary = status.canary
    if canary is not None and canary.version:
        lines += _canary_lines(obj, canary, now)
    lines += _drift_lines(status)
    lines += _training_lines(status)
    request = status.last_request
    if request is not None:
        lines.append(
            f"Last request: {request.action} by {request.requested_by or 'unknown'} at {request.time}: "
            f"{request.outcome}, {request.message}" + (f" (why: {request.reason})" if request.reason else "")
        )
    conditions = [f"{c.type}={c.status}" + (f" ({c.reason})" if c.reason else "") for c in status.conditions]
    if conditions:
        lines.append(f"Conditions:   {', '.join(conditions)}")
    if canary is not None and canary.analyses:
        lines += ["", "Analyses:", _indent(analysis_rows(canary.analyses))]
    if status.history:
        lines += ["", "History:", _indent(history_rows(status.history[-HISTORY_SHOWN:]))]
    if events:
        lines += ["", "Events:", _indent(_event_rows(events[-EVENTS_SHOWN:], now))]
    return "\n".join(lines)


def _canary_lines(obj: dict[str, Any], canary: CanaryStatus, now: datetime) -> list[str]:
    steps = _steps(obj)
    lines = [
        f"Canary:       version {canary.version}, {canary.ready_replicas}/{canary.replicas} pods ready",
        f"Rollout:      {canary.state}"
        + (f", step {_step_cell(obj, canary)} ({', '.join(f'{w}%' for w in steps)})" if steps else ""),
        f"Weight:       {canary.effective_weight}% on the canary now (the step asks {canary.weight}%)",
    ]
    if canary.weight_message:
        lines.append(f"              {canary.weight_message}")
    step_left, total_left = time_left(obj, canary, now)
    if step_left is not None:
        lines.append(
            f"Time left:    next analysis in {_seconds(step_left)}, promotion in {_seconds(total_left)} at best"
        )
    limits = ((obj.get("spec") or {}).get("rollout") or {}).get("analysis") or {}
    lines.append(
        f"Analyses:     {canary.failures}/{limits.get('failureLimit', 2)} failed, "
        f"{canary.inconclusive}/{limits.get('inconclusiveLimit', 10)} inconclusive in a row"
    )
    lines += shadow_lines(obj, canary, now)
    if canary.held_by:
        lines.append(f"Held by:      {canary.held_by} (resume with `kubectl modelpilot resume`)")
    if canary.reason:
        lines.append(f"Reason:       {canary.reason}")
    return lines


def shadow_lines(obj: dict[str, Any], canary: CanaryStatus, now: datetime) -> list[str]:
    """The shadow phase with its numbers against the spec's thresholds, once it began."""
    shadow = canary.shadow
    if shadow is None:
        return []
    settings = ((obj.get("spec") or {}).get("rollout") or {}).get("shadow") or {}
    agreement = "-" if shadow.agreement is None else f"{shadow.agreement:.4g}"
    mirror = "mirroring live traffic now" if shadow.mirrored else "no mirror now"
    since, interval = parse_stamp(shadow.checked_at or shadow.started_at), _interval(obj)
    if shadow.mirrored and since is not None and interval is not None:
        mirror += f", next count in {_seconds(max((since - now).total_seconds() + interval, 0.0))}"
    return [
        f"Shadow:       {shadow.state} since {shadow.started_at or '-'}, {mirror}",
        f"              {shadow.comparisons}/{settings.get('minComparisons', 200)} comparisons, "
        f"{shadow.agreed} agreed, agreement {agreement} (min {settings.get('minAgreement', 0.95):g}), "
        f"maxDuration {settings.get('maxDuration', '30m')}",
        *([f"              {shadow.reason}"] if shadow.reason else []),
    ]


def _drift_lines(status: ModelDeploymentStatus) -> list[str]:
    drift = status.drift
    if drift is None:
        return []
    score = "-" if drift.score is None else f"{drift.score:.3g}"
    threshold = "-" if drift.threshold is None else f"{drift.threshold:.3g}"
    line = f"Drift:        {drift.state} ({drift.method} {score} / {threshold}, version {drift.version or '-'})"
    if drift.features:
        line += f", features: {', '.join(drift.features)}"
    return [line, *([f"              {drift.reason}"] if drift.reason else [])]


def _training_lines(status: ModelDeploymentStatus) -> list[str]:
    training = status.training
    if training is None or training.job is None:
        return []
    parts = [f"Job {training.job}", training.result or "-", f"trigger {training.trigger or '-'}"]
    if training.run_id:
        parts.append(f"run {training.run_id}")
    if training.version:
        parts.append(f"registered version {training.version}")
    return [f"Training:     {', '.join(parts)}", *([f"              {training.message}"] if training.message else [])]


def _event_rows(events: Sequence[Any], now: datetime) -> str:
    rows = []
    for event in events:
        moment = event.last_timestamp or event.event_time or event.first_timestamp
        rows.append([age(now - moment) if moment else "-", event.type or "", event.reason or "", event.message or ""])
    return table(["AGE", "TYPE", "REASON", "MESSAGE"], rows)


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())

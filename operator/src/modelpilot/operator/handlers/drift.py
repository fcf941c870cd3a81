"""Drift of the stable track's served inputs from the training reference (monitoring.drift).

At most every quarter of the window (and every five minutes), the served counts per reference bin over
the window and the reference shares are read from Prometheus (`analysis.read_drift_bins`) and scored
(`drift.judge`). The outcome is `status.drift` (state, score, the features over the threshold, each feature's
score, since when), the `Drifted` condition, an Event when a drift episode starts and when it ends, and the
`modelpilot_operator_drift_score` gauge. Too few served values, no reference bins or no Prometheus leave
the state Unknown, never Drifted. A retraining on drift is decided with the training
(`handlers.training.wanted_trigger`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from modelpilot.operator import metrics
from modelpilot.operator.analysis import DriftBins, read_drift_bins
from modelpilot.operator.drift import DriftVerdict, judge
from modelpilot.operator.handlers.journal import Journal
from modelpilot.operator.rollout.clock import parse_stamp, stamp_down
from modelpilot.operator.rollout.queries import QueryTarget
from modelpilot.operator.spec import ModelDeploymentSpec, parse_duration
from modelpilot.operator.status import DriftStatus

EVALUATE_AT_MOST_EVERY_SECONDS = 300.0
SHOWN_FEATURES = 10
ReadBins = Callable[[str, QueryTarget, str], Awaitable[DriftBins | str]]


async def watch_drift(
    spec: ModelDeploymentSpec,
    namespace: str,
    name: str,
    stable_version: str,
    journal: Journal,
    *,
    read_bins: ReadBins = read_drift_bins,
    now: datetime | None = None,
) -> None:
    """Evaluate drift when it is due and record the outcome in the journal."""
    watch, prometheus = spec.monitoring.drift, spec.drift_prometheus
    if watch is None or prometheus is None:
        journal.status.drift = None
        journal.drop_condition("Drifted")
        return
    moment = now or datetime.now(UTC)
    previous = journal.status.drift or DriftStatus()
    window = parse_duration(watch.window)
    every = min(window / 4, EVALUATE_AT_MOST_EVERY_SECONDS)
    evaluated = parse_stamp(previous.evaluated_at)
    if previous.version == stable_version and evaluated is not None and (moment - evaluated).total_seconds() < every:
        return
    target = QueryTarget(spec.model.name, "stable", stable_version, namespace)
    bins = await read_bins(prometheus, target, watch.window)
    state, reason, verdict = _outcome(bins, watch.method, watch.threshold, watch.min_inputs, watch.window)
    stamp = stamp_down(moment)
    changed = state != previous.state or previous.version != stable_version
    journal.status.drift = DriftStatus(
        state=state,
        method=watch.method,
        version=stable_version,
        score=verdict.score if verdict is not None else None,
        threshold=watch.threshold,
        features=list(verdict.drifted[:SHOWN_FEATURES]) if verdict is not None else [],
        scores=_scores(verdict),
        inputs=min((f.served for f in verdict.features if f.score is not None), default=0) if verdict else 0,
        reason=reason,
        since=stamp if changed or previous.since is None else previous.since,
        evaluated_at=stamp,
        retrained_for=previous.retrained_for,
        retrained_at=previous.retrained_at,
    )
    score = journal.status.drift.score
    metrics.DRIFT_SCORE.labels(namespace, name, watch.method).set(math.nan if score is None else score)
    metrics.DRIFT_THRESHOLD.labels(namespace, name, watch.method).set(watch.threshold)
    journal.condition(
        "Drifted",
        {"Drifted": True, "NotDrifted": False}.get(state),
        {"Unknown": "DriftUnknown"}.get(state, state),
        reason,
    )
    # Events for an episode's start and its end (cleared, or no longer measurable), not for a first score.
    if changed and (state == "Drifted" or previous.state == "Drifted"):
        kind = "Warning" if state == "Drifted" else "Normal"
        event = {"Drifted": "DriftDetected", "NotDrifted": "DriftCleared"}.get(state, "DriftUnknown")
        journal.notify(kind, event, reason, stable_version)


def _scores(verdict: DriftVerdict | None) -> dict[str, float]:
    """Each scored feature's score, rounded to what a person reads (and the status stays small)."""
    if verdict is None:
        return {}
    return {f.feature: round(f.score, 6) for f in verdict.features if f.score is not None and math.isfinite(f.score)}


def _outcome(
    bins: DriftBins | str, method: str, threshold: float, min_inputs: int, window: str
) -> tuple[str, str, DriftVerdict | None]:
    if isinstance(bins, str):
        return "Unknown", bins, None
    if not bins.reference:
        return "Unknown", "no reference bins: the serving pods export them only for a model whose run logged one", None
    verdict = judge("ks" if method == "ks" else "psi", threshold, bins.reference, bins.served, min_inputs)
    if not verdict.known:
        return "Unknown", f"fewer than minInputs {min_inputs} served values of any feature in {window}", verdict
    if verdict.drifted:
        worst = ", ".join(
            f"{f.feature} {f.score:.3g}"
            for f in sorted(verdict.features, key=lambda f: -(f.score or 0.0))[:3]
            if f.score
        )
        return "Drifted", f"{len(verdict.drifted)} feature(s) over {method} {threshold:g} in {window}: {worst}", verdict
    return "NotDrifted", f"largest {method} {verdict.score:.3g} <= {threshold:g} in {window}", verdict

"""How soon drift is detected after the input distribution changes, and how often steady traffic is
called drifted, for a window and a traffic rate.

Offline and seeded: the training generator's reference (`training.reference.reference_statistics` of
20,000 rows), served rows counted into its bins by the server's own `FeatureReference.count`, one count
vector per minute, and the operator's own `drift.judge` over the sum of the last `window` minutes,
evaluated at the operator's cadence (every quarter window, at most every 5 minutes). It leaves out what
Prometheus adds (scrape interval, `increase()` extrapolation at the window's edges), so real delays are
these plus up to one scrape and one evaluation interval. Bounded: it stops after `--hours` of simulated
steady traffic and `--after` minutes of drifted traffic per drift level.

    python -m benchmarks.drift_detection --rows-per-minute 1200 --windows 1h 15m 1m --drifts 0.25 0.5 1 1.5
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modelpilot.inference.reference import FeatureReference, parse_reference
from modelpilot.operator.drift import judge
from modelpilot.operator.handlers.drift import EVALUATE_AT_MOST_EVERY_SECONDS
from modelpilot.operator.spec import parse_duration
from modelpilot.training.data import FEATURES, generate_flows
from modelpilot.training.reference import reference_statistics

REFERENCE_ROWS, REFERENCE_SEED = 20_000, 7


@dataclass(frozen=True)
class Detection:
    window: str
    drift: float
    evaluations_steady: int
    false_positives: int  # steady evaluations with at least one feature over the threshold
    worst_steady_score: float
    delay_minutes: int | None  # first drifted evaluation after the change (None: not within --after)
    drifted_features: int


def references() -> dict[str, FeatureReference]:
    frame = generate_flows(REFERENCE_ROWS, seed=REFERENCE_SEED)
    document = reference_statistics(frame, FEATURES)
    return parse_reference(json.dumps(document).encode(), tuple(FEATURES))


Counts = dict[str, np.ndarray[Any, Any]]


def minute_counts(refs: dict[str, FeatureReference], rows: int, seed: int, drift: float) -> Counts:
    frame = generate_flows(rows, seed=seed, drift=drift)
    return {name: ref.count(frame[name].to_numpy()) for name, ref in refs.items()}


def reference_shares(refs: dict[str, FeatureReference]) -> dict[str, list[float]]:
    """The shares the server exports, in bin order: below, the training bins, above."""
    return {name: [0.0, *ref.shares, 0.0] for name, ref in refs.items()}


def measure(
    refs: dict[str, FeatureReference],
    window: str,
    drifts: Sequence[float],
    *,
    rows_per_minute: int,
    steady_hours: float,
    after_minutes: int,
    threshold: float,
    min_inputs: int,
    method: str,
) -> list[Detection]:
    window_minutes = max(1, round(parse_duration(window) / 60))
    every = max(1, round(min(parse_duration(window) / 4, EVALUATE_AT_MOST_EVERY_SECONDS) / 60))
    shares = reference_shares(refs)
    steady = [minute_counts(refs, rows_per_minute, seed=1000 + m, drift=0.0) for m in range(int(steady_hours * 60))]

    def verdict(history: list[Counts], end: int) -> tuple[int, float]:
        span = history[max(0, end - window_minutes) : end]
        served = {name: [float(v) for v in np.sum([m[name] for m in span], axis=0)] for name in refs}
        result = judge("ks" if method == "ks" else "psi", threshold, shares, served, min_inputs)
        return len(result.drifted), result.score or 0.0

    false_positives = evaluations = 0
    worst = 0.0
    for end in range(window_minutes, len(steady) + 1, every):
        drifted, score = verdict(steady, end)
        evaluations += 1
        false_positives += drifted > 0
        worst = max(worst, score)
    results = []
    for drift in drifts:
        history = list(steady)
        delay: int | None = None
        features = 0
        for minute in range(1, after_minutes + 1):
            history.append(minute_counts(refs, rows_per_minute, seed=50_000 + minute, drift=drift))
            if minute % every:
                continue
            drifted, _ = verdict(history, len(history))
            if drifted:
                delay, features = minute, drifted
                break
        results.append(Detection(window, drift, evaluations, false_positives, round(worst, 4), delay, features))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows-per-minute", type=int, default=1200, help="served rows a minute (20/s of 1 row)")
    parser.add_argument("--windows", nargs="+", default=["1h", "15m", "1m"])
    parser.add_argument("--drifts", nargs="+", type=float, default=[0.25, 0.5, 1.0, 1.5])
    parser.add_argument("--hours", type=float, default=24.0, help="simulated steady traffic for false positives")
    parser.add_argument("--after", type=int, default=180, help="minutes of drifted traffic to wait for detection")
    parser.add_argument("--threshold", type=float, default=0.2)
    parser.add_argument("--min-inputs", type=int, default=200)
    parser.add_argument("--method", choices=["psi", "ks"], default="psi")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    refs = references()
    rows: list[Detection] = []
    for window in args.windows:
        rows += measure(
            refs,
            window,
            args.drifts,
            rows_per_minute=args.rows_per_minute,
            steady_hours=args.hours,
            after_minutes=args.after,
            threshold=args.threshold,
            min_inputs=args.min_inputs,
            method=args.method,
        )
    print(f"{args.method} > {args.threshold}, {args.rows_per_minute} rows/min, {args.hours:g} h steady, seeded")
    print("| window | drift | steady evaluations | false positives | worst steady score | delay (min) | features |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        delay = "—" if row.delay_minutes is None else str(row.delay_minutes)
        print(
            f"| {row.window} | {row.drift:g} | {row.evaluations_steady} | {row.false_positives} | "
            f"{row.worst_steady_score} | {delay} | {row.drifted_features} |"
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(row) for row in rows], out, indent=2)


if __name__ == "__main__":
    main()

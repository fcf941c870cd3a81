"""The quality gate: a pure decision on holdout predictions, no I/O.

A candidate passes when every check passes:
- floor: its holdout AUC is at least `min_auc` (the only performance bar while there is no champion);
- champion: with a champion, its AUC on the same holdout is not below the champion's by more than
  `auc_tolerance`;
- stability: retrained with other seeds, the AUCs spread by at most `max_seed_spread`;
- segments: in each segment of the holdout (rows sharing a categorical feature value, with enough
  rows of both classes) its AUC is not below the champion's there by more than `max_segment_gap`, or,
  without a champion, not below its own overall AUC by more than that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from modelpilot.training.metrics import roc_auc


@dataclass(frozen=True)
class GateConfig:
    """Tolerances of the quality gate."""

    min_auc: float = 0.7
    auc_tolerance: float = 0.01
    max_seed_spread: float = 0.03
    max_segment_gap: float = 0.1
    min_segment_rows: int = 50
    min_segment_class_rows: int = 5


@dataclass(frozen=True)
class Holdout:
    """The labelled rows every model is judged on, with the segment of each row."""

    labels: NDArray[np.int64]
    segments: NDArray[np.floating]
    segment_name: str


@dataclass(frozen=True)
class Check:
    """One check of the gate and what it found."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateDecision:
    """The outcome: passed when every check passed; `reason` sums up the checks that decided it."""

    passed: bool
    checks: tuple[Check, ...]

    @property
    def reason(self) -> str:
        """The failed checks' details, or all details when everything passed."""
        failed = [check.detail for check in self.checks if not check.passed]
        return "; ".join(failed or [check.detail for check in self.checks])


def segment_aucs(holdout: Holdout, attack_probability: NDArray[np.floating], config: GateConfig) -> dict[str, float]:
    """AUC per segment value, for segments large enough for an AUC to mean something."""
    result: dict[str, float] = {}
    for value in np.unique(holdout.segments):
        rows = holdout.segments == value
        labels = holdout.labels[rows]
        positives = int(labels.sum())
        if (
            rows.sum() < config.min_segment_rows
            or min(positives, labels.size - positives) < config.min_segment_class_rows
        ):
            continue
        result[f"{holdout.segment_name}={value:g}"] = roc_auc(labels, attack_probability[rows])
    return result


def decide(
    holdout: Holdout,
    candidate: NDArray[np.floating],
    champion: NDArray[np.floating] | None,
    seed_aucs: list[float],
    config: GateConfig,
    champion_label: str = "champion",
) -> GateDecision:
    """Judge the candidate's attack probabilities on the holdout against the floor, the champion's, and its seeds."""
    candidate_auc = roc_auc(holdout.labels, candidate)
    checks = [
        Check(
            "floor",
            math.isfinite(candidate_auc) and candidate_auc >= config.min_auc,
            f"auc {candidate_auc:.4f} {'>=' if candidate_auc >= config.min_auc else '<'} floor {config.min_auc:.4f}",
        )
    ]
    candidate_segments = segment_aucs(holdout, candidate, config)
    if champion is not None:
        champion_auc = roc_auc(holdout.labels, champion)
        bar = champion_auc - config.auc_tolerance
        checks.append(
            Check(
                "champion",
                candidate_auc >= bar,
                f"auc {candidate_auc:.4f} {'>=' if candidate_auc >= bar else '<'} {champion_label} "
                f"{champion_auc:.4f} - tolerance {config.auc_tolerance:.4f}",
            )
        )
        baseline = segment_aucs(holdout, champion, config)
        reference = f"{champion_label}'s"
    else:
        baseline = dict.fromkeys(candidate_segments, candidate_auc)
        reference = "overall"

    if len(seed_aucs) > 1:
        spread = max(seed_aucs) - min(seed_aucs)
        stable = all(math.isfinite(auc) for auc in seed_aucs) and spread <= config.max_seed_spread
        checks.append(
            Check(
                "stability",
                stable,
                f"auc spread over {len(seed_aucs)} seeds {spread:.4f} "
                f"{'<=' if stable else '>'} {config.max_seed_spread:.4f}",
            )
        )

    gaps = {segment: baseline[segment] - auc for segment, auc in candidate_segments.items() if segment in baseline}
    too_wide = {segment: gap for segment, gap in gaps.items() if not gap <= config.max_segment_gap}
    if too_wide:
        detail = ", ".join(
            f"{segment} auc {candidate_segments[segment]:.4f} is {gap:.4f} below {reference} {baseline[segment]:.4f}"
            for segment, gap in sorted(too_wide.items())
        )
        checks.append(Check("segments", False, f"{detail} (max gap {config.max_segment_gap:.4f})"))
    else:
        widest = max(gaps.values(), default=0.0)
        checks.append(
            Check(
                "segments",
                True,
                f"{len(gaps)} segments by {holdout.segment_name} within {config.max_segment_gap:.4f} "
                f"of {reference} (widest gap {widest:.4f})",
            )
        )
    return GateDecision(passed=all(check.passed for check in checks), checks=tuple(checks))

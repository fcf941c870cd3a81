"""Drift of one feature's served inputs from its training reference, from binned counts.

Serving pods count each input into the bins of the reference the training run logged (the quantile
edges of `reference/feature_stats.json`); Prometheus sums those counters over pods and any window. So
both distributions arrive as counts over the same bins, and both methods work on them alone:

- PSI, the population stability index: sum of (served - reference) * ln(served / reference) over the bins'
  shares. An empty bin on either side is given a share of `EMPTY_BIN_SHARE` instead of 0 (the log would
  be infinite), the usual convention; 0.1 is commonly read as a moderate shift and 0.2 as a large one.
- KS, the Kolmogorov-Smirnov statistic of the binned samples: the largest gap between the two
  cumulative shares at the bin edges. It is what `scipy.stats.ks_2samp` gives for the two samples
  reduced to their bin numbers, and a lower bound of the statistic on the raw values.

Too few served inputs in the window make the score unknown (None), never drifted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Method = Literal["psi", "ks"]
EMPTY_BIN_SHARE = 1e-4


def shares(counts: Sequence[float]) -> list[float]:
    """Counts as shares of their total (all zero for no counts)."""
    total = sum(counts)
    return [count / total if total > 0 else 0.0 for count in counts]


def psi(reference: Sequence[float], served: Sequence[float]) -> float:
    """Population stability index of `served` counts against `reference` counts or shares, bin by bin."""
    _same_bins(reference, served)
    expected, actual = shares(reference), shares(served)
    total = 0.0
    for expected_share, actual_share in zip(expected, actual, strict=True):
        e, a = max(expected_share, EMPTY_BIN_SHARE), max(actual_share, EMPTY_BIN_SHARE)
        total += (a - e) * math.log(a / e)
    return total


def ks(reference: Sequence[float], served: Sequence[float]) -> float:
    """Largest gap between the cumulative shares of the two binned distributions."""
    _same_bins(reference, served)
    gap = cumulative_expected = cumulative_actual = 0.0
    for e, a in zip(shares(reference), shares(served), strict=True):
        cumulative_expected += e
        cumulative_actual += a
        gap = max(gap, abs(cumulative_expected - cumulative_actual))
    return gap


def score(method: Method, reference: Sequence[float], served: Sequence[float]) -> float:
    """The drift score of one feature by `method`."""
    return psi(reference, served) if method == "psi" else ks(reference, served)


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's score, or None when the window held too few served inputs to judge."""

    feature: str
    score: float | None
    served: int


@dataclass(frozen=True)
class DriftVerdict:
    """Every feature's drift and the overall outcome: `drifted` lists the features over the threshold."""

    method: Method
    threshold: float
    features: tuple[FeatureDrift, ...]

    @property
    def known(self) -> bool:
        """False when no feature had enough served inputs: nothing is said about drift."""
        return any(feature.score is not None for feature in self.features)

    @property
    def score(self) -> float | None:
        """The largest feature score (None when unknown)."""
        scores = [feature.score for feature in self.features if feature.score is not None]
        return max(scores) if scores else None

    @property
    def drifted(self) -> tuple[str, ...]:
        """Features whose score is above the threshold, worst first."""
        over = [f for f in self.features if f.score is not None and f.score > self.threshold]
        return tuple(f.feature for f in sorted(over, key=lambda f: -(f.score or 0.0)))


def judge(
    method: Method,
    threshold: float,
    reference: Mapping[str, Sequence[float]],
    served: Mapping[str, Sequence[float]],
    min_inputs: int,
) -> DriftVerdict:
    """Score every reference feature; a feature with fewer than `min_inputs` served inputs is unknown."""
    features = []
    for name in sorted(reference):
        counts = served.get(name) or [0.0] * len(reference[name])
        total = round(sum(counts))
        value = score(method, reference[name], counts) if total >= min_inputs else None
        features.append(FeatureDrift(name, value, total))
    return DriftVerdict(method, threshold, tuple(features))


def _same_bins(reference: Sequence[float], served: Sequence[float]) -> None:
    if len(reference) != len(served) or not reference:
        raise ValueError(f"drift needs the same bins on both sides: {len(reference)} and {len(served)}")

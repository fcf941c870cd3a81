"""The training reference of each input feature, and served inputs counted into its bins.

The training run logs `reference/feature_stats.json` (layout 1): per feature, quantile `bin_edges` and
the share of training rows in each bin — bins are [edge, next edge), the last one closed. The server
reads it once at load time (from the version's run, through the tracking server's artifact proxy) and
counts every served value into the same bins, plus `below` and `above` for values outside the edges, so
Prometheus can sum the counts over pods and any window and the operator can compare them with the
reference shares, which the server exports too. No reference (an older model, another store, a file
that does not parse) means no bin counts; the model serves all the same.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

LAYOUT_VERSION = 1
ARTIFACT_DIR = "reference"
ARTIFACT_FILE = "feature_stats.json"
MAX_BYTES = 1 << 20
MAX_EDGES = 65  # 64 bins: the series one feature may add, bounded
BELOW, ABOVE = "below", "above"


class ReferenceError(ValueError):
    """The reference document cannot be used; the message says why."""


@dataclass(frozen=True)
class FeatureReference:
    """One feature's bin edges and the share of training rows in each bin."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        """Bin labels of the served counts: below, 0 … n-1, above."""
        return (BELOW, *(str(index) for index in range(len(self.shares))), ABOVE)

    def count(self, values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """How many of `values` fall in each bin of `labels` (NaN counts nowhere).

        The values are sorted once and the edges are looked up in them: a search of a few dozen edges in
        sorted values, where a search of every value among the edges jumps about memory unpredictably (about
        three times the time on a fold of thousands of rows).
        """
        ordered = np.sort(values)  # NaN sorts last
        valid = len(ordered)
        floating = ordered.dtype.kind == "f"
        if valid and floating and np.isnan(ordered[-1]):
            valid = int(np.searchsorted(ordered, np.inf, side="right"))
        ordered = ordered[:valid]
        edges = np.asarray(self.edges, dtype=ordered.dtype if floating else np.float64)  # compared as served
        # Below each edge: the start of each bin; the last bin is closed, so its end counts values equal to it.
        starts = np.searchsorted(ordered, edges[:-1], side="left")
        end = np.searchsorted(ordered, edges[-1], side="right")
        bounds = np.concatenate(([0], starts, [end, valid])).astype(np.int64)
        return np.diff(bounds)


def parse_reference(raw: bytes, features: tuple[str, ...]) -> dict[str, FeatureReference]:
    """The references of the served `features` in a reference document, by name or, for a tensor input whose
    width is the reference's feature count, by position; raises `ReferenceError` when it is unusable."""
    if len(raw) > MAX_BYTES:
        raise ReferenceError(f"the reference is larger than {MAX_BYTES} bytes")
    try:
        document = json.loads(raw)
    except ValueError as error:
        raise ReferenceError(f"the reference is not JSON: {error}") from None
    if not isinstance(document, dict) or document.get("layout_version") != LAYOUT_VERSION:
        raise ReferenceError(f"the reference is not of layout version {LAYOUT_VERSION}")
    found = document.get("features")
    if not isinstance(found, dict):
        raise ReferenceError("the reference has no features")
    if any(name in found for name in features):
        return {name: _feature(name, found[name]) for name in features if name in found}
    if len(found) == len(features):
        # A tensor input (`input[0]`, `input[1]`, …) holds the training columns in the reference's order.
        return {served: _feature(trained, found[trained]) for served, trained in zip(features, found, strict=True)}
    return {}


def _feature(name: str, raw: Any) -> FeatureReference:
    if not isinstance(raw, dict):
        raise ReferenceError(f"feature {name!r}: not an object")
    edges, shares = raw.get("bin_edges"), raw.get("proportions")
    if not isinstance(edges, list) or not isinstance(shares, list):
        raise ReferenceError(f"feature {name!r}: bin_edges and proportions must be lists")
    if not 2 <= len(edges) <= MAX_EDGES or len(shares) != len(edges) - 1:
        raise ReferenceError(f"feature {name!r}: 2 to {MAX_EDGES} edges and one share per bin are needed")
    if not all(_finite_number(v) for v in [*edges, *shares]):
        raise ReferenceError(f"feature {name!r}: edges and shares must be finite numbers")
    if any(later <= earlier for earlier, later in pairwise(edges)):
        raise ReferenceError(f"feature {name!r}: edges must increase")
    if any(share < 0 for share in shares) or not math.isclose(sum(shares), 1.0, abs_tol=1e-6):
        raise ReferenceError(f"feature {name!r}: shares must be non-negative and sum to 1")
    return FeatureReference(tuple(float(e) for e in edges), tuple(float(s) for s in shares))


def _finite_number(value: Any) -> bool:
    """A JSON number a float can hold (an integer of 400 digits parses, but is no float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False

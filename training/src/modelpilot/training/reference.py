"""Per-feature reference statistics of the training data: the baseline that serving inputs are compared with.

For each feature: mean, std, min, max, and quantile bin edges with the share of training rows in each
bin (bins are [edge, next edge), the last one closed; a feature with at most `bins` distinct values
gets one bin per value). A population stability index compares serving proportions over the same
edges; a KS test can use the quantiles. The JSON layout is versioned so readers can reject a layout they do not know.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

REFERENCE_LAYOUT_VERSION = 1
REFERENCE_ARTIFACT = "reference/feature_stats.json"


def feature_statistics(values: np.ndarray[Any, Any], bins: int = 10) -> dict[str, Any]:
    """Summary and quantile histogram of one feature; discrete features get fewer, unique edges."""
    values = np.asarray(values, dtype=np.float64)
    distinct = np.unique(values)
    if distinct.size <= bins:
        # A discrete feature (protocol, port class): one bin per value, [value, next value).
        edges = np.append(distinct, distinct[-1] + 1.0)
    else:
        edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))
    counts, _ = np.histogram(values, bins=edges)
    proportions = counts / counts.sum()
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": {f"{q:.2f}": float(np.quantile(values, q)) for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)},
        "bin_edges": [float(edge) for edge in edges],
        "proportions": [float(share) for share in proportions],
    }


def reference_statistics(frame: pd.DataFrame, features: list[str], bins: int = 10) -> dict[str, Any]:
    """The reference document for `features` of `frame` (the training split)."""
    return {
        "layout_version": REFERENCE_LAYOUT_VERSION,
        "rows": len(frame),
        "bins": bins,
        "features": {name: feature_statistics(frame[name].to_numpy(), bins) for name in features},
    }

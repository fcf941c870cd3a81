"""PromQL for canary analysis and the bounds a step must respect: pure, no I/O.

The built-in queries read the two metrics every inference server exposes,
`modelpilot_http_requests_total{route, code, model, version, track}` and
`modelpilot_http_request_duration_seconds_bucket{route, model, version, track, le}`, restricted to
one model, one track and (for the canary) one version, over `analysis.window`. Probe and scrape routes
are left out so kubelet probes do not count as traffic.

Measured values are keyed by these names in `AnalysisResult.values` (custom metrics use their own
name, which the spec keeps apart from the built-in ones):

- `request_count`: canary requests in the window (fewer than `minRequests` is inconclusive);
- `error_rate`: share of canary responses with a 5xx code;
- `p99_latency_seconds`: 99th percentile of canary latency from the histogram;
- `stable_error_rate`: the stable track's error rate (only with `compareWithStable`);
- `labelled_predictions`, `accuracy`, `precision`, `recall`: the canary's model quality from the labels that
  arrived in the window (with minAccuracy, minPrecision or minRecall; PromQL in `rollout.quality`).

`violations()` turns values into the bounds they break; the analysis and the state machine both use
it, so the verdict and the reason written to the registry always agree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from modelpilot.operator.builders.server_metrics import (
    LATENCY_BUCKETS_METRIC,
    REQUESTS_METRIC,
    promql_label_value,
    track_matchers,
    traffic_matchers,
)
from modelpilot.operator.spec import Analysis, parse_duration
from modelpilot.operator.spec.rollout import (
    ACCURACY,
    ERROR_RATE,
    ERROR_RATE_ABOVE_STABLE,
    LABELLED_PREDICTIONS,
    P99_LATENCY,
    PRECISION,
    RECALL,
    STABLE_ERROR_RATE,
)

_PLACEHOLDER = re.compile(r"\{\{\s*(track|model|version|namespace|window)\s*\}\}")


@dataclass(frozen=True)
class QueryTarget:
    """Whose metrics a query reads: one model's track, and the version when it matters."""

    model: str
    track: str
    version: str | None = None
    namespace: str = ""


def label_value(text: str) -> str:
    """`text` escaped for use inside a double-quoted PromQL label matcher."""
    return promql_label_value(text)


def selector(target: QueryTarget, *, server_errors_only: bool = False) -> str:
    """The label matchers of `target`'s traffic, e.g.
    `{namespace="ml",model="m",track="canary",version="3",route!~"…"}` (see `server_metrics.track_matchers`).
    """
    matchers = traffic_matchers(target.namespace, target.model, target.track, target.version)
    if server_errors_only:
        matchers.append('code=~"5.."')
    return "{" + ",".join(matchers) + "}"


FEATURE_BINS_METRIC = "modelpilot_feature_bin_total"
REFERENCE_SHARE_METRIC = "modelpilot_feature_reference_share"


def _feature_selector(target: QueryTarget) -> str:
    return "{" + ",".join(track_matchers(target.namespace, target.model, target.track, target.version)) + "}"


def served_bins_query(target: QueryTarget, window: str) -> str:
    """Served values per feature and reference bin in the window, summed over `target`'s pods."""
    return f"sum by (feature, bin) (increase({FEATURE_BINS_METRIC}{_feature_selector(target)}[{window}]))"


def reference_shares_query(target: QueryTarget) -> str:
    """The training reference's share per feature and bin, as `target`'s pods export it."""
    return f"max by (feature, bin) ({REFERENCE_SHARE_METRIC}{_feature_selector(target)})"


def request_count_query(target: QueryTarget, window: str) -> str:
    """Requests served by `target` in the window."""
    return f"sum(increase({REQUESTS_METRIC}{selector(target)}[{window}]))"


def error_rate_query(target: QueryTarget, window: str) -> str:
    """Share of `target`'s responses that are 5xx; 0 when there were requests and no errors at all."""
    errors = f"sum(rate({REQUESTS_METRIC}{selector(target, server_errors_only=True)}[{window}]))"
    total = f"sum(rate({REQUESTS_METRIC}{selector(target)}[{window}]))"
    # No 5xx series at all leaves the numerator empty; `or vector(0)` keeps the ratio defined.
    return f"({errors} or vector(0)) / {total}"


def p99_latency_query(target: QueryTarget, window: str) -> str:
    """99th percentile latency of `target` in seconds; `le` stays in `by` for histogram_quantile."""
    return f"histogram_quantile(0.99, sum by (le) (rate({LATENCY_BUCKETS_METRIC}{selector(target)}[{window}])))"


def render_custom_query(query: str, target: QueryTarget, window: str) -> str:
    """A custom metric's PromQL with {{track}}, {{model}}, {{version}}, {{namespace}} and {{window}} filled in.

    Values are escaped for a double-quoted label matcher, which is where they are meant to go.
    """
    values = {
        "track": label_value(target.track),
        "model": label_value(target.model),
        "version": label_value(target.version or ""),
        "namespace": label_value(target.namespace),
        "window": window,
    }
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], query)


@dataclass(frozen=True)
class Violation:
    """A measured value outside its bound."""

    metric: str
    value: float
    bound: float
    limit: str

    def describe(self) -> str:
        """One line naming the metric, its value and the bound, e.g. `error_rate 0.2 above maxErrorRate 0.01`."""
        side = "below" if self.limit.startswith("min") else "above"
        return f"{self.metric} {_number(self.value)} {side} {self.limit} {_number(self.bound)}"


def violations(spec: Analysis, values: Mapping[str, float]) -> list[Violation]:
    """Every bound of `spec` that `values` break, built-in checks first; missing values break nothing."""
    found: list[Violation] = []

    def above(metric: str, value: float | None, bound: float, limit: str) -> None:
        if value is not None and math.isfinite(value) and value > bound:
            found.append(Violation(metric, value, bound, limit))

    error_rate = values.get(ERROR_RATE)
    above(ERROR_RATE, error_rate, spec.max_error_rate, "maxErrorRate")
    above(P99_LATENCY, values.get(P99_LATENCY), parse_duration(spec.max_p99_latency), "maxP99Latency")
    stable = values.get(STABLE_ERROR_RATE)
    if spec.compare_with_stable and error_rate is not None and stable is not None:
        above(ERROR_RATE_ABOVE_STABLE, error_rate - stable, spec.max_error_rate_increase, "maxErrorRateIncrease")
    if quality_is_judged(spec, values):
        for name, bound, limit in quality_bounds(spec):
            value = values.get(name)
            if value is not None and math.isfinite(value) and value < bound:
                found.append(Violation(name, value, bound, limit))
    for metric in spec.metrics:
        value = values.get(metric.name)
        if value is None or not math.isfinite(value):
            continue
        if metric.max is not None:
            above(metric.name, value, metric.max, "max")
        if metric.min is not None and value < metric.min:
            found.append(Violation(metric.name, value, metric.min, "min"))
    return found


def quality_bounds(spec: Analysis) -> list[tuple[str, float, str]]:
    """(metric, lowest acceptable value, spec field) of each quality bound the spec sets."""
    bounds = [
        (ACCURACY, spec.min_accuracy, "minAccuracy"),
        (PRECISION, spec.min_precision, "minPrecision"),
        (RECALL, spec.min_recall, "minRecall"),
    ]
    return [(metric, bound, limit) for metric, bound, limit in bounds if bound is not None]


def quality_is_judged(spec: Analysis, values: Mapping[str, float]) -> bool:
    """Whether the window had `minLabels` labelled canary predictions: fewer are no evidence either way."""
    return spec.checks_quality and values.get(LABELLED_PREDICTIONS, 0.0) >= spec.min_labels


def _number(value: float) -> str:
    return f"{value:.4g}"

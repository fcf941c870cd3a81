"""Analysis of one canary step against Prometheus: `analyse()` → an `AnalysisResult`.

The operator's only Prometheus client; the PromQL and the bounds are pure (`rollout.queries`).

Usage by the executor of a `RunAnalysis` action:

    result = await analyse(spec.rollout.analysis, AnalysisTarget(model, version, namespace, step, weight),
                           client=shared_http_client)

The verdict is
- Inconclusive when Prometheus cannot be reached or refuses a query, when the canary served fewer
  than `minRequests` requests in `window` (no traffic is not success), when a quality bound is set and
  fewer than `minLabels` of its predictions were labelled in `window` (and nothing else failed), or when a
  metric a check needs has no data (empty result or NaN) — the reason says which, with the numbers;
- Failed when any bound is broken (`queries.violations`): the reason names the metric and its value;
- Passed otherwise.

All queries of one analysis run concurrently; `analyse` never raises for Prometheus trouble, a malformed
answer included. The Prometheus URL comes from the spec, so what it answers is anyone's: a reason (which
reaches the status, the history and Events) names the status code and Prometheus's error type when it is
one of Prometheus's own, never the answer's text; that goes to the operator's log.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from modelpilot.operator.http_client import Answer, HttpClient, UnreachableError
from modelpilot.operator.rollout.actions import ShadowCount
from modelpilot.operator.rollout.clock import stamp_down
from modelpilot.operator.rollout.quality import (
    accuracy_query,
    labelled_count_query,
    precision_query,
    recall_query,
    shadow_agreed_query,
    shadow_comparisons_query,
)
from modelpilot.operator.rollout.queries import (
    QueryTarget,
    error_rate_query,
    p99_latency_query,
    quality_bounds,
    quality_is_judged,
    reference_shares_query,
    render_custom_query,
    request_count_query,
    served_bins_query,
    violations,
)
from modelpilot.operator.spec import Analysis
from modelpilot.operator.spec.rollout import (
    ACCURACY,
    ERROR_RATE,
    LABELLED_PREDICTIONS,
    P99_LATENCY,
    PRECISION,
    RECALL,
    REQUEST_COUNT,
    STABLE_ERROR_RATE,
)
from modelpilot.operator.status import AnalysisResult

DEFAULT_TIMEOUT_SECONDS = 10.0
LOGGED_BODY_CHARS = 200
# The errorType values of Prometheus's HTTP API, and its result types: the only words of an answer a reason repeats.
PROMETHEUS_ERROR_TYPES = frozenset(
    {"bad_data", "execution", "timeout", "canceled", "internal", "unavailable", "not_found"}
)
RESULT_TYPES = frozenset({"matrix", "vector", "scalar", "string"})

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisTarget:
    """The canary step being analysed."""

    model: str
    version: str
    namespace: str
    step: int
    weight: int


Verdict = Literal["Passed", "Failed", "Inconclusive"]


class _MakeResult(Protocol):
    def __call__(self, verdict: Verdict, reason: str, values: dict[str, float]) -> AnalysisResult: ...


class PrometheusUnavailableError(Exception):
    """Prometheus could not be reached or answered with a server error."""


class QueryRejectedError(Exception):
    """Prometheus refused or could not evaluate a query (bad PromQL, wrong result shape)."""


async def query_value(client: HttpClient, base_url: str, promql: str) -> float | None:
    """The single value of an instant query; None when the result is empty.

    Raises PrometheusUnavailableError for network errors and 5xx, QueryRejectedError for refused
    queries and results with more than one series.
    """
    data = await _instant(client, base_url, promql)
    try:
        return _single_value(data)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise QueryRejectedError("answered a malformed result") from None


async def query_vector(client: HttpClient, base_url: str, promql: str) -> list[tuple[dict[str, str], float]]:
    """Every series of an instant vector query as (labels, value); errors as in `query_value`."""
    data = await _instant(client, base_url, promql)
    if data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
        raise QueryRejectedError("expected an instant vector")
    try:
        return [
            ({str(k): str(v) for k, v in dict(item["metric"]).items()}, float(item["value"][1]))
            for item in data["result"]
        ]
    except (KeyError, IndexError, TypeError, ValueError):
        raise QueryRejectedError("answered a malformed result") from None


async def _instant(client: HttpClient, base_url: str, promql: str) -> dict[str, Any]:
    """The `data` of an instant query's answer."""
    url = base_url.rstrip("/") + "/api/v1/query"
    try:
        response = await client.request("GET", url, params={"query": promql})
    except UnreachableError as error:
        logger.info("Prometheus %s unreachable: %r", base_url, error.__cause__)
        raise PrometheusUnavailableError(f"{base_url} unreachable ({error.kind})") from error
    body = _json(response)
    if response.status >= 400 or body.get("status") != "success":
        logger.info(
            "Prometheus %s answered %d to %s: %s", base_url, response.status, promql, response.text(LOGGED_BODY_CHARS)
        )
    if response.status >= 500:
        raise PrometheusUnavailableError(f"{base_url} answered {response.status}")
    if response.status >= 400 or body.get("status") != "success":
        error_type = body.get("errorType")
        named = f" {error_type}" if isinstance(error_type, str) and error_type in PROMETHEUS_ERROR_TYPES else ""
        raise QueryRejectedError(f"refused ({response.status}{named})")
    data = body.get("data")
    if not isinstance(data, dict):
        raise QueryRejectedError("answered a malformed result")
    return data


@asynccontextmanager
async def _client_or_own(client: HttpClient | None, request_timeout: float) -> AsyncIterator[HttpClient]:
    """`client`, or a client of this call's own, closed when the call ends."""
    if client is not None:
        yield client
        return
    own = HttpClient(timeout=request_timeout)
    try:
        yield own
    finally:
        await own.aclose()


def _json(response: Answer) -> dict[str, Any]:
    try:
        body = response.json_value()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _single_value(data: dict[str, Any]) -> float | None:
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type == "scalar" and isinstance(result, list):
        return float(result[1])
    if result_type != "vector" or not isinstance(result, list):
        shown = result_type if isinstance(result_type, str) and result_type in RESULT_TYPES else "another type"
        raise QueryRejectedError(f"expected an instant vector, got {shown}")
    if not result:
        return None
    if len(result) > 1:
        raise QueryRejectedError(f"returned {len(result)} series; the query must return one")
    return float(result[0]["value"][1])


def analysis_queries(spec: Analysis, target: AnalysisTarget) -> dict[str, str]:
    """The PromQL of each value the analysis measures, by metric name."""
    canary = QueryTarget(model=target.model, track="canary", version=target.version, namespace=target.namespace)
    queries = {
        REQUEST_COUNT: request_count_query(canary, spec.window),
        ERROR_RATE: error_rate_query(canary, spec.window),
        P99_LATENCY: p99_latency_query(canary, spec.window),
    }
    if spec.compare_with_stable:
        # Whatever version the stable track serves right now is the baseline.
        stable = QueryTarget(model=target.model, track="stable", namespace=target.namespace)
        queries[STABLE_ERROR_RATE] = error_rate_query(stable, spec.window)
    if spec.checks_quality:
        where = (target.namespace, target.model, target.version, spec.window)
        queries[LABELLED_PREDICTIONS] = labelled_count_query(*where)
        if spec.min_accuracy is not None:
            queries[ACCURACY] = accuracy_query(*where)
        if spec.min_precision is not None:
            queries[PRECISION] = precision_query(*where, spec.positive_class)
        if spec.min_recall is not None:
            queries[RECALL] = recall_query(*where, spec.positive_class)
    for metric in spec.metrics:
        queries[metric.name] = render_custom_query(metric.query, canary, spec.window)
    return queries


async def analyse(
    spec: Analysis,
    target: AnalysisTarget,
    *,
    client: HttpClient | None = None,
    request_timeout: float = DEFAULT_TIMEOUT_SECONDS,
    now: datetime | None = None,
) -> AnalysisResult:
    """Query Prometheus for the canary step `target` and judge it against `spec`."""
    started = now or datetime.now(UTC)

    def result(verdict: Verdict, reason: str, values: dict[str, float]) -> AnalysisResult:
        return AnalysisResult(
            time=stamp_down(started),
            step=target.step,
            weight=target.weight,
            verdict=verdict,
            reason=reason,
            values=values,
        )

    queries = analysis_queries(spec, target)
    async with _client_or_own(client, request_timeout) as http:
        outcomes = await asyncio.gather(
            *(query_value(http, spec.prometheus, promql) for promql in queries.values()), return_exceptions=True
        )
    measured: dict[str, float | None] = {}
    for name, outcome in zip(queries, outcomes, strict=True):
        if isinstance(outcome, PrometheusUnavailableError):
            return result("Inconclusive", f"Prometheus unavailable: {outcome}", {})
        if isinstance(outcome, QueryRejectedError):
            return result("Inconclusive", f"query for {name} failed: {outcome}", {})
        if isinstance(outcome, BaseException):
            raise outcome
        measured[name] = outcome if outcome is not None and math.isfinite(outcome) else None
    return _judge(spec, measured, result)


def _judge(spec: Analysis, measured: dict[str, float | None], result: _MakeResult) -> AnalysisResult:
    values = {name: value for name, value in measured.items() if value is not None}
    # No series at all means no requests: that is a measurement too.
    requests = values.setdefault(REQUEST_COUNT, 0.0)
    if requests < spec.min_requests:
        return result(
            "Inconclusive",
            f"{requests:.0f} canary requests in {spec.window}, fewer than minRequests {spec.min_requests}",
            values,
        )
    if spec.checks_quality:
        values.setdefault(LABELLED_PREDICTIONS, 0.0)  # no series: no label arrived
    # Quality bounds only count with minLabels labels (`violations` skips them otherwise).
    broken = violations(spec, values)
    if broken:
        return result("Failed", "; ".join(violation.describe() for violation in broken), values)
    if spec.checks_quality and not quality_is_judged(spec, values):
        return result("Inconclusive", _too_few_labels(spec, values), values)
    # The stable baseline may have no traffic (e.g. at 100%): the comparison is skipped then.
    quality = [metric for metric, _, _ in quality_bounds(spec)]
    required = [ERROR_RATE, P99_LATENCY, *quality, *(metric.name for metric in spec.metrics)]
    missing = [name for name in required if measured.get(name) is None]
    if missing:
        return result("Inconclusive", f"no data for {', '.join(missing)} in {spec.window}", values)
    summary = (
        f"{requests:.0f} requests, error_rate {values[ERROR_RATE]:.4g} <= {spec.max_error_rate:g}, "
        f"p99 {values[P99_LATENCY]:.4g}s <= {spec.max_p99_latency}"
    )
    for metric, bound, _ in quality_bounds(spec):
        summary += f", {metric} {values[metric]:.4g} >= {bound:g}"
    if quality:
        summary += f" ({values[LABELLED_PREDICTIONS]:.0f} labelled)"
    return result("Passed", summary, values)


def _too_few_labels(spec: Analysis, values: dict[str, float]) -> str:
    """Why the quality bounds were not judged, with what was measured anyway."""
    labelled = values[LABELLED_PREDICTIONS]
    reason = f"{labelled:.0f} labelled canary predictions in {spec.window}, fewer than minLabels {spec.min_labels}"
    seen = [f"{metric} {values[metric]:.4g}" for metric, _, _ in quality_bounds(spec) if metric in values]
    return reason + (f" ({', '.join(seen)} not judged)" if seen else "")


async def count_shadow_comparisons(
    prometheus: str,
    target: QueryTarget,
    since: datetime,
    *,
    client: HttpClient | None = None,
    request_timeout: float = DEFAULT_TIMEOUT_SECONDS,
    now: datetime | None = None,
) -> ShadowCount:
    """The candidate's answers compared with stable's since `since` (the shadow phase), and how many agreed.

    `target.version` is the candidate's. Never raises for Prometheus trouble: the count says what went wrong.
    """
    started = now or datetime.now(UTC)
    seconds = max(math.ceil((started - since).total_seconds()), 1)
    where = (target.namespace, target.model, target.version or "", seconds)
    try:
        async with _client_or_own(client, request_timeout) as http:
            compared, agreed = await asyncio.gather(
                query_value(http, prometheus, shadow_comparisons_query(*where)),
                query_value(http, prometheus, shadow_agreed_query(*where)),
            )
    except PrometheusUnavailableError as error:
        return ShadowCount(stamp_down(started), error=f"Prometheus unavailable: {error}")
    except QueryRejectedError as error:
        return ShadowCount(stamp_down(started), error=f"the shadow comparisons query failed: {error}")
    # No series: nothing was compared (or agreed) yet.
    return ShadowCount(stamp_down(started), comparisons=_finite(compared or 0.0), agreed=_finite(agreed or 0.0))


@dataclass(frozen=True)
class DriftBins:
    """Per feature, the training reference's shares and the served counts over the same bins, in bin order."""

    reference: dict[str, list[float]]
    served: dict[str, list[float]]


async def read_drift_bins(
    prometheus: str,
    target: QueryTarget,
    window: str,
    *,
    client: HttpClient | None = None,
    request_timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> DriftBins | str:
    """The bins of `target`'s served inputs over `window`, or why they cannot be read (a fixed sentence)."""
    try:
        async with _client_or_own(client, request_timeout) as http:
            shares, served = await asyncio.gather(
                query_vector(http, prometheus, reference_shares_query(target)),
                query_vector(http, prometheus, served_bins_query(target, window)),
            )
    except PrometheusUnavailableError as error:
        return f"Prometheus unavailable: {error}"
    except QueryRejectedError as error:
        return f"the drift query failed: {error}"
    reference: dict[str, dict[str, float]] = {}
    for labels, value in shares:
        reference.setdefault(labels.get("feature", ""), {})[labels.get("bin", "")] = value
    counted: dict[str, dict[str, float]] = {}
    for labels, value in served:
        counted.setdefault(labels.get("feature", ""), {})[labels.get("bin", "")] = value
    ordered = {feature: sorted(bins, key=_bin_order) for feature, bins in reference.items() if feature}
    return DriftBins(
        reference={feature: [reference[feature][b] for b in bins] for feature, bins in ordered.items()},
        served={
            feature: [_finite(counted.get(feature, {}).get(b, 0.0)) for b in bins] for feature, bins in ordered.items()
        },
    )


def _bin_order(label: str) -> float:
    """below, 0, 1, …, above."""
    if label == "below":
        return -1.0
    if label == "above":
        return math.inf
    return float(label) if label.isdigit() else math.inf


def _finite(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else 0.0

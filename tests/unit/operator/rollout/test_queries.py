"""The PromQL the analysis sends and the bounds it checks."""

from __future__ import annotations

import pytest

from modelpilot.operator.analysis import AnalysisTarget, analysis_queries
from modelpilot.operator.rollout.queries import (
    QueryTarget,
    error_rate_query,
    p99_latency_query,
    render_custom_query,
    request_count_query,
    violations,
)
from modelpilot.operator.spec import Analysis

CANARY = QueryTarget(model="fraud", track="canary", version="3", namespace="ml")


def analysis_spec(**fields: object) -> Analysis:
    return Analysis.model_validate({"prometheus": "http://p:9090", **fields})


def test_queries_select_the_canary_version_and_leave_out_probes() -> None:
    query = request_count_query(CANARY, "1m")
    assert query == (
        'sum(increase(modelpilot_http_requests_total{namespace="ml",model="fraud",track="canary",version="3",'
        'route!~"/healthz|/readyz|/livez|/metrics"}[1m]))'
    )


def test_queries_select_the_namespace_so_two_deployments_of_one_model_never_mix() -> None:
    other = QueryTarget(model="fraud", track="canary", version="3", namespace="team-b")
    assert 'namespace="team-b"' in error_rate_query(other, "1m")
    assert 'namespace="ml"' not in error_rate_query(other, "1m")
    assert "namespace=" not in request_count_query(QueryTarget(model="fraud", track="canary"), "1m")


def test_the_error_rate_is_zero_not_empty_when_no_5xx_series_exists() -> None:
    query = error_rate_query(CANARY, "30s")
    assert query.startswith('(sum(rate(modelpilot_http_requests_total{namespace="ml",model="fraud",track="canary"')
    assert 'code=~"5.."}[30s])) or vector(0)) / sum(rate(' in query


def test_the_p99_keeps_le_in_the_by_clause() -> None:
    assert p99_latency_query(CANARY, "1m").startswith(
        "histogram_quantile(0.99, sum by (le) (rate(modelpilot_http_request_duration_seconds_bucket{"
    )


def test_label_values_are_escaped() -> None:
    odd = QueryTarget(model='we"ird\\name', track="canary")
    assert 'model="we\\"ird\\\\name"' in request_count_query(odd, "1m")


def test_custom_queries_get_every_placeholder_filled() -> None:
    query = "x{track='{{track}}',m='{{ model }}',v='{{version}}',ns='{{namespace}}'}[{{window}}] {{other}}"
    assert render_custom_query(query, CANARY, "2m") == "x{track='canary',m='fraud',v='3',ns='ml'}[2m] {{other}}"


def test_the_stable_baseline_is_queried_only_when_compared() -> None:
    target = AnalysisTarget(model="fraud", version="3", namespace="ml", step=0, weight=10)
    assert "stable_error_rate" not in analysis_queries(analysis_spec(), target)
    compared = analysis_queries(analysis_spec(compareWithStable=True), target)
    assert 'track="stable"' in compared["stable_error_rate"]
    assert 'version="' not in compared["stable_error_rate"]


def test_violations_name_each_broken_bound_built_ins_first() -> None:
    spec = analysis_spec(
        maxErrorRate=0.01,
        maxP99Latency="250ms",
        metrics=[{"name": "drift", "query": "q", "max": 0.2}, {"name": "rps", "query": "q", "min": 5}],
    )
    found = violations(spec, {"error_rate": 0.2, "p99_latency_seconds": 0.3, "drift": 0.5, "rps": 1})
    assert [v.metric for v in found] == ["error_rate", "p99_latency_seconds", "drift", "rps"]
    assert found[0].describe() == "error_rate 0.2 above maxErrorRate 0.01"
    assert found[3].describe() == "rps 1 below min 5"
    assert violations(spec, {"error_rate": 0.01, "p99_latency_seconds": 0.25, "drift": 0.2, "rps": 5}) == []
    assert violations(spec, {}) == []


def test_comparison_with_stable_bounds_the_difference() -> None:
    spec = analysis_spec(maxErrorRate=0.05, maxErrorRateIncrease=0.01, compareWithStable=True)
    assert violations(spec, {"error_rate": 0.04, "stable_error_rate": 0.035}) == []
    # Within the absolute bound, yet clearly worse than stable: only the comparison catches it.
    worse = violations(spec, {"error_rate": 0.04, "stable_error_rate": 0.0})
    assert [(v.metric, v.limit, v.bound) for v in worse] == [("error_rate_above_stable", "maxErrorRateIncrease", 0.01)]
    assert worse[0].value == pytest.approx(0.04)

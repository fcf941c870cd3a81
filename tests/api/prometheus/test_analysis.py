"""Canary analysis against a real Prometheus scraping metrics with known traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelpilot.operator.analysis import AnalysisTarget, analyse
from modelpilot.operator.spec import Analysis
from tests.api.prometheus.conftest import MODEL, PROFILES, WINDOW
from tests.support.prometheus import PrometheusServer, prometheus_server


def spec_for(prometheus_url: str, **fields: Any) -> Analysis:
    return Analysis.model_validate(
        {
            "prometheus": prometheus_url,
            "maxErrorRate": 0.05,
            "maxP99Latency": "250ms",
            "minRequests": 50,
            "window": WINDOW,
            **fields,
        }
    )


def target(profile: str, step: int = 1, weight: int = 25) -> AnalysisTarget:
    return AnalysisTarget(model=MODEL, version=PROFILES[profile].version, namespace="ml", step=step, weight=weight)


async def test_a_healthy_canary_passes(prometheus: PrometheusServer) -> None:
    result = await analyse(spec_for(prometheus.url), target("healthy", step=2, weight=50))
    assert result.verdict == "Passed", result.reason
    assert (result.step, result.weight) == (2, 50)
    assert result.values["error_rate"] == pytest.approx(0.0, abs=1e-9)
    assert 0.01 < result.values["p99_latency_seconds"] <= 0.025
    # 40 requests per second over a 5 s window.
    assert 120 <= result.values["request_count"] <= 280


async def test_twenty_percent_errors_fail_naming_the_error_rate(prometheus: PrometheusServer) -> None:
    result = await analyse(spec_for(prometheus.url), target("errors"))
    assert result.verdict == "Failed"
    assert result.values["error_rate"] == pytest.approx(0.2, abs=0.02)
    assert result.reason.startswith("error_rate 0.")
    assert "above maxErrorRate 0.05" in result.reason


async def test_a_slow_canary_fails_naming_the_p99(prometheus: PrometheusServer) -> None:
    result = await analyse(spec_for(prometheus.url), target("slow"))
    assert result.verdict == "Failed"
    assert 0.25 < result.values["p99_latency_seconds"] <= 0.5
    assert result.reason.startswith("p99_latency_seconds 0.")
    assert "above maxP99Latency 0.25" in result.reason


async def test_probe_traffic_alone_is_inconclusive_not_success(prometheus: PrometheusServer) -> None:
    result = await analyse(spec_for(prometheus.url), target("probes-only"))
    assert result.verdict == "Inconclusive"
    assert "fewer than minRequests 50" in result.reason
    assert result.values["request_count"] == 0


async def test_a_version_without_any_series_is_inconclusive(prometheus: PrometheusServer) -> None:
    unknown = AnalysisTarget(model=MODEL, version="99", namespace="ml", step=0, weight=10)
    result = await analyse(spec_for(prometheus.url), unknown)
    assert result.verdict == "Inconclusive"
    assert "0 canary requests" in result.reason


async def test_comparison_with_stable_records_the_baseline(prometheus: PrometheusServer) -> None:
    spec = spec_for(prometheus.url, compareWithStable=True)
    healthy = await analyse(spec, target("healthy"))
    assert healthy.verdict == "Passed", healthy.reason
    assert healthy.values["stable_error_rate"] == pytest.approx(0.005, abs=0.002)
    failing = await analyse(spec, target("errors"))
    assert failing.verdict == "Failed"
    assert "error_rate_above_stable" in failing.reason


async def test_custom_metrics_are_rendered_and_bounded(prometheus: PrometheusServer) -> None:
    per_second = (
        'sum(rate(modelpilot_http_requests_total{model="{{model}}",track="{{track}}",'
        'version="{{version}}",route!="/readyz"}[{{window}}]))'
    )
    within = spec_for(prometheus.url, metrics=[{"name": "throughput", "query": per_second, "min": 20, "max": 80}])
    passed = await analyse(within, target("healthy"))
    assert passed.verdict == "Passed", passed.reason
    assert passed.values["throughput"] == pytest.approx(40, rel=0.25)

    too_low = spec_for(prometheus.url, metrics=[{"name": "throughput", "query": per_second, "min": 100}])
    failed = await analyse(too_low, target("healthy"))
    assert failed.verdict == "Failed"
    assert failed.reason.startswith("throughput ")
    assert "below min 100" in failed.reason


async def test_a_custom_metric_without_data_or_with_bad_promql_is_inconclusive(prometheus: PrometheusServer) -> None:
    empty = spec_for(prometheus.url, metrics=[{"name": "missing", "query": 'absent_metric{model="x"}', "max": 1}])
    result = await analyse(empty, target("healthy"))
    assert result.verdict == "Inconclusive"
    assert "no data for missing" in result.reason

    broken = spec_for(prometheus.url, metrics=[{"name": "broken", "query": "sum(rate(", "max": 1}])
    result = await analyse(broken, target("healthy"))
    assert result.verdict == "Inconclusive"
    assert "query for broken failed" in result.reason


async def test_a_stopped_prometheus_is_inconclusive(tmp_path: Path) -> None:
    with prometheus_server(tmp_path) as doomed:
        doomed.stop()
        result = await analyse(spec_for(doomed.url), target("healthy"), request_timeout=2)
    assert result.verdict == "Inconclusive"
    assert result.reason.startswith("Prometheus unavailable")

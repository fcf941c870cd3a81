"""Model-quality analysis and shadow counts against a real Prometheus scraping the serving side's counters."""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelpilot.operator.analysis import AnalysisTarget, analyse, count_shadow_comparisons
from modelpilot.operator.rollout.queries import QueryTarget
from modelpilot.operator.spec import Analysis
from tests.support.prometheus import PrometheusServer, prometheus_server
from tests.support.quality_exporter import Feed, QualityExporter, quality_exporter

MODEL = "churn"
WINDOW = "5s"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "rollouts.md"
FEEDS = {
    # 20 labels a second, 80 % correct (precision and recall of class "1" are 0.8 too, by construction).
    "labelled": Feed(MODEL, "2", "canary", labels_per_second=20, accuracy=0.8),
    # Perfect, but a label every 5 s: about one a window.
    "sparse": Feed(MODEL, "3", "canary", labels_per_second=0.2, accuracy=1.0),
    # No labels at all.
    "unlabelled": Feed(MODEL, "4", "canary"),
    # Mirrored answers: 20 compared a second, 75 % agreeing with stable.
    "shadow": Feed(MODEL, "5", "canary", requests_per_second=0, comparisons_per_second=20, agreement=0.75),
}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Prometheus scraping the feeds, returned once a full window of scrapes is in."""
    with quality_exporter() as exporter:
        for feed in FEEDS.values():
            exporter.feed(feed)
        root = Path(tmp_path_factory.mktemp("prometheus"))
        with prometheus_server(root, [exporter.target], labels={"namespace": "ml"}) as server:
            server.wait_for_targets(1)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                # Scrapes from before the window too: a series with no sample at the window's start counts as
                # born in it.
                result = server.query("count_over_time(up[10s])")
                if result and float(result[0]["value"][1]) >= 9:  # type: ignore[index]
                    break
                time.sleep(0.25)
            else:
                raise TimeoutError("no 10 s of scrapes after 60s")
            yield server


def spec_for(url: str, **fields: Any) -> Analysis:
    return Analysis.model_validate(
        {"prometheus": url, "maxErrorRate": 0.05, "maxP99Latency": "250ms", "minRequests": 20, "window": WINDOW}
        | fields
    )


def target(feed: str) -> AnalysisTarget:
    return AnalysisTarget(model=MODEL, version=FEEDS[feed].version, namespace="ml", step=0, weight=25)


async def test_accuracy_precision_and_recall_come_from_the_labels_of_the_window(prometheus: PrometheusServer) -> None:
    spec = spec_for(prometheus.url, minAccuracy=0.7, minPrecision=0.7, minRecall=0.7, minLabels=40)
    result = await analyse(spec, target("labelled"))
    assert result.verdict == "Passed", result.reason
    values = result.values
    assert 60 <= values["labelled_predictions"] <= 140  # 20 a second over 5 s
    for metric in ("accuracy", "precision", "recall"):
        assert values[metric] == pytest.approx(0.8, abs=0.03), metric
    assert "accuracy 0.8" in result.reason
    assert "labelled)" in result.reason


async def test_accuracy_below_the_bound_fails_naming_it(prometheus: PrometheusServer) -> None:
    result = await analyse(spec_for(prometheus.url, minAccuracy=0.9, minLabels=40), target("labelled"))
    assert result.verdict == "Failed"
    assert re.fullmatch(r"accuracy 0\.[78]\d* below minAccuracy 0\.9", result.reason), result.reason


async def test_too_few_labels_are_inconclusive_however_good_they_are(prometheus: PrometheusServer) -> None:
    result = await analyse(spec_for(prometheus.url, minAccuracy=0.9, minLabels=40), target("sparse"))
    assert result.verdict == "Inconclusive"
    assert "labelled canary predictions in 5s, fewer than minLabels 40" in result.reason
    assert result.values["labelled_predictions"] < 40
    # The errors and latency were fine: only the labels were missing.
    assert result.values["error_rate"] == pytest.approx(0.0, abs=1e-9)


async def test_no_labels_at_all_are_inconclusive_with_zero_labelled(prometheus: PrometheusServer) -> None:
    result = await analyse(spec_for(prometheus.url, minRecall=0.5), target("unlabelled"))
    assert result.verdict == "Inconclusive"
    assert result.values["labelled_predictions"] == 0
    assert "recall" not in result.values  # no actual positive: no recall, rather than a guess


async def test_the_documented_custom_accuracy_metric_measures_the_same(prometheus: PrometheusServer) -> None:
    documented = re.search(r"- name: accuracy_10m\n\s+query: (.+)\n\s+min: ([0-9.]+)", DOCS.read_text())
    assert documented is not None, "docs/rollouts.md lost its custom accuracy example"
    query = documented.group(1).replace("[10m]", "[{{window}}]")  # the test's data is seconds old
    metric = {"name": "accuracy_custom", "query": query, "min": float(documented.group(2))}
    result = await analyse(spec_for(prometheus.url, metrics=[metric]), target("labelled"))
    assert result.verdict == "Failed"
    assert result.values["accuracy_custom"] == pytest.approx(0.8, abs=0.03)
    assert result.reason.startswith("accuracy_custom 0.")
    unlabelled = await analyse(spec_for(prometheus.url, metrics=[metric]), target("unlabelled"))
    assert unlabelled.verdict == "Inconclusive"
    assert "no data for accuracy_custom" in unlabelled.reason


async def test_the_shadow_count_covers_the_phase_so_far(prometheus: PrometheusServer) -> None:
    where = QueryTarget(MODEL, "canary", FEEDS["shadow"].version, "ml")
    since = datetime.now(UTC) - timedelta(seconds=5)
    count = await count_shadow_comparisons(prometheus.url, where, since)
    assert count.error is None
    assert 60 <= count.comparisons <= 140  # 20 a second over 5 s
    assert count.agreed / count.comparisons == pytest.approx(0.75, abs=0.03)
    # Another namespace, or a version nothing was compared for, counts nothing.
    elsewhere = await count_shadow_comparisons(prometheus.url, QueryTarget(MODEL, "canary", "5", "team-b"), since)
    assert (elsewhere.comparisons, elsewhere.agreed, elsewhere.error) == (0.0, 0.0, None)


async def test_an_unreachable_prometheus_makes_the_count_say_so(tmp_path: Path) -> None:
    with prometheus_server(tmp_path / "gone") as server:
        url = server.url
    count = await count_shadow_comparisons(url, QueryTarget(MODEL, "canary", "5", "ml"), datetime.now(UTC))
    assert count.error is not None
    assert count.error.startswith("Prometheus unavailable")


@pytest.fixture(scope="module")
def born_late() -> Iterator[tuple[PrometheusServer, QualityExporter]]:
    """Prometheus scraping an exporter with traffic but no label series yet, once it has a full window."""
    with quality_exporter() as exporter:
        exporter.feed(Feed(MODEL, "6", "canary", quality_series=False))
        with prometheus_server(Path(tempfile.mkdtemp()), [exporter.target], labels={"namespace": "ml"}) as server:
            server.wait_for_targets(1)
            time.sleep(6)
            yield server, exporter


async def test_labels_of_a_series_born_in_the_window_count_in_full(
    born_late: tuple[PrometheusServer, QualityExporter],
) -> None:
    # The serving pods create a label series at its first increment: one bulk upload of 100 labels, say.
    server, exporter = born_late
    exporter.labelled.labels(MODEL, "6", "canary", "1", "1", "true").inc(60)
    exporter.labelled.labels(MODEL, "6", "canary", "1", "0", "false").inc(40)
    exporter.comparisons.labels(MODEL, "6", "1", "true").inc(30)
    await asyncio.sleep(2.5)  # two scrapes, both inside the window

    result = await analyse(spec_for(server.url, minAccuracy=0.5, minLabels=100), target_of("6"))
    assert result.verdict == "Passed", result.reason
    # All of it (increase() alone counts none of it), and none twice.
    assert result.values["labelled_predictions"] == pytest.approx(100)
    assert result.values["accuracy"] == pytest.approx(0.6)
    count = await count_shadow_comparisons(
        server.url, QueryTarget(MODEL, "canary", "6", "ml"), datetime.now(UTC) - timedelta(seconds=4)
    )
    assert count.comparisons == pytest.approx(30)
    assert count.agreed == pytest.approx(30)


def target_of(version: str) -> AnalysisTarget:
    return AnalysisTarget(model=MODEL, version=version, namespace="ml", step=0, weight=25)

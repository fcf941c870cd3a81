"""Drift against a real Prometheus scraping the inference server's own feature-bin collector, fed with inputs
drawn from the training distribution (version 7) and from a shifted one (version 8)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelpilot.operator.analysis import DriftBins, read_drift_bins
from modelpilot.operator.drift import judge
from modelpilot.operator.handlers.drift import watch_drift
from modelpilot.operator.handlers.journal import Journal
from modelpilot.operator.rollout.queries import QueryTarget
from modelpilot.operator.spec import parse_spec
from tests.support.drift_exporter import FEATURES, ServedVersion, serving
from tests.support.prometheus import PrometheusServer, prometheus_server

MODEL = "fraud"
WINDOW = "10s"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    versions = [ServedVersion(MODEL, "7"), ServedVersion(MODEL, "8", shift=25.0)]
    with serving(versions):
        root = Path(tmp_path_factory.mktemp("prometheus"))
        with prometheus_server(root, [v.target for v in versions], labels={"namespace": "ml"}) as server:
            server.wait_for_targets(2)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                result = server.query(f"count_over_time(up[{WINDOW}])")
                if result and min(float(r["value"][1]) for r in result) >= 10:  # type: ignore[index]
                    break
                time.sleep(0.25)
            else:
                raise TimeoutError(f"no full {WINDOW} window of scrapes after 60s")
            yield server


async def _bins(prometheus: PrometheusServer, version: str) -> DriftBins:
    bins = await read_drift_bins(prometheus.url, QueryTarget(MODEL, "stable", version, "ml"), WINDOW)
    assert isinstance(bins, DriftBins), bins
    return bins


async def test_served_bins_line_up_with_the_reference_shares(prometheus: PrometheusServer) -> None:
    bins = await _bins(prometheus, "7")
    assert set(bins.reference) == set(FEATURES)
    for feature in FEATURES:
        assert len(bins.reference[feature]) == len(bins.served[feature]) == 12  # below, ten bins, above
        assert bins.reference[feature][0] == bins.reference[feature][-1] == 0.0
        assert sum(bins.reference[feature]) == pytest.approx(1.0)
        assert sum(bins.served[feature]) > 500


async def test_inputs_from_the_training_distribution_do_not_drift_and_shifted_ones_do(
    prometheus: PrometheusServer,
) -> None:
    steady = judge("psi", 0.2, (await _bins(prometheus, "7")).reference, (await _bins(prometheus, "7")).served, 200)
    assert steady.known
    assert steady.drifted == ()
    assert steady.score is not None
    assert steady.score < 0.05
    shifted_bins = await _bins(prometheus, "8")
    shifted = judge("psi", 0.2, shifted_bins.reference, shifted_bins.served, 200)
    assert shifted.drifted == ("amount",)
    ks = judge("ks", 0.3, shifted_bins.reference, shifted_bins.served, 200)
    assert ks.drifted == ("amount",)


async def test_a_version_without_series_and_too_few_inputs_are_unknown(prometheus: PrometheusServer) -> None:
    missing = await _bins(prometheus, "9")
    assert missing.reference == {}
    few = judge("psi", 0.2, (await _bins(prometheus, "8")).reference, (await _bins(prometheus, "8")).served, 10**9)
    assert not few.known
    assert few.drifted == ()


async def test_the_operator_records_drift_with_a_condition_and_one_event(prometheus: PrometheusServer) -> None:
    spec = parse_spec(
        {
            "model": {"name": MODEL, "alias": "champion"},
            "registry": {"trackingUri": "http://mlflow:5000"},
            "serving": {"image": "ghcr.io/modelpilot/inference:test"},
            "monitoring": {"drift": {"prometheus": prometheus.url, "window": WINDOW, "threshold": 0.2}},
        }
    )
    events: list[tuple[str, str, str]] = []

    async def write(_: dict[str, Any]) -> None:
        return None

    journal = Journal({}, 1, lambda *event: events.append(event), write)
    await watch_drift(spec, "ml", "fraud", "8", journal)
    drift = journal.status.drift
    assert drift is not None
    assert (drift.state, drift.features, drift.version) == ("Drifted", ["amount"], "8")
    assert drift.score is not None
    assert drift.score > 0.2
    # Every scored feature's score is kept, the worst one equal to the score, the others under the threshold.
    assert set(drift.scores) == set(FEATURES)
    assert drift.scores["amount"] == pytest.approx(drift.score, abs=1e-6)
    assert all(score < 0.2 for feature, score in drift.scores.items() if feature != "amount")
    condition = next(c for c in journal.status.conditions if c.type == "Drifted")
    assert (condition.status, condition.reason) == ("True", "Drifted")
    assert [e[1] for e in events] == ["DriftDetected"]
    # Evaluated again right away: not due, nothing changes; the stable version changing makes it due.
    await watch_drift(spec, "ml", "fraud", "8", journal)
    assert journal.status.drift is drift
    await watch_drift(spec, "ml", "fraud", "7", journal)
    assert journal.status.drift is not None
    assert journal.status.drift.state == "NotDrifted"
    assert [e[1] for e in events] == ["DriftDetected", "DriftCleared"]

"""Serving pods' metrics for model-quality rollouts, at rates a test sets and changes while it runs.

The counters are the serving side's contract, with its names and labels (Prometheus adds `namespace`, as
pod discovery does):

- `modelpilot_labelled_predictions_total{model, version, track, predicted, actual, correct}`: one per
  labelled prediction (binary classes "0" and "1", half of each);
- `modelpilot_shadow_comparisons_total{model, version, stable_version, agreed}`: one per candidate answer
  to mirrored traffic compared with stable's;

beside healthy HTTP traffic (`modelpilot_http_requests_total`, `modelpilot_http_request_duration_seconds`,
all 200 in 10 ms) so the error and latency checks pass. Every series of a feed is exported at 0 from the
start, so increase() counts the first increments too.

    with quality_exporter() as exporter:
        exporter.feed(Feed("fraud", "2", "canary", labels_per_second=10, accuracy=0.6))
        ... Prometheus scrapes exporter.target ...
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from tests.support.processes import free_port

TICK_SECONDS = 0.1
ROUTE = "/invocations"
LATENCY_SECONDS = 0.01
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass
class Feed:
    """What the pods of one version and track export, per second."""

    model: str
    version: str
    track: str
    requests_per_second: float = 20.0
    labels_per_second: float = 0.0
    accuracy: float = 1.0  # share of the labelled predictions that are correct
    comparisons_per_second: float = 0.0
    agreement: float = 1.0  # share of the shadow comparisons that agreed
    stable_version: str = "1"
    # False: traffic only, no label or comparison series at all (as a serving pod before its first label).
    quality_series: bool = True


class QualityExporter:
    """prometheus_client metrics on loopback, fed by a thread that replays the feeds by the wall clock."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "modelpilot_http_requests", "HTTP requests", ["route", "code", "model", "version", "track"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "modelpilot_http_request_duration_seconds", "HTTP latency", ["route", "model", "version", "track"],
            buckets=BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.labelled = Counter(
            "modelpilot_labelled_predictions", "Labelled predictions",
            ["model", "version", "track", "predicted", "actual", "correct"], registry=self.registry,
        )  # fmt: skip
        self.comparisons = Counter(
            "modelpilot_shadow_comparisons", "Shadow comparisons", ["model", "version", "stable_version", "agreed"],
            registry=self.registry,
        )  # fmt: skip
        self.port = free_port()
        self._feeds: dict[tuple[str, str], Feed] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._replay, daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def feed(self, feed: Feed) -> None:
        """Export `feed` from now on, replacing the feed of the same version and track."""
        for predicted, actual in (("1", "1"), ("0", "0"), ("1", "0"), ("0", "1")) if feed.quality_series else ():
            correct = "true" if predicted == actual else "false"
            self._labelled(feed, predicted, actual, correct).inc(0)
        for agreed in ("true", "false") if feed.quality_series else ():
            self.comparisons.labels(feed.model, feed.version, feed.stable_version, agreed).inc(0)
        with self._lock:
            self._feeds[(feed.version, feed.track)] = feed

    def _labelled(self, feed: Feed, predicted: str, actual: str, correct: str) -> Counter:
        return self.labelled.labels(feed.model, feed.version, feed.track, predicted, actual, correct)

    def _replay(self) -> None:
        carry: dict[tuple[str, str], float] = {}
        last = time.monotonic()
        while not self._stopped.wait(TICK_SECONDS):
            now = time.monotonic()
            elapsed, last = now - last, now
            with self._lock:
                feeds = list(self._feeds.items())
            for key, feed in feeds:
                requests = feed.requests_per_second * elapsed
                route = {"route": ROUTE, "model": feed.model, "version": feed.version, "track": feed.track}
                self.requests.labels(code="200", **route).inc(requests)
                carry[key] = carry.get(key, 0.0) + requests
                whole = int(carry[key])
                carry[key] -= whole
                for _ in range(whole):
                    self.latency.labels(**route).observe(LATENCY_SECONDS)
                if not feed.quality_series:
                    continue
                labels = feed.labels_per_second * elapsed
                right, wrong = labels * feed.accuracy, labels * (1 - feed.accuracy)
                for predicted in ("1", "0"):
                    self._labelled(feed, predicted, predicted, "true").inc(right / 2)
                    self._labelled(feed, predicted, "0" if predicted == "1" else "1", "false").inc(wrong / 2)
                compared = feed.comparisons_per_second * elapsed
                agreeing = self.comparisons.labels(feed.model, feed.version, feed.stable_version, "true")
                agreeing.inc(compared * feed.agreement)
                disagreeing = self.comparisons.labels(feed.model, feed.version, feed.stable_version, "false")
                disagreeing.inc(compared * (1 - feed.agreement))


@contextmanager
def quality_exporter() -> Iterator[QualityExporter]:
    """A running exporter with no feeds yet; stopped at the end of the block."""
    exporter = QualityExporter()
    server, _ = start_http_server(exporter.port, addr="127.0.0.1", registry=exporter.registry)
    exporter._thread.start()
    try:
        yield exporter
    finally:
        exporter._stopped.set()
        exporter._thread.join()
        server.shutdown()

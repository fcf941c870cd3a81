"""The log's metrics, in the server's registry. The rollout analysis reads the labelled and shadow counters:
their names and labels are a contract with the operator."""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from modelpilot.inference.prediction import bounded_label

DROP_REASONS = ("queue_full", "shutdown", "rejected")


class PredictionLogMetrics:
    """Counters and gauges of the writer, the labels endpoint and the shadow comparisons."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.dropped = Counter(
            "modelpilot_prediction_log_dropped",
            "Prediction rows not logged, by reason (queue_full: the database is slower than traffic or away).",
            ["reason"],
            registry=registry,
        )
        for reason in DROP_REASONS:  # born at 0, so rate() sees the first drop
            self.dropped.labels(reason)
        self.written = Counter(
            "modelpilot_prediction_log_written", "Prediction rows written to the log.", registry=registry
        )
        self.write_errors = Counter(
            "modelpilot_prediction_log_write_errors", "Failed attempts to write a batch (retried).", registry=registry
        )
        self.backlog = Gauge("modelpilot_prediction_log_backlog_rows", "Rows waiting to be written.", registry=registry)
        self.labelled = Counter(
            "modelpilot_labelled_predictions",
            "Logged predictions joined to their label, with the model, version and track of the prediction.",
            ["model", "version", "track", "predicted", "actual", "correct"],
            registry=registry,
        )
        self.unmatched = Counter(
            "modelpilot_labels_unmatched",
            "Labels stored before any prediction with their request id and row was logged.",
            registry=registry,
        )
        self.shadow = Counter(
            "modelpilot_shadow_comparisons",
            "Candidate rows compared with a stable row of the same inputs.",
            ["model", "version", "stable_version", "agreed"],
            registry=registry,
        )
        self._classes: set[str] = set()
        self._lock = threading.Lock()  # guards the bounded class labels; the counters are thread-safe

    def track_backlog(self, backlog: Callable[[], int]) -> None:
        """Read the backlog from `backlog` at each scrape."""
        self.backlog.set_function(lambda: float(backlog()))

    def count_labelled(self, model: str, version: str, track: str, predicted: int, actual: int, count: int) -> None:
        """`count` predictions of class `predicted` whose label is `actual`."""
        with self._lock:
            shown_predicted = bounded_label(predicted, self._classes)
            shown_actual = bounded_label(actual, self._classes)
        correct = "true" if predicted == actual else "false"
        self.labelled.labels(model, version, track, shown_predicted, shown_actual, correct).inc(count)

    def count_shadow(self, model: str, version: str, stable_version: str, agreed: bool, count: int) -> None:
        """`count` candidate rows that agreed (or not) with the stable version."""
        self.shadow.labels(model, version, stable_version, "true" if agreed else "false").inc(count)

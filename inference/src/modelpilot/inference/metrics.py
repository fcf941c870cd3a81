"""Prometheus metrics with bounded labels; the canary analysis queries these names."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelpilot.inference.prediction import Prediction, bounded_label, class_labels
from modelpilot.inference.reference import FeatureReference
from modelpilot.inference.validation import Features

# Fine steps between 5 ms and 1 s so p99 checks against thresholds like 250 ms interpolate well.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1,
    0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# Features whose served values are counted into the training reference's bins (each adds its bins + 2
# series): the first ones of the schema, so a wide model's series stay bounded.
MAX_BINNED_FEATURES = 64
# Rows of pending forward passes that trigger a fold of feature moments and class counts.
FOLD_ROWS = 4096


class FeatureStatistics(Collector):
    """Per-feature count, sum and sum of squares of served inputs (the moments the alert rules compare), and
    where the training reference gives bins, the count of served values in each (the operator's drift score).

    Kept in numpy arrays and turned into samples only at scrape time.
    """

    def __init__(self, features: tuple[str, ...]) -> None:
        self.labels: dict[str, str] = {}
        self._lock = threading.Lock()
        self.reset(features)

    def reset(self, features: tuple[str, ...], references: dict[str, FeatureReference] | None = None) -> None:
        """Start over for a (new) feature list and, where the training reference gives them, its bins."""
        with self._lock:
            self.features = features
            self.count = 0
            self.sums = np.zeros(len(features))
            self.squares = np.zeros(len(features))
            known = references or {}
            binned = [(index, name) for index, name in enumerate(features) if name in known][:MAX_BINNED_FEATURES]
            self.references = {index: (name, known[name]) for index, name in binned}
            self.bins = {index: np.zeros(len(r.labels), dtype=np.int64) for index, (_, r) in self.references.items()}

    def observe(self, parts: list[Features]) -> None:
        """Add the rows of several forward passes at once: a handful of vector operations for all of them."""
        width = len(self.features)
        if width == 0 or not parts:
            return
        matrix = self._matrix(parts, width)
        if matrix is None:
            return
        sums = matrix.sum(axis=0)
        squares = np.einsum("ij,ij->j", matrix, matrix)
        if not np.isfinite(sums).all():  # only when NaN inputs are allowed; the common path skips this
            sums, squares = np.nansum(matrix, axis=0), np.nansum(matrix * matrix, axis=0)
        columns = np.ascontiguousarray(matrix.T) if self.references else matrix  # one copy, then contiguous rows
        binned = {index: ref.count(columns[index]) for index, (_, ref) in self.references.items()}
        with self._lock:
            self.count += matrix.shape[0]
            self.sums += sums
            self.squares += squares
            for index, counts in binned.items():
                if index in self.bins:
                    self.bins[index] += counts

    def _matrix(self, parts: list[Features], width: int) -> np.ndarray[Any, Any] | None:
        """All rows as one float64 matrix of the first `width` values: one concatenation, one cast."""
        arrays = [p for p in parts if isinstance(p, np.ndarray)]
        if len(arrays) == len(parts):
            joined = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            return joined.reshape(joined.shape[0], -1)[:, :width].astype(np.float64)
        matrices = [m for m in (self._column_matrix(p) for p in parts if isinstance(p, dict)) if m is not None]
        return np.concatenate(matrices) if matrices else None

    def _column_matrix(self, features: dict[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, Any] | None:
        columns = [features.get(name) for name in self.features]
        if any(c is None or c.dtype.kind not in "fiub" for c in columns):
            return None
        return np.stack([np.asarray(c, dtype=np.float64) for c in columns if c is not None], axis=1)

    def collect(self) -> Iterator[Metric]:
        """Samples: one series per feature for each statistic."""
        names = ["feature", *self.labels]
        base = list(self.labels.values())
        count = CounterMetricFamily("modelpilot_feature_observations", "Rows observed per input feature.", labels=names)
        sums = GaugeMetricFamily("modelpilot_feature_sum", "Sum of an input feature over served rows.", labels=names)
        squares = GaugeMetricFamily(
            "modelpilot_feature_sum_squares", "Sum of squares of an input feature over served rows.", labels=names
        )
        binned_names = ["feature", "bin", *self.labels]
        bins = CounterMetricFamily(
            "modelpilot_feature_bin", "Served values per bin of the training reference.", labels=binned_names
        )
        reference = GaugeMetricFamily(
            "modelpilot_feature_reference_share", "Share of training rows per reference bin.", labels=binned_names
        )
        with self._lock:
            for index, feature in enumerate(self.features):
                count.add_metric([feature, *base], float(self.count))
                sums.add_metric([feature, *base], float(self.sums[index]))
                squares.add_metric([feature, *base], float(self.squares[index]))
            for index, (feature, ref) in self.references.items():
                shares = (0.0, *ref.shares, 0.0)
                for label, served, share in zip(ref.labels, self.bins[index], shares, strict=True):
                    bins.add_metric([feature, label, *base], float(served))
                    reference.add_metric([feature, label, *base], share)
        yield count
        yield sums
        yield squares
        yield bins
        yield reference


class ServingMetrics:
    """All metrics of one server, in their own registry so several apps can live in one process."""

    def __init__(self, model: str, version: str, track: str, *, traffic_routes: tuple[str, ...] = ()) -> None:
        self.registry = CollectorRegistry()
        # Each traffic route's 5xx series exists at 0 from the start: a series born with its first error
        # has no earlier sample, so rate() over a short window would miss that error (and the next ones
        # until a second scrape), and the canary analysis would read a failing candidate as error-free.
        self.traffic_routes = traffic_routes
        r = self.registry
        self.requests = Counter(
            "modelpilot_http_requests",
            "HTTP requests by route template and status code.",
            ["route", "code", "model", "version", "track"],
            registry=r,
        )
        self.duration = Histogram(
            "modelpilot_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route", "model", "version", "track"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "modelpilot_predictions", "Predicted rows by class.", ["model", "version", "track", "class"], registry=r
        )
        self.batch_size = Histogram(
            "modelpilot_batch_size",
            "Rows per forward pass.",
            ["model", "version", "track"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.ready = Gauge(
            "modelpilot_model_ready",
            "1 when the model is loaded and warmed up.",
            ["model", "version", "track"],
            registry=r,
        )
        self.features = FeatureStatistics(())
        r.register(self.features)
        self._seen_classes: set[str] = set()
        # Forward passes not yet folded into the feature moments and class counts (see `observe_batch`).
        self._pending_features: list[Features] = []
        self._pending_classes: list[np.ndarray[Any, Any]] = []
        self._pending_outputs: list[Any] = []  # model outputs whose classes are not computed yet
        self._pending_rows = 0
        self._request_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._class_children: dict[str, Any] = {}
        self.set_identity(model, version, track)

    def set_identity(self, model: str, version: str, track: str) -> None:
        """The model/version/track labels; cached label children are rebuilt after a change."""
        self.fold()  # pending rows belong to the old labels
        self.identity = (model, version, track)
        self._request_children.clear()
        self._class_children.clear()
        self._batch_child = self.batch_size.labels(model, version, track)
        self.features.labels = {"model": model, "version": version, "track": track}
        for route in self.traffic_routes:
            self.requests.labels(route, "500", model, version, track)

    def observe_request(self, route: str, code: int, seconds: float) -> None:
        """Count one request and its latency."""
        children = self._request_children.get((route, code))
        if children is None:
            model, version, track = self.identity
            children = (
                self.requests.labels(route, str(code), model, version, track),
                self.duration.labels(route, model, version, track),
            )
            self._request_children[(route, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_batch(self, features: Features, prediction: Prediction) -> None:
        """Batch size now; feature moments and class counts at the next fold.

        A forward pass only keeps references to its arrays. They are folded in every `FOLD_ROWS` rows and
        before each scrape, so small batches share the numpy work and a scrape always sees every row.
        """
        self._batch_child.observe(prediction.rows)
        self._pending_features.append(features)
        if not prediction.labelled:
            self._pending_outputs.append(prediction.values)
        elif prediction.classes is not None:
            self._pending_classes.append(prediction.classes)
        self._pending_rows += prediction.rows
        if self._pending_rows >= FOLD_ROWS:
            self.fold()

    def fold(self) -> None:
        """Fold pending forward passes into the feature moments and the per-class counters."""
        features, classes, outputs = self._pending_features, self._pending_classes, self._pending_outputs
        self._pending_features, self._pending_classes, self._pending_outputs, self._pending_rows = [], [], [], 0
        self.features.observe(features)
        classes += _labels_of(outputs)
        if classes:
            self._count_classes(classes[0] if len(classes) == 1 else np.concatenate(classes))

    def _count_classes(self, classes: np.ndarray[Any, Any]) -> None:
        if classes.dtype.kind in "iu" and classes.size and classes.min() >= 0:
            counts = np.bincount(classes)
            pairs = [(value, int(counts[value])) for value in np.flatnonzero(counts).tolist()]
        else:
            tally: dict[Any, int] = {}
            for value in classes.tolist():
                tally[value] = tally.get(value, 0) + 1
            pairs = list(tally.items())
        for value, count in pairs:
            label = bounded_label(value, self._seen_classes)
            child = self._class_children.get(label)
            if child is None:
                child = self.predictions.labels(*self.identity, label)
                self._class_children[label] = child
            child.inc(count)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric, after folding what is pending."""
        self.fold()
        return generate_latest(self.registry)

    def set_ready(self, ready: bool) -> None:
        """Export readiness as a gauge too."""
        self.ready.labels(*self.identity).set(1 if ready else 0)


def _labels_of(outputs: list[Any]) -> list[np.ndarray[Any, Any]]:
    """The classes of several passes' outputs: one argmax over all of them when they are arrays of one layout."""
    if not outputs:
        return []
    arrays = [o for o in outputs if isinstance(o, np.ndarray) and o.ndim >= 1]
    if len(arrays) == len(outputs) and len({(a.shape[1:], a.dtype) for a in arrays}) == 1:
        outputs = [arrays[0] if len(arrays) == 1 else np.concatenate(arrays)]
    labels = [class_labels(output) for output in outputs]
    return [label for label in labels if label is not None]

"""The prediction log of one server: writer, maintenance and label store, started and stopped together."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from prometheus_client import CollectorRegistry

from modelpilot.inference.prediction import Prediction
from modelpilot.inference.predlog.metrics import PredictionLogMetrics
from modelpilot.inference.predlog.records import LoggedRequest
from modelpilot.inference.settings import Settings
from modelpilot.inference.validation import Features

log = logging.getLogger("modelpilot.inference.predlog")


class PredictionLog:
    """What the data plane calls (`record`) and what the app starts, stops and routes labels to."""

    def __init__(self, settings: Settings, model: Any, registry: CollectorRegistry) -> None:
        # psycopg (about 9 MiB resident) is imported only by a server that keeps a prediction log.
        from modelpilot.inference.predlog.label_store import LabelStore
        from modelpilot.inference.predlog.maintenance import Maintenance
        from modelpilot.inference.predlog.writer import PredictionLogWriter

        dsn = settings.predlog_dsn.get_secret_value()
        self.settings = settings
        self.model = model
        self.metrics = PredictionLogMetrics(registry)
        self.writer = PredictionLogWriter(
            dsn,
            self.metrics,
            inputs=settings.predlog_inputs,
            sample_rate=settings.predlog_sample_rate,
            queue_rows=settings.predlog_queue_rows,
            batch_rows=settings.predlog_batch_rows,
            flush_seconds=settings.predlog_flush_seconds,
            retry_max_seconds=settings.predlog_retry_max_seconds,
        )
        self.maintenance = Maintenance(
            dsn,
            self.metrics,
            model,
            track=settings.track,
            shadow_interval=settings.predlog_shadow_interval_seconds,
            shadow_window=settings.predlog_shadow_window_seconds,
            shadow_batch_rows=settings.predlog_shadow_batch_rows,
            retention_days=settings.predlog_retention_days,
            retention_interval=settings.predlog_retention_interval_seconds,
            delete_batch_rows=settings.predlog_delete_batch_rows,
        )
        self.labels = LabelStore(dsn, self.metrics)
        if self.maintenance.shadow_interval > 0 and settings.predlog_inputs == "none":
            log.warning("prediction log: inputs are not hashed (MODELPILOT_PREDLOG_INPUTS=none): no shadow comparisons")

    def record(self, request_id: str | None, features: Features, prediction: Prediction) -> None:
        """Hand one answered request to the writer (O(1); rows are converted in the writer thread)."""
        self.writer.record(
            LoggedRequest(
                request_id or os.urandom(16).hex(),
                features,
                prediction,
                time.time(),
                self.model.name,
                self.model.version,
                self.settings.track,
            )
        )

    def start(self) -> None:
        """Start the writer and maintenance threads."""
        self.writer.start()
        self.maintenance.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Flush within `timeout`, then stop both threads."""
        self.maintenance.stop()
        self.writer.stop(timeout)


def prediction_log_for(settings: Settings, model: Any, registry: CollectorRegistry) -> PredictionLog | None:
    """The log when a DSN is configured, else None."""
    if not settings.predlog_dsn.get_secret_value():
        return None
    return PredictionLog(settings, model, registry)

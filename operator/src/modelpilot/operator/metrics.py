"""Prometheus metrics of the operator process. Label sets are bounded: no versions, no free text."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "modelpilot_operator_reconciles",
    "Reconciliations of ModelDeployments by result (ok, retry, invalid, error).",
    ["result"],
)
RECONCILE_DURATION = Histogram(
    "modelpilot_operator_reconcile_duration_seconds",
    "Wall time of one reconciliation.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REGISTRY_LATENCY = Histogram(
    "modelpilot_operator_registry_request_duration_seconds",
    "Latency of MLflow registry requests by operation and HTTP status (or error).",
    ["operation", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REGISTRY_SHARED_READS = Counter(
    "modelpilot_operator_registry_shared_reads",
    "Registry model reads answered by another resource's read of the same model (in the sharing window).",
)
KUBE_REQUESTS = Counter(
    "modelpilot_operator_kube_requests",
    "Kubernetes API requests of the operator's own client (Kopf's watches and Events aside) by verb and kind.",
    ["verb", "kind"],
)
ROLLOUTS = Counter(
    "modelpilot_operator_rollouts",
    "Rollout transitions by outcome (started, promoted, rolled_back, aborted, superseded).",
    ["outcome"],
)
ROLLOUT_DURATION = Histogram(
    "modelpilot_operator_rollout_duration_seconds",
    "Time from rollout start to promotion or rollback.",
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
CANARY_WEIGHT = Gauge(
    "modelpilot_operator_canary_weight",
    "Current canary traffic weight in percent.",
    ["namespace", "name"],
)
TRAINING_JOBS = Counter(
    "modelpilot_operator_training_jobs",
    "Training Jobs by event (started, succeeded, failed).",
    ["event"],
)
DRIFT_SCORE = Gauge(
    "modelpilot_operator_drift_score",
    "Largest feature drift score of the stable track's served inputs (monitoring.drift); NaN when unknown.",
    ["namespace", "name", "method"],
)
DRIFT_THRESHOLD = Gauge(
    "modelpilot_operator_drift_threshold",
    "monitoring.drift.threshold of the ModelDeployment, for alerting on modelpilot_operator_drift_score.",
    ["namespace", "name", "method"],
)

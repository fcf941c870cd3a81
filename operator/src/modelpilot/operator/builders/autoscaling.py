"""The autoscaler of one track: a HorizontalPodAutoscaler, or a KEDA ScaledObject that drives one.

Which one is the operator's autoscaler backend (`MODELPILOT_AUTOSCALER`, set by the chart from what the
cluster serves): with `keda`, a track whose spec asks for `serving.autoscaling.requestRate` gets a
ScaledObject with two triggers, CPU utilisation and a Prometheus query of the track's request rate; KEDA
makes and owns the HPA (`keda-hpa-<track name>`) and serves the external metric to it. Otherwise, and for a
spec without `requestRate`, the operator's own HPA scales on CPU (plus an adapter's per-pod metric).

The query counts the requests of the track's pods in the ModelDeployment's namespace (all versions: during
a rolling update both versions' pods serve the track), so with a weighted router each track scales on the
share of traffic the router gives it and the weights hold however many pods either side runs.
"""

from __future__ import annotations

from typing import Any, Literal

from modelpilot.operator.builders.common import ObjectKey, Owner, Track, metadata, quantity, track_name
from modelpilot.operator.builders.server_metrics import REQUESTS_METRIC, traffic_matchers
from modelpilot.operator.spec import Autoscaling, ModelDeploymentSpec

Autoscaler = Literal["hpa", "keda"]

HPA_API_VERSION = "autoscaling/v2"
HPA_KIND = "HorizontalPodAutoscaler"
SCALED_OBJECT_API_VERSION = "keda.sh/v1alpha1"
SCALED_OBJECT_KIND = "ScaledObject"
# KEDA's own name for the HPA it makes; never the operator's, so switching backends deletes only its own.
KEDA_HPA_PREFIX = "keda-hpa-"
REQUEST_RATE_TRIGGER = "request-rate"
CPU_TRIGGER = "cpu"
# How often KEDA asks Prometheus (the HPA asks KEDA every 15 s on its own schedule).
KEDA_POLLING_SECONDS = 15


def uses_keda(spec: ModelDeploymentSpec, autoscaler: Autoscaler) -> bool:
    """Whether a track of this spec is scaled by a KEDA ScaledObject (else by the operator's HPA, if any)."""
    autoscaling = spec.serving.autoscaling
    return autoscaler == "keda" and autoscaling is not None and autoscaling.request_rate is not None


def autoscaler_keys(name: str, autoscaler: Autoscaler) -> list[ObjectKey]:
    """Every autoscaling object a track named `name` can have under this backend (to delete them all)."""
    keys: list[ObjectKey] = [(HPA_API_VERSION, HPA_KIND, name)]
    if autoscaler == "keda":
        keys.insert(0, (SCALED_OBJECT_API_VERSION, SCALED_OBJECT_KIND, name))
    return keys


def unbuilt_autoscaler_keys(name: str, spec: ModelDeploymentSpec, autoscaler: Autoscaler) -> list[ObjectKey]:
    """The autoscaling objects of a track that this spec no longer has (autoscaling off, or a backend switch)."""
    if spec.serving.autoscaling is None:
        return autoscaler_keys(name, autoscaler)
    if uses_keda(spec, autoscaler):
        return [(HPA_API_VERSION, HPA_KIND, name)]
    if autoscaler == "keda":
        return [(SCALED_OBJECT_API_VERSION, SCALED_OBJECT_KIND, name)]
    return []


def request_rate_query(namespace: str, model: str, track: Track, window: str) -> str:
    """Requests per second the pods of one track serve, probes and scrapes left out."""
    selector = "{" + ",".join(traffic_matchers(namespace, model, track)) + "}"
    return f"sum(rate({REQUESTS_METRIC}{selector}[{window}]))"


def _behavior(autoscaling: Autoscaling) -> dict[str, Any]:
    """Scale down only after the load has stayed low for the spec's window (5 minutes, the HPA's default,
    unless the spec says otherwise): a short lull between bursts does not take pods the next one needs."""
    return {"scaleDown": {"stabilizationWindowSeconds": autoscaling.scale_down_stabilization_seconds}}


def _cpu_metric(autoscaling: Autoscaling) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": autoscaling.target_cpu_utilization},
        },
    }


def build_autoscaler(
    owner: Owner,
    spec: ModelDeploymentSpec,
    track: Track,
    object_labels: dict[str, str],
    *,
    min_replicas: int | None,
    max_replicas: int | None,
    autoscaler: Autoscaler,
) -> dict[str, Any]:
    """The HPA or ScaledObject of one track, between `min_replicas` and `max_replicas` (None: the spec's)."""
    autoscaling = spec.serving.autoscaling
    if autoscaling is None:
        raise ValueError("spec.serving.autoscaling is not set: there is no autoscaler to build")
    minimum = min_replicas if min_replicas is not None else autoscaling.min_replicas
    minimum = max(minimum, 1)  # 0 needs the HPAScaleToZero feature gate (and KEDA's activation)
    maximum = max(max_replicas if max_replicas is not None else autoscaling.max_replicas, minimum)
    name = track_name(owner.name, track)
    if uses_keda(spec, autoscaler):
        return _scaled_object(owner, spec, track, object_labels, minimum, maximum)
    metrics = [_cpu_metric(autoscaling)]
    if autoscaling.metric is not None:
        target = {"type": "AverageValue", "averageValue": quantity(autoscaling.metric.target_average_value)}
        metrics.append({"type": "Pods", "pods": {"metric": {"name": autoscaling.metric.name}, "target": target}})
    return {
        "apiVersion": HPA_API_VERSION,
        "kind": HPA_KIND,
        "metadata": metadata(owner, name, object_labels),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": metrics,
            "behavior": _behavior(autoscaling),
        },
    }


def _scaled_object(
    owner: Owner, spec: ModelDeploymentSpec, track: Track, object_labels: dict[str, str], minimum: int, maximum: int
) -> dict[str, Any]:
    autoscaling = spec.serving.autoscaling
    prometheus = spec.request_rate_prometheus
    # uses_keda and the spec's validation guarantee all three.
    assert autoscaling is not None
    assert autoscaling.request_rate is not None
    assert prometheus is not None
    rate = autoscaling.request_rate
    name = track_name(owner.name, track)
    return {
        "apiVersion": SCALED_OBJECT_API_VERSION,
        "kind": SCALED_OBJECT_KIND,
        "metadata": metadata(owner, name, object_labels),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": minimum,
            "maxReplicaCount": maximum,
            "pollingInterval": KEDA_POLLING_SECONDS,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior(autoscaling)}},
            "triggers": [
                {
                    "type": "prometheus",
                    "name": REQUEST_RATE_TRIGGER,
                    # The query sums the track; AverageValue divides it by the replicas the HPA sees.
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": prometheus,
                        "query": request_rate_query(owner.namespace, spec.model.name, track, rate.window),
                        "threshold": f"{rate.target_per_replica:g}",
                        # No traffic (an empty result) is a rate of 0, not an error that freezes the scale.
                        "ignoreNullValues": "true",
                    },
                },
                {
                    "type": "cpu",
                    "name": CPU_TRIGGER,
                    "metricType": "Utilization",
                    "metadata": {"value": str(autoscaling.target_cpu_utilization)},
                },
            ],
        },
    }

"""Valid and invalid ModelDeployment specs, shared by the pydantic tests and the API-server tests."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Spec = dict[str, Any]


def valid_spec() -> Spec:
    """A spec that uses every section and passes every rule."""
    return {
        "model": {"name": "fraud-detector", "alias": "champion", "candidateAlias": "challenger"},
        "registry": {"trackingUri": "http://mlflow.mlflow:5000", "pollInterval": "15s"},
        "serving": {
            "image": "ghcr.io/modelpilot/inference:0.1.0",
            "replicas": 2,
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"nvidia.com/gpu": 1}},
            "autoscaling": {"minReplicas": 2, "maxReplicas": 10, "targetCPUUtilization": 70},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
        "traffic": {
            "router": "gateway",
            "gateway": {"parentRefs": [{"name": "public"}], "hostnames": ["m.example.com"]},
            "header": {
                "name": "x-model-track",
                "valueFrom": {"secretKeyRef": {"name": "canary-header", "key": "value"}},
            },
        },
        "rollout": {
            "steps": [10, 25, 50, 100],
            "interval": "60s",
            "analysis": {
                "prometheus": "http://prometheus.monitoring:9090",
                "maxErrorRate": 0.01,
                "maxP99Latency": "250ms",
                "minRequests": 50,
                "failureLimit": 2,
                "metrics": [{"name": "attack_share", "query": "sum(rate(x[1m]))", "max": 0.5}],
                "minAccuracy": 0.9,
                "minRecall": 0.8,
                "minLabels": 100,
            },
            "shadow": {"minComparisons": 500, "minAgreement": 0.97, "maxDuration": "20m"},
        },
        "training": {
            "image": "ghcr.io/modelpilot/train:0.1.0",
            "schedule": "0 3 * * 0",
            "retrainOnDrift": True,
        },
        "monitoring": {"drift": {"method": "psi", "threshold": 0.2, "window": "1h"}},
    }


@dataclass(frozen=True)
class InvalidCase:
    """A change that makes `valid_spec()` invalid, and the words the rejection must contain."""

    name: str
    mutate: Callable[[Spec], None]
    message: str

    def spec(self) -> Spec:
        """The invalid spec."""
        spec = copy.deepcopy(valid_spec())
        self.mutate(spec)
        return spec


def _set(path: str, value: Any) -> Callable[[Spec], None]:
    def mutate(spec: Spec) -> None:
        *parents, leaf = path.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        if value is _DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value

    return mutate


def _all(*mutations: Callable[[Spec], None]) -> Callable[[Spec], None]:
    def mutate(spec: Spec) -> None:
        for mutation in mutations:
            mutation(spec)

    return mutate


_DELETE = object()

INVALID_CASES = [
    InvalidCase(
        "shadow phase with the replica router",
        _all(_set("traffic", {"router": "replicas"})),
        "rollout.shadow needs traffic.router gateway or ingress: the replica router cannot mirror requests",
    ),
    InvalidCase(
        "shadow phase without traffic",
        _set("traffic", _DELETE),
        "rollout.shadow needs traffic.router gateway or ingress",
    ),
    InvalidCase("shadow maxDuration zero", _set("rollout.shadow.maxDuration", "0s"), "maxDuration must be a positive"),
    InvalidCase("minAccuracy above 1", _set("rollout.analysis.minAccuracy", 1.5), "minAccuracy"),
    InvalidCase(
        "custom metric named accuracy",
        _set("rollout.analysis.metrics", [{"name": "accuracy", "query": "q", "min": 0.5}]),
        "may not take the name of a built-in one",
    ),
    InvalidCase(
        "drift without prometheus",
        _all(_set("rollout", _DELETE), _set("model.candidateAlias", _DELETE)),
        "monitoring.drift needs monitoring.drift.prometheus or rollout.analysis.prometheus",
    ),
    InvalidCase("alias and stage", _set("model.stage", "Production"), "exactly one of model.alias or model.stage"),
    InvalidCase("neither alias nor stage", _set("model.alias", _DELETE), "exactly one of model.alias or model.stage"),
    InvalidCase(
        "candidate stage with alias",
        _all(_set("model.candidateAlias", _DELETE), _set("model.candidateStage", "Staging")),
        "model.candidateStage goes with model.stage",
    ),
    InvalidCase(
        "candidate alias with stage",
        _all(_set("model.alias", _DELETE), _set("model.stage", "Production")),
        "model.candidateAlias goes with model.alias",
    ),
    InvalidCase(
        "candidate alias equals alias",
        _set("model.candidateAlias", "champion"),
        "must differ from model.alias",
    ),
    InvalidCase("reserved alias", _set("model.alias", "v3"), "reserved by MLflow"),
    InvalidCase("steps descending", _set("rollout.steps", [50, 25, 100]), "ascending order"),
    InvalidCase("steps repeat", _set("rollout.steps", [10, 10, 100]), "must not repeat"),
    InvalidCase("steps not ending at 100", _set("rollout.steps", [10, 25, 50]), "must end at 100"),
    InvalidCase("step above 100", _set("rollout.steps", [10, 150]), "100"),
    InvalidCase("zero interval", _set("rollout.interval", "0s"), "positive duration"),
    InvalidCase("interval not a duration", _set("rollout.interval", "one minute"), "interval"),
    InvalidCase(
        "min replicas above max",
        _set("serving.autoscaling", {"minReplicas": 5, "maxReplicas": 2}),
        "minReplicas must not exceed maxReplicas",
    ),
    InvalidCase(
        "gateway router without gateway",
        _set("traffic.gateway", _DELETE),
        "router gateway needs traffic.gateway",
    ),
    InvalidCase(
        "ingress router without ingress",
        _set("traffic.router", "ingress"),
        "router ingress needs traffic.ingress",
    ),
    InvalidCase("unknown router", _set("traffic.router", "istio"), "router"),
    InvalidCase(
        "grpc route on the http route's listener and hostnames",
        _set("traffic.gateway.grpc", {"parentRefs": [{"name": "public"}]}),
        "accepts only one of an HTTPRoute and a GRPCRoute",
    ),
    InvalidCase(
        "grpc route on a named listener of a gateway the http route takes whole",
        _set(
            "traffic.gateway.grpc",
            {"parentRefs": [{"name": "public", "sectionName": "grpc"}], "hostnames": ["m.example.com"]},
        ),
        "accepts only one of an HTTPRoute and a GRPCRoute",
    ),
    InvalidCase("grpc route without parentRefs", _set("traffic.gateway.grpc", {"parentRefs": []}), "parentRefs"),
    InvalidCase(
        "custom metric without bounds",
        _set("rollout.analysis.metrics", [{"name": "x", "query": "up"}]),
        "needs min, max or both",
    ),
    InvalidCase(
        "custom metric named like a built-in one",
        _set("rollout.analysis.metrics", [{"name": "error_rate", "query": "up", "max": 1}]),
        "may not take the name of a built-in one",
    ),
    InvalidCase(
        "custom metric names repeat",
        _set(
            "rollout.analysis.metrics",
            [{"name": "share", "query": "up", "max": 1}, {"name": "share", "query": "down", "min": 0}],
        ),
        "custom metric names must be unique",
    ),
    InvalidCase(
        "rollout without candidate",
        _set("model.candidateAlias", _DELETE),
        "rollout needs model.candidateAlias",
    ),
    InvalidCase("error rate above one", _set("rollout.analysis.maxErrorRate", 1.5), "maxErrorRate"),
    InvalidCase("tracking uri not http", _set("registry.trackingUri", "mlflow:5000"), "trackingUri"),
    InvalidCase("missing serving image", _set("serving.image", _DELETE), "image"),
    InvalidCase("serving port is the metrics port", _set("serving.port", 9090), "must not be 9090"),
    InvalidCase(
        "serving auth names no method", _set("serving.auth", {"jwtAudience": "x"}), "needs apiKeys or jwtSecret"
    ),
    InvalidCase(
        "serving auth key without a name",
        _set("serving.auth", {"apiKeys": {"key": "api-keys"}}),
        "name",
    ),
    InvalidCase("bad cron schedule", _set("training.schedule", "every sunday"), "schedule"),
]

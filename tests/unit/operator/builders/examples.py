"""Example ModelDeployment specs the builder tests (unit and cluster) build objects from."""

from __future__ import annotations

import copy
from typing import Any

from modelpilot.operator.builders.common import Owner, Track
from modelpilot.operator.builders.routing import RouterPlan
from modelpilot.operator.builders.serving import TrackPlan
from modelpilot.operator.spec import ModelDeploymentSpec, parse_spec

OWNER = Owner(name="fraud", namespace="ml", uid="0b6f3c1e-5a43-4c1e-9d6b-2f1d9a7c0e11")

_GATEWAY: dict[str, Any] = {
    "model": {"name": "fraud-detector", "alias": "champion", "candidateAlias": "challenger"},
    "registry": {"trackingUri": "http://mlflow.mlflow:5000", "credentialsSecret": "mlflow-auth"},
    "serving": {
        "image": "ghcr.io/modelpilot/inference:0.1.0",
        "replicas": 2,
        "port": 8080,
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"memory": "2Gi", "nvidia.com/gpu": 1},
        },
        "autoscaling": {
            "minReplicas": 2,
            "maxReplicas": 10,
            "targetCPUUtilization": 70,
            "metric": {"name": "model_requests_per_second", "targetAverageValue": 50},
        },
        "nodeSelector": {"node.kubernetes.io/instance-type": "g5.xlarge"},
        "env": [{"name": "MODELPILOT_MAX_BATCH_SIZE", "value": "32"}],
        "auth": {"apiKeys": {"name": "fraud-clients", "key": "api-keys"}},
    },
    "traffic": {
        "router": "gateway",
        "gateway": {
            "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
            "hostnames": ["fraud.example.com"],
            "path": "/",
        },
        "header": {
            "name": "x-model-track",
            "valueFrom": {"secretKeyRef": {"name": "fraud-canary-header", "key": "value"}},
        },
    },
    "rollout": {"steps": [10, 50, 100], "interval": "30s", "analysis": {"prometheus": "http://prometheus:9090"}},
    "training": {
        "image": "ghcr.io/modelpilot/train:0.1.0",
        "args": ["--epochs", "20"],
        "data": {"uri": "s3://modelpilot-data/flows.parquet"},
        "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"nvidia.com/gpu": 1}},
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "schedule": "0 3 * * 0",
        "backoffLimit": 1,
        "activeDeadlineSeconds": 3600,
    },
}


def gateway_raw() -> dict[str, Any]:
    """Every section used: GPU serving with autoscaling, an HTTPRoute, GPU training on a schedule."""
    return copy.deepcopy(_GATEWAY)


def ingress_raw() -> dict[str, Any]:
    """Legacy stages, fixed replicas without a GPU, an ingress-nginx router with TLS."""
    raw = gateway_raw()
    raw["model"] = {"name": "fraud-detector", "stage": "Production", "candidateStage": "Staging"}
    raw["registry"] = {"trackingUri": "https://mlflow.example.com"}
    raw["serving"] = {"image": "ghcr.io/modelpilot/inference:0.1.0", "replicas": 3, "port": 9000}
    raw["traffic"] = {
        "router": "ingress",
        "ingress": {"className": "nginx", "host": "fraud.example.com", "path": "/", "tls": {"secretName": "fraud-tls"}},
        "header": {
            "name": "x-model-track",
            "valueFrom": {"secretKeyRef": {"name": "fraud-canary-header", "key": "value"}},
        },
    }
    raw["training"] = {"image": "ghcr.io/modelpilot/train:0.1.0"}
    return raw


def replicas_raw() -> dict[str, Any]:
    """The smallest spec: defaults everywhere, weight by replica ratio, no rollout, no training."""
    return {
        "model": {"name": "fraud-detector", "alias": "champion"},
        "registry": {"trackingUri": "http://mlflow.mlflow:5000"},
        "serving": {"image": "ghcr.io/modelpilot/inference:0.1.0"},
    }


def spec_of(raw: dict[str, Any]) -> ModelDeploymentSpec:
    """The parsed spec."""
    return parse_spec(raw)


def track_plan(
    track: Track = "stable",
    version: str = "7",
    replicas: int = 2,
    min_replicas: int | None = None,
    trusted_proxies: str = "",
) -> TrackPlan:
    """A plan for `fraud-detector` at `version`."""
    return TrackPlan(
        track=track,
        version=version,
        model_uri=f"models:/fraud-detector/{version}",
        replicas=replicas,
        min_replicas=min_replicas,
        trusted_proxies=trusted_proxies,
    )


# What the operator reads from the header's Secret in these examples.
HEADER_VALUE = "3f9c2a7d81b04e6a"

ROUTER_PLANS = {
    "stable-only": RouterPlan(canary_weight=0, canary_present=False),
    "canary-25": RouterPlan(canary_weight=25, canary_present=True, canary_header_value=HEADER_VALUE),
}

"""The ModelDeployment spec as pydantic models: the one source of truth for the CRD schema.

`crd.py` turns these models (descriptions, defaults, bounds and the CEL rules attached with
`x-kubernetes-validations`) into the OpenAPI schema the API server enforces; the operator parses
every object with the same models, so both sides agree on what a valid spec is. One module per
section of the spec; everything is importable from here.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, ValidationError, model_validator

from modelpilot.operator.spec.base import (
    DURATION_PATTERN,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    Duration,
    Quantity,
    SecretKeyRef,
    SpecModel,
    Stage,
    cel_rules,
    parse_duration,
)
from modelpilot.operator.spec.model import ModelRef, RegistrySpec
from modelpilot.operator.spec.rollout import Analysis, CustomMetric, Rollout, Shadow
from modelpilot.operator.spec.serving import (
    Autoscaling,
    CustomScalingMetric,
    EnvVar,
    RequestRateScaling,
    Resources,
    Scheduling,
    Serving,
    ServingAuth,
    ServingServiceAccount,
    Toleration,
)
from modelpilot.operator.spec.traffic import (
    GatewayRoute,
    GrpcGatewayRoute,
    HeaderOverride,
    HeaderValueSource,
    IngressRoute,
    IngressTLS,
    ParentRef,
    ReplicaRouter,
    Traffic,
)
from modelpilot.operator.spec.training import Drift, Monitoring, Training, TrainingData

DRIFT_NEEDS_PROMETHEUS = "monitoring.drift needs monitoring.drift.prometheus or rollout.analysis.prometheus"
SHADOW_NEEDS_MIRROR = (
    "rollout.shadow needs traffic.router gateway or ingress: the replica router cannot mirror requests "
    "(set rollout.shadow.enabled false, or route through a Gateway or ingress-nginx)"
)
REQUEST_RATE_NEEDS_PROMETHEUS = (
    "serving.autoscaling.requestRate needs serving.autoscaling.requestRate.prometheus or rollout.analysis.prometheus"
)


class ModelDeploymentSpec(SpecModel):
    """Desired state: a registered model served, rolled out progressively and retrained."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "!has(self.rollout) || has(self.model.candidateAlias) || has(self.model.candidateStage)",
                "rollout needs model.candidateAlias or model.candidateStage to know what to roll out",
            ),
            (
                "!has(self.monitoring) || !has(self.monitoring.drift) || has(self.monitoring.drift.prometheus)"
                " || has(self.rollout)",
                DRIFT_NEEDS_PROMETHEUS,
            ),
            (
                "!has(self.serving.autoscaling) || !has(self.serving.autoscaling.requestRate)"
                " || has(self.serving.autoscaling.requestRate.prometheus) || has(self.rollout)",
                REQUEST_RATE_NEEDS_PROMETHEUS,
            ),
            (
                "!has(self.rollout) || !has(self.rollout.shadow) || !self.rollout.shadow.enabled"
                " || (has(self.traffic) && self.traffic.router != 'replicas')",
                SHADOW_NEEDS_MIRROR,
            ),
        )
    )

    model: ModelRef = Field(description="The registered model and its registry pointers.")
    registry: RegistrySpec = Field(description="The MLflow tracking server.")
    serving: Serving = Field(description="The inference Deployments.")
    traffic: Traffic = Field(default_factory=Traffic, description="How traffic reaches the tracks.")
    rollout: Rollout | None = Field(
        default=None,
        description="Canary rollout of candidate versions; unset rolls the stable track to each new stable version.",
    )
    training: Training | None = Field(default=None, description="Training Jobs; unset disables training.")
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Drift monitoring.")

    @model_validator(mode="after")
    def _candidate_needs_rollout(self) -> ModelDeploymentSpec:
        if self.rollout is not None and not self.model.has_candidate:
            raise ValueError("rollout needs model.candidateAlias or model.candidateStage to know what to roll out")
        return self

    @model_validator(mode="after")
    def _shadow_needs_mirror(self) -> ModelDeploymentSpec:
        if self.rollout is not None and self.rollout.shadow_enabled and self.traffic.router == "replicas":
            raise ValueError(SHADOW_NEEDS_MIRROR)
        return self

    @model_validator(mode="after")
    def _drift_needs_prometheus(self) -> ModelDeploymentSpec:
        if self.drift_prometheus is None and self.monitoring.drift is not None:
            raise ValueError(DRIFT_NEEDS_PROMETHEUS)
        return self

    @model_validator(mode="after")
    def _request_rate_needs_prometheus(self) -> ModelDeploymentSpec:
        autoscaling = self.serving.autoscaling
        if autoscaling is not None and autoscaling.request_rate is not None and self.request_rate_prometheus is None:
            raise ValueError(REQUEST_RATE_NEEDS_PROMETHEUS)
        return self

    @property
    def request_rate_prometheus(self) -> str | None:
        """The Prometheus KEDA reads the request rate from: requestRate.prometheus, else the rollout analysis's."""
        autoscaling = self.serving.autoscaling
        if autoscaling is None or autoscaling.request_rate is None:
            return None
        if autoscaling.request_rate.prometheus:
            return autoscaling.request_rate.prometheus
        return self.rollout.analysis.prometheus if self.rollout is not None else None

    @property
    def drift_prometheus(self) -> str | None:
        """The Prometheus drift is read from: monitoring.drift.prometheus, else the rollout analysis's."""
        drift = self.monitoring.drift
        if drift is None:
            return None
        if drift.prometheus:
            return drift.prometheus
        return self.rollout.analysis.prometheus if self.rollout is not None else None


class InvalidSpecError(ValueError):
    """The spec cannot be acted on; the message says what to fix."""


def parse_spec(raw: dict[str, Any]) -> ModelDeploymentSpec:
    """Parse a ModelDeployment `.spec`, turning pydantic errors into one readable message."""
    try:
        return ModelDeploymentSpec.model_validate(raw)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"]) or "spec"
            problems.append(f"spec.{where}: {item['msg']}")
        raise InvalidSpecError("; ".join(problems)) from None


__all__ = [
    "DURATION_PATTERN",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "Analysis",
    "Autoscaling",
    "CustomMetric",
    "CustomScalingMetric",
    "Drift",
    "Duration",
    "EnvVar",
    "GatewayRoute",
    "GrpcGatewayRoute",
    "HeaderOverride",
    "HeaderValueSource",
    "IngressRoute",
    "IngressTLS",
    "InvalidSpecError",
    "ModelDeploymentSpec",
    "ModelRef",
    "Monitoring",
    "ParentRef",
    "Quantity",
    "RegistrySpec",
    "ReplicaRouter",
    "RequestRateScaling",
    "Resources",
    "Rollout",
    "Scheduling",
    "SecretKeyRef",
    "Serving",
    "ServingAuth",
    "ServingServiceAccount",
    "Shadow",
    "SpecModel",
    "Stage",
    "Toleration",
    "Traffic",
    "Training",
    "TrainingData",
    "cel_rules",
    "parse_duration",
    "parse_spec",
]

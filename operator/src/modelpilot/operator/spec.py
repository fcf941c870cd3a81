"""The ModelDeployment spec as pydantic models: the one source of truth for the CRD schema.

`crd.py` turns these models (descriptions, defaults, bounds and the CEL rules attached with
`x-kubernetes-validations`) into the OpenAPI schema the API server enforces; the operator parses
every object with the same models, so both sides agree on what a valid spec is.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

GROUP = "modelpilot.io"
VERSION = "v1alpha1"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["mdep"]

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, json_schema_extra={"example": "30s"}),
]
Quantity = Annotated[int | str, Field(description="A Kubernetes quantity, e.g. 500m, 2Gi or 1.")]
Stage = Literal["Staging", "Production"]


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as `90s`, `1m30s` or `250ms`."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration like 30s, 1m30s or 250ms")
    return sum(float(amount) * _UNIT_SECONDS[unit] for amount, unit in _DURATION_PART.findall(text))


def _rules(*rules: tuple[str, str]) -> dict[str, Any]:
    """`x-kubernetes-validations` for a model: (CEL rule, message a person can act on) pairs."""
    return {"x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in rules]}


class SpecModel(BaseModel):
    """Base for spec sections: camelCase on the wire, snake_case in Python, unknown fields ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class ModelRef(SpecModel):
    """Which registered model to serve and which registry pointers mark its stable and candidate versions."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            ("has(self.alias) != has(self.stage)", "set exactly one of model.alias or model.stage"),
            (
                "!has(self.candidateAlias) || has(self.alias)",
                "model.candidateAlias goes with model.alias; with model.stage use model.candidateStage",
            ),
            (
                "!has(self.candidateStage) || has(self.stage)",
                "model.candidateStage goes with model.stage; with model.alias use model.candidateAlias",
            ),
            (
                "!has(self.alias) || !has(self.candidateAlias) || self.alias != self.candidateAlias",
                "model.candidateAlias must differ from model.alias",
            ),
            (
                "!has(self.stage) || !has(self.candidateStage) || self.stage != self.candidateStage",
                "model.candidateStage must differ from model.stage",
            ),
            (
                "(!has(self.alias) || !self.alias.matches('^[vV][0-9]+$'))"
                " && (!has(self.candidateAlias) || !self.candidateAlias.matches('^[vV][0-9]+$'))",
                "aliases of the form v<number> are reserved by MLflow for version numbers",
            ),
        )
    )

    name: str = Field(
        min_length=1,
        max_length=256,
        description="Name of the registered model in the MLflow Model Registry.",
    )
    alias: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="Registry alias that marks the version serving production traffic, e.g. champion.",
    )
    stage: Stage | None = Field(
        default=None,
        description="Legacy registry stage that marks the stable version (instead of alias), e.g. Production.",
    )
    candidate_alias: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="Registry alias that marks the version to roll out as a canary, e.g. challenger.",
    )
    candidate_stage: Stage | None = Field(
        default=None,
        description="Legacy registry stage that marks the canary version (with stage), e.g. Staging.",
    )

    @model_validator(mode="after")
    def _pointers_are_consistent(self) -> ModelRef:
        if (self.alias is None) == (self.stage is None):
            raise ValueError("set exactly one of model.alias or model.stage")
        if self.candidate_alias is not None and self.alias is None:
            raise ValueError("model.candidateAlias goes with model.alias; with model.stage use model.candidateStage")
        if self.candidate_stage is not None and self.stage is None:
            raise ValueError("model.candidateStage goes with model.stage; with model.alias use model.candidateAlias")
        if self.alias is not None and self.alias == self.candidate_alias:
            raise ValueError("model.candidateAlias must differ from model.alias")
        if self.stage is not None and self.stage == self.candidate_stage:
            raise ValueError("model.candidateStage must differ from model.stage")
        for alias in (self.alias, self.candidate_alias):
            if alias is not None and re.fullmatch(r"[vV][0-9]+", alias):
                raise ValueError("aliases of the form v<number> are reserved by MLflow for version numbers")
        return self

    @property
    def has_candidate(self) -> bool:
        """Whether a candidate pointer (alias or stage) is configured."""
        return self.candidate_alias is not None or self.candidate_stage is not None


class RegistrySpec(SpecModel):
    """How to reach the MLflow tracking server that holds the model registry."""

    tracking_uri: str = Field(
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
        description="URL of the MLflow tracking server, e.g. http://mlflow.mlflow:5000.",
    )
    credentials_secret: str | None = Field(
        default=None,
        max_length=253,
        description=(
            "Name of a Secret in the same namespace with MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD; passed to the operator's registry client, the serving pods "
            "and the training Jobs."
        ),
    )
    poll_interval: Duration = Field(
        default="30s",
        description="How often the registry is polled when no webhook arrives (a Go duration, e.g. 30s).",
    )


class Toleration(SpecModel):
    """A Kubernetes toleration."""

    key: str | None = Field(default=None, description="Taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value to match with operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated before eviction."
    )


class EnvVar(SpecModel):
    """A plain environment variable for the container; secrets belong in registry.credentialsSecret."""

    name: str = Field(min_length=1, max_length=256, description="Variable name.")
    value: str = Field(default="", description="Variable value.")


class Resources(SpecModel):
    """Compute resources of a container, as in a Pod spec (GPUs as nvidia.com/gpu limits)."""

    requests: dict[str, Quantity] = Field(default_factory=dict, description="Minimum resources, e.g. cpu: 500m.")
    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="Maximum resources, e.g. memory: 2Gi, nvidia.com/gpu: 1."
    )


class Scheduling(SpecModel):
    """Where pods may run."""

    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pods require.")
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Taints the pods tolerate, e.g. nvidia.com/gpu."
    )
    affinity: dict[str, Any] | None = Field(
        default=None, description="A Kubernetes affinity object, passed to the pods unchanged."
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra annotations on the pods (e.g. for a service mesh or log shipper)."
    )


class CustomScalingMetric(SpecModel):
    """A per-pod metric (from a metrics adapter) the HPA scales on besides CPU."""

    name: str = Field(min_length=1, description="Pods metric name, e.g. model_requests_per_second.")
    target_average_value: Quantity = Field(description="Target average value per pod, e.g. 50.")


class Autoscaling(SpecModel):
    """HorizontalPodAutoscaler settings for each track; the canary's minimum scales with its weight."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "self.minReplicas <= self.maxReplicas",
                "serving.autoscaling.minReplicas must not exceed maxReplicas",
            ),
        )
    )

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest replicas of the stable track.")
    max_replicas: int = Field(default=10, ge=1, le=1000, description="Most replicas of a track.")
    target_cpu_utilization: int = Field(
        alias="targetCPUUtilization",
        default=70,
        ge=1,
        le=100,
        description="Average CPU utilisation (percent of requests) to keep.",
    )
    metric: CustomScalingMetric | None = Field(default=None, description="An optional custom per-pod metric.")

    @model_validator(mode="after")
    def _bounds_are_ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("serving.autoscaling.minReplicas must not exceed maxReplicas")
        return self


class Serving(Scheduling):
    """The inference Deployments (one per track) that serve the model."""

    image: str = Field(min_length=1, max_length=1024, description="Image of the prediction server.")
    replicas: int = Field(
        default=2, ge=0, le=1000, description="Replicas of the stable track when autoscaling is not set."
    )
    port: int = Field(default=8080, ge=1, le=65535, description="Container port of the prediction server.")
    resources: Resources = Field(default_factory=Resources, description="Container resources per replica.")
    autoscaling: Autoscaling | None = Field(default=None, description="HPA settings; unset means fixed replicas.")
    env: list[EnvVar] = Field(default_factory=list, max_length=64, description="Extra environment variables.")


class ParentRef(SpecModel):
    """A Gateway (or listener of one) the HTTPRoute attaches to."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Gateway.")
    namespace: str | None = Field(default=None, max_length=63, description="Namespace of the Gateway.")
    section_name: str | None = Field(default=None, max_length=253, description="Listener name on the Gateway.")


class GatewayRoute(SpecModel):
    """Gateway API HTTPRoute settings."""

    parent_refs: list[ParentRef] = Field(min_length=1, max_length=32, description="Gateways the route attaches to.")
    hostnames: list[str] = Field(default_factory=list, max_length=16, description="Hostnames the route serves.")
    path: str = Field(default="/", pattern=r"^/", description="Path prefix the route matches.")


class IngressTLS(SpecModel):
    """TLS for the Ingress."""

    secret_name: str = Field(min_length=1, max_length=253, description="Secret holding the certificate.")


class IngressRoute(SpecModel):
    """ingress-nginx settings: a stable Ingress plus a canary Ingress with canary annotations."""

    class_name: str = Field(default="nginx", description="IngressClass name.")
    host: str = Field(min_length=1, max_length=253, description="Host the Ingress serves.")
    path: str = Field(default="/", pattern=r"^/", description="Path prefix the Ingress matches.")
    tls: IngressTLS | None = Field(default=None, description="TLS settings; unset means plain HTTP.")


class HeaderOverride(SpecModel):
    """A request header that always reaches the canary, for testing it before it gets weight."""

    name: str = Field(
        default="x-model-track",
        pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$",
        max_length=256,
        description="Header name.",
    )
    value: str = Field(default="canary", min_length=1, max_length=4096, description="Header value.")


class Traffic(SpecModel):
    """How traffic is split between the stable and the canary track."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            ("self.router != 'gateway' || has(self.gateway)", "traffic.router gateway needs traffic.gateway"),
            ("self.router != 'ingress' || has(self.ingress)", "traffic.router ingress needs traffic.ingress"),
        )
    )

    router: Literal["gateway", "ingress", "replicas"] = Field(
        default="replicas",
        description=(
            "gateway: Gateway API HTTPRoute weights; ingress: ingress-nginx canary annotations; "
            "replicas: one Service over both tracks, weight by replica ratio."
        ),
    )
    gateway: GatewayRoute | None = Field(default=None, description="HTTPRoute settings (router gateway).")
    ingress: IngressRoute | None = Field(default=None, description="Ingress settings (router ingress).")
    header: HeaderOverride = Field(
        default_factory=HeaderOverride, description="Header that always routes to the canary."
    )

    @model_validator(mode="after")
    def _router_is_configured(self) -> Traffic:
        if self.router == "gateway" and self.gateway is None:
            raise ValueError("traffic.router gateway needs traffic.gateway")
        if self.router == "ingress" and self.ingress is None:
            raise ValueError("traffic.router ingress needs traffic.ingress")
        return self


class CustomMetric(SpecModel):
    """A PromQL query whose single value must stay within bounds during analysis."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            ("has(self.min) || has(self.max)", "a custom metric needs min, max or both"),
            (
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "a custom metric's min exceeds its max",
            ),
        )
    )

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", description="Metric name.")
    query: str = Field(
        min_length=1,
        max_length=4096,
        description=(
            "PromQL returning one sample; {{track}}, {{model}}, {{version}}, {{namespace}} and {{window}} "
            "are replaced before it runs."
        ),
    )
    min: float | None = Field(default=None, description="Lowest acceptable value.")
    max: float | None = Field(default=None, description="Highest acceptable value.")

    @model_validator(mode="after")
    def _has_bounds(self) -> CustomMetric:
        if self.min is None and self.max is None:
            raise ValueError("a custom metric needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("a custom metric's min exceeds its max")
        return self


class Analysis(SpecModel):
    """What a canary step must show in Prometheus before the rollout moves on."""

    prometheus: str = Field(
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
        description="Prometheus base URL, e.g. http://prometheus:9090.",
    )
    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Highest acceptable share of 5xx responses on the canary."
    )
    max_p99_latency: Duration = Field(default="250ms", description="Highest acceptable p99 latency of the canary.")
    min_requests: int = Field(
        default=50,
        ge=0,
        description="Fewest canary requests in the window for a verdict; fewer is inconclusive.",
    )
    failure_limit: int = Field(default=2, ge=1, le=100, description="Failed analyses that trigger a rollback.")
    inconclusive_limit: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Inconclusive analyses in a row (no traffic, Prometheus down) after which the rollout pauses.",
    )
    window: Duration = Field(default="1m", description="Range of the rate() windows in the built-in queries.")
    compare_with_stable: bool = Field(
        default=False,
        description="Also fail when the canary's error rate exceeds the stable track's by over maxErrorRateIncrease.",
    )
    max_error_rate_increase: float = Field(
        default=0.005,
        ge=0,
        le=1,
        description="With compareWithStable: how far the canary's error rate may exceed the stable track's.",
    )
    metrics: list[CustomMetric] = Field(
        default_factory=list, max_length=16, description="Extra PromQL checks with bounds."
    )


class Rollout(SpecModel):
    """The progressive delivery of a candidate version: weight steps, held and analysed one by one."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            ("self.steps.isSorted()", "rollout.steps must be in ascending order"),
            (
                "self.steps.all(s, self.steps.exists_one(t, t == s))",
                "rollout.steps must not repeat a weight",
            ),
            ("self.steps[size(self.steps) - 1] == 100", "rollout.steps must end at 100"),
            ("duration(self.interval) > duration('0s')", "rollout.interval must be a positive duration"),
        )
    )

    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [10, 25, 50, 100],
        min_length=1,
        max_length=20,
        description="Canary weights in percent, ascending, ending at 100.",
    )
    interval: Duration = Field(default="60s", description="How long each step is held before it is analysed.")
    canary_ready_timeout: Duration = Field(
        default="10m",
        description="How long the canary may take to become Ready before the rollout rolls back.",
    )
    analysis: Analysis = Field(description="Prometheus analysis of each step.")

    @model_validator(mode="after")
    def _steps_are_a_ramp(self) -> Rollout:
        if list(self.steps) != sorted(self.steps):
            raise ValueError("rollout.steps must be in ascending order")
        if len(set(self.steps)) != len(self.steps):
            raise ValueError("rollout.steps must not repeat a weight")
        if self.steps[-1] != 100:
            raise ValueError("rollout.steps must end at 100")
        if parse_duration(self.interval) <= 0:
            raise ValueError("rollout.interval must be a positive duration")
        return self

    @property
    def interval_seconds(self) -> float:
        """The step hold time in seconds."""
        return parse_duration(self.interval)


class TrainingData(SpecModel):
    """Where the training data lives."""

    uri: str | None = Field(
        default=None,
        max_length=2048,
        description="file://, s3:// or a local path to CSV or Parquet; unset uses the seeded generator.",
    )


class Training(Scheduling):
    """GPU training Jobs that log to MLflow and register a version (candidate only if it beats the champion)."""

    image: str = Field(min_length=1, max_length=1024, description="Image with the modelpilot-train entrypoint.")
    args: list[str] = Field(default_factory=list, max_length=64, description="Extra arguments to modelpilot-train.")
    data: TrainingData = Field(default_factory=TrainingData, description="Training data location.")
    resources: Resources = Field(default_factory=Resources, description="Job container resources, e.g. a GPU.")
    env: list[EnvVar] = Field(default_factory=list, max_length=64, description="Extra environment variables.")
    schedule: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$",
        description="Cron schedule for periodic retraining, e.g. '0 3 * * 0'.",
    )
    retrain_on_drift: bool = Field(default=False, description="Start a training Job when drift is detected.")
    backoff_limit: int = Field(default=2, ge=0, le=20, description="Retries of a failed training pod.")
    active_deadline_seconds: int = Field(default=7200, ge=60, description="Longest a training Job may run.")
    ttl_seconds_after_finished: int = Field(
        default=86400, ge=0, description="How long a finished Job is kept for its logs."
    )


class Drift(SpecModel):
    """Feature drift detection on the serving inputs."""

    method: Literal["psi", "ks"] = Field(default="psi", description="Population stability index or Kolmogorov-Smirnov.")
    threshold: float = Field(default=0.2, gt=0, description="Drift score above which a feature counts as drifted.")
    window: Duration = Field(default="1h", description="Window of serving inputs compared with the baseline.")


class Monitoring(SpecModel):
    """What the operator watches once a version serves."""

    drift: Drift | None = Field(default=None, description="Drift detection; unset disables it.")


class ModelDeploymentSpec(SpecModel):
    """Desired state: a registered model served, rolled out progressively and retrained."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "!has(self.rollout) || has(self.model.candidateAlias) || has(self.model.candidateStage)",
                "rollout needs model.candidateAlias or model.candidateStage to know what to roll out",
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

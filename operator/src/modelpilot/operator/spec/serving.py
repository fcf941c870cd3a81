"""The inference Deployments: image, size, autoscaling, placement."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from modelpilot.operator.spec.base import Duration, Quantity, SecretKeyRef, SpecModel, cel_rules, parse_duration
from modelpilot.operator.spec.kube import (
    ENV_NAME_PATTERN,
    LABEL_VALUE_MAX,
    LABEL_VALUE_MESSAGE,
    LABEL_VALUE_PATTERN,
    MAP_MAX_ENTRIES,
    QUALIFIED_NAME_MAX,
    QUALIFIED_NAME_MESSAGE,
    Image,
    LabelValue,
    QualifiedName,
    ResourceQuantity,
    extended_resource_cel,
    is_extended_resource,
    is_label_value,
    is_qualified_name,
    keyed_by_qualified_names,
    qualified_name_cel,
    quantity_amount,
    quantity_sign,
)

_TOLERATION_KEY = f"toleration key {QUALIFIED_NAME_MESSAGE}"
_TOLERATION_NEEDS_KEY = "a toleration without key needs operator Exists (it then matches every taint)"
_TOLERATION_SECONDS = "a toleration's tolerationSeconds needs effect NoExecute"
_TOLERATION_EXISTS_VALUE = "a toleration with operator Exists takes no value"
_TOLERATION_VALUE = f"a toleration's value {LABEL_VALUE_MESSAGE}"


class Toleration(SpecModel):
    """A Kubernetes toleration."""

    # The Pod API's own rules for a toleration (validateTolerations).
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            ("!has(self.key) || size(self.key) == 0 || (" + qualified_name_cel("self.key") + ")", _TOLERATION_KEY),
            (
                "(has(self.key) && size(self.key) > 0) || (has(self.operator) && self.operator == 'Exists')",
                _TOLERATION_NEEDS_KEY,
            ),
            ("!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')", _TOLERATION_SECONDS),
            (
                "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || size(self.value) == 0",
                _TOLERATION_EXISTS_VALUE,
            ),
            (
                "(has(self.operator) && self.operator == 'Exists') || !has(self.value)"
                f" || (size(self.value) <= 63 && self.value.matches('{LABEL_VALUE_PATTERN}'))",
                _TOLERATION_VALUE,
            ),
        )
    )

    key: str | None = Field(
        default=None, max_length=QUALIFIED_NAME_MAX, description="Taint key the toleration applies to."
    )
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal.")
    value: str | None = Field(
        default=None, max_length=LABEL_VALUE_MAX, description="Taint value to match with operator Equal."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated before eviction."
    )

    @model_validator(mode="after")
    def _pod_api_accepts(self) -> Toleration:
        if self.key and not is_qualified_name(self.key):
            raise ValueError(_TOLERATION_KEY)
        if not self.key and self.operator != "Exists":
            raise ValueError(_TOLERATION_NEEDS_KEY)
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError(_TOLERATION_SECONDS)
        if self.operator == "Exists" and self.value:
            raise ValueError(_TOLERATION_EXISTS_VALUE)
        if self.operator != "Exists" and self.value is not None and not is_label_value(self.value):
            raise ValueError(_TOLERATION_VALUE)
        return self


class EnvVar(SpecModel):
    """A plain environment variable for the container; secrets belong in registry.credentialsSecret."""

    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=ENV_NAME_PATTERN,
        description="Variable name: printable ASCII characters other than '='.",
    )
    value: str = Field(default="", description="Variable value.")


_REQUEST_OVER_LIMIT = "a resource's request must not exceed its limit"
_WHOLE_EXTENDED = "extended resources such as nvidia.com/gpu come in whole numbers"
# Entries of requests or limits: CEL's cost budget needs a bound (a container names a handful of resources).
RESOURCES_MAX_ENTRIES = 32


def _whole_extended_cel(side: str) -> str:
    # Quantity.isInteger() answers false for 2000m, which the Pod API takes as 2: compare the number instead.
    amount = f"quantity(string(self.{side}[k])).asApproximateFloat()"
    return (
        f"!has(self.{side}) || self.{side}.all(k, !{extended_resource_cel('k')} || {amount} == double(int({amount})))"
    )


class Resources(SpecModel):
    """Compute resources of a container, as in a Pod spec (GPUs as nvidia.com/gpu limits)."""

    # The Pod API's rules that relate amounts (ValidateResourceRequirements); which names it takes, and that an
    # extended resource's request equals its limit, are left to it.
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits)"
                " || !quantity(string(self.requests[k])).isGreaterThan(quantity(string(self.limits[k]))))",
                _REQUEST_OVER_LIMIT,
            ),
            (_whole_extended_cel("requests"), _WHOLE_EXTENDED),
            (_whole_extended_cel("limits"), _WHOLE_EXTENDED),
        )
    )

    requests: dict[str, ResourceQuantity] = Field(
        default_factory=dict, max_length=RESOURCES_MAX_ENTRIES, description="Minimum resources, e.g. cpu: 500m."
    )
    limits: dict[str, ResourceQuantity] = Field(
        default_factory=dict,
        max_length=RESOURCES_MAX_ENTRIES,
        description="Maximum resources, e.g. memory: 2Gi, nvidia.com/gpu: 1.",
    )

    @model_validator(mode="after")
    def _amounts_fit(self) -> Resources:
        for name, amount in self.requests.items():
            if name in self.limits and quantity_amount(amount) > quantity_amount(self.limits[name]):
                raise ValueError(_REQUEST_OVER_LIMIT)
        for name, amount in [*self.requests.items(), *self.limits.items()]:
            if is_extended_resource(name) and quantity_amount(amount) % 1 != 0:
                raise ValueError(_WHOLE_EXTENDED)
        return self


class Scheduling(SpecModel):
    """Where pods may run."""

    node_selector: dict[QualifiedName, LabelValue] = Field(
        default_factory=dict,
        max_length=MAP_MAX_ENTRIES,
        description="Node labels the pods require (label keys and values).",
        json_schema_extra=keyed_by_qualified_names("nodeSelector"),
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Taints the pods tolerate, e.g. nvidia.com/gpu."
    )
    affinity: dict[str, Any] | None = Field(
        default=None, description="A Kubernetes affinity object, passed to the pods unchanged."
    )
    pod_annotations: dict[QualifiedName, str] = Field(
        default_factory=dict,
        max_length=MAP_MAX_ENTRIES,
        description="Extra annotations on the pods (e.g. for a service mesh or log shipper).",
        json_schema_extra=keyed_by_qualified_names("podAnnotations"),
    )


class ServingAuth(SpecModel):
    """Client authentication of the prediction server, with keys and secrets kept in Secrets.

    The operator mounts each Secret key read-only into the serving pods and points the server at the file;
    the server reads it when it starts, so pods pick up a changed key when they restart.
    """

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "has(self.apiKeys) || has(self.jwtSecret)",
                "serving.auth needs apiKeys or jwtSecret (or both)",
            ),
        )
    )

    api_keys: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the API keys clients may send, one per line."
    )
    jwt_secret: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the HS256 secret that client JWTs are signed with."
    )
    jwt_audience: str = Field(default="", max_length=1024, description="Audience JWTs must name; empty: any.")
    jwt_issuer: str = Field(default="", max_length=1024, description="Issuer JWTs must name; empty: any.")
    jwt_allow_no_exp: bool = Field(
        default=False, description="Accept JWTs without an exp claim (they never expire; refused by default)."
    )

    @model_validator(mode="after")
    def _has_a_method(self) -> ServingAuth:
        if self.api_keys is None and self.jwt_secret is None:
            raise ValueError("serving.auth needs apiKeys or jwtSecret (or both)")
        return self


ALLOW_PICKLE_DESCRIPTION = (
    "Let MLflow unpickle model files (MLFLOW_ALLOW_PICKLE_DESERIALIZATION): unpickling a file runs any code it "
    "holds, so only for models from a registry no untrusted party can write to."
)


# The HPA API's rules for a Pods metric: its name is a URL path segment, its target a positive quantity.
_METRIC_NAME = "serving.autoscaling.metric.name must not contain '/' or '%' and must not be '.' or '..'"
_METRIC_TARGET = "serving.autoscaling.metric.targetAverageValue must be a quantity greater than 0 (e.g. 50, 500m)"


class CustomScalingMetric(SpecModel):
    """A per-pod metric the HPA scales on besides CPU, served by a custom-metrics adapter the cluster runs
    (the operator exports none; for the request rate use requestRate)."""

    name: str = Field(
        min_length=1,
        description="Pods metric name, e.g. model_requests_per_second.",
        json_schema_extra=cel_rules(
            ("!self.contains('/') && !self.contains('%') && self != '.' && self != '..'", _METRIC_NAME)
        ),
    )
    target_average_value: Quantity = Field(
        description="Target average value per pod, e.g. 50.",
        json_schema_extra=cel_rules(
            (
                "isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))",
                _METRIC_TARGET,
            )
        ),
    )

    @field_validator("name")
    @classmethod
    def _name_is_a_path_segment(cls, value: str) -> str:
        if "/" in value or "%" in value or value in {".", ".."}:
            raise ValueError(_METRIC_NAME)
        return value

    @field_validator("target_average_value")
    @classmethod
    def _target_is_positive(cls, value: int | str) -> int | str:
        try:
            positive = quantity_sign(str(value)) > 0
        except ValueError:
            positive = False
        if not positive:
            raise ValueError(_METRIC_TARGET)
        return value


# The HPA refuses a longer scale-down stabilization window.
MAX_STABILIZATION_SECONDS = 3600
_STABILIZATION_AT_MOST = "serving.autoscaling.scaleDownStabilization must be at most 1h"
_METRIC_OR_REQUEST_RATE = (
    "serving.autoscaling takes metric (an adapter's per-pod metric) or requestRate (KEDA), not both"
)


class RequestRateScaling(SpecModel):
    """Scaling on the requests each replica serves, read from Prometheus by KEDA (the operator's autoscaler
    backend `keda`): per track, the per-second rate of the prediction server's modelpilot_http_requests_total
    (probes and scrapes left out) over `window`, divided by the replicas, is kept at `targetPerReplica`."""

    target_per_replica: float = Field(
        gt=0, le=1e6, description="Requests per second one replica should serve, e.g. 50."
    )
    window: Duration = Field(default="1m", description="Window the request rate is averaged over.")
    prometheus: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
        description="Prometheus base URL KEDA queries; unset: the rollout analysis's.",
    )


class Autoscaling(SpecModel):
    """HorizontalPodAutoscaler settings for each track; the canary's minimum scales with its weight."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "self.minReplicas <= self.maxReplicas",
                "serving.autoscaling.minReplicas must not exceed maxReplicas",
            ),
            ("!has(self.metric) || !has(self.requestRate)", _METRIC_OR_REQUEST_RATE),
            (
                "!has(self.scaleDownStabilization) || duration(self.scaleDownStabilization) <= duration('1h')",
                _STABILIZATION_AT_MOST,
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
    metric: CustomScalingMetric | None = Field(
        default=None, description="An optional custom per-pod metric from a metrics adapter."
    )
    request_rate: RequestRateScaling | None = Field(
        default=None,
        description=(
            "Scale on requests per second per replica besides CPU, through KEDA when the operator's autoscaler "
            "backend is keda; with plain HPAs the tracks scale on CPU only."
        ),
    )
    scale_down_stabilization: Duration = Field(
        default="5m",
        description=(
            "How long the load must have stayed low before a track scales down (the HPA's scale-down "
            "stabilization window, at most 1h): a short lull between bursts keeps the pods the next burst needs."
        ),
    )

    @model_validator(mode="after")
    def _bounds_are_ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("serving.autoscaling.minReplicas must not exceed maxReplicas")
        if self.metric is not None and self.request_rate is not None:
            raise ValueError(_METRIC_OR_REQUEST_RATE)
        if parse_duration(self.scale_down_stabilization) > MAX_STABILIZATION_SECONDS:
            raise ValueError(_STABILIZATION_AT_MOST)
        return self

    @property
    def scale_down_stabilization_seconds(self) -> int:
        """The stabilization window in whole seconds, as the HPA's behavior takes it."""
        return round(parse_duration(self.scale_down_stabilization))


class ServingServiceAccount(SpecModel):
    """The ServiceAccounts the operator makes for the tracks (`<name>-stable`, `<name>-canary`)."""

    annotations: dict[QualifiedName, str] = Field(
        default_factory=dict,
        max_length=MAP_MAX_ENTRIES,
        json_schema_extra=keyed_by_qualified_names("serving.serviceAccount.annotations"),
        description=(
            "Annotations on both tracks' ServiceAccounts, e.g. eks.amazonaws.com/role-arn for an IAM role (IRSA) "
            "that reads the model artifacts."
        ),
    )


GpuPlacement = Literal["Pack", "Spread"]
GPU_PLACEMENT_DESCRIPTION = (
    "Where pods that ask for nvidia.com/gpu go. Pack (default): replicas fill the GPU nodes that already run this "
    "ModelDeployment's pods before they take another one, spread evenly over zones, so whole GPU nodes stay free "
    "for training and for the cluster autoscaler to remove. Spread: at most one replica more on any node than on "
    "another, and over zones, so a node failure takes as few replicas as it can. Both are preferences: pods still "
    "schedule when they cannot be met. Pods without a GPU are always spread over nodes."
)


# The prediction server's `MODELPILOT_METRICS_PORT`: GET /metrics is served there only, apart from predictions.
METRICS_PORT = 9090
_PORT_IS_METRICS_PORT = f"serving.port must not be {METRICS_PORT}: the prediction server serves /metrics on that port"
# The prediction server's `MODELPILOT_GRPC_PORT`, the second port of each track's Service.
GRPC_PORT = 8081
_PORT_IS_GRPC_PORT = f"serving.port must not be {GRPC_PORT}: the track Services serve gRPC on that port"


class Serving(Scheduling):
    """The inference Deployments (one per track) that serve the model."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (f"!has(self.port) || self.port != {METRICS_PORT}", _PORT_IS_METRICS_PORT),
            (f"!has(self.port) || self.port != {GRPC_PORT}", _PORT_IS_GRPC_PORT),
        )
    )

    image: Image = Field(description="Image of the prediction server.")
    replicas: int = Field(
        default=2, ge=0, le=1000, description="Replicas of the stable track when autoscaling is not set."
    )
    port: int = Field(
        default=8080,
        ge=1,
        le=65535,
        description=f"Port of predictions and probes; {METRICS_PORT} (metrics) and {GRPC_PORT} (gRPC) are taken.",
    )
    resources: Resources = Field(default_factory=Resources, description="Container resources per replica.")
    autoscaling: Autoscaling | None = Field(default=None, description="HPA settings; unset means fixed replicas.")
    env: list[EnvVar] = Field(default_factory=list, max_length=64, description="Extra environment variables.")
    auth: ServingAuth | None = Field(default=None, description="Client authentication; unset: none.")
    gpu_placement: GpuPlacement = Field(default="Pack", description=GPU_PLACEMENT_DESCRIPTION)
    service_account: ServingServiceAccount = Field(
        default_factory=ServingServiceAccount, description="The tracks' ServiceAccounts (cloud identity)."
    )
    allow_pickle_deserialization: bool = Field(default=False, description=ALLOW_PICKLE_DESCRIPTION)

    @model_validator(mode="after")
    def _port_is_not_the_metrics_port(self) -> Serving:
        if self.port == METRICS_PORT:
            raise ValueError(_PORT_IS_METRICS_PORT)
        if self.port == GRPC_PORT:
            raise ValueError(_PORT_IS_GRPC_PORT)
        return self

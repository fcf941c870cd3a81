"""The inference Deployments: image, size, autoscaling, placement."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from modelpilot.operator.spec.base import Duration, Quantity, SecretKeyRef, SpecModel, cel_rules


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


class CustomScalingMetric(SpecModel):
    """A per-pod metric the HPA scales on besides CPU, served by a custom-metrics adapter the cluster runs
    (the operator exports none; for the request rate use requestRate)."""

    name: str = Field(min_length=1, description="Pods metric name, e.g. model_requests_per_second.")
    target_average_value: Quantity = Field(description="Target average value per pod, e.g. 50.")


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

    @model_validator(mode="after")
    def _bounds_are_ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("serving.autoscaling.minReplicas must not exceed maxReplicas")
        if self.metric is not None and self.request_rate is not None:
            raise ValueError(_METRIC_OR_REQUEST_RATE)
        return self


class ServingServiceAccount(SpecModel):
    """The ServiceAccounts the operator makes for the tracks (`<name>-stable`, `<name>-canary`)."""

    annotations: dict[str, str] = Field(
        default_factory=dict,
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


class Serving(Scheduling):
    """The inference Deployments (one per track) that serve the model."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules((f"!has(self.port) || self.port != {METRICS_PORT}", _PORT_IS_METRICS_PORT))
    )

    image: str = Field(min_length=1, max_length=1024, description="Image of the prediction server.")
    replicas: int = Field(
        default=2, ge=0, le=1000, description="Replicas of the stable track when autoscaling is not set."
    )
    port: int = Field(
        default=8080, ge=1, le=65535, description=f"Port of predictions and probes; {METRICS_PORT} is the metrics port."
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
        return self

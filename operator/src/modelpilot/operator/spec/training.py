"""Training Jobs and drift monitoring."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from modelpilot.operator.spec.base import Duration, SpecModel, cel_rules
from modelpilot.operator.spec.kube import DNS1123_SUBDOMAIN_MAX, DNS1123_SUBDOMAIN_PATTERN, INT32_MAX, Image
from modelpilot.operator.spec.serving import ALLOW_PICKLE_DESCRIPTION, EnvVar, Resources, Scheduling


class TrainingData(SpecModel):
    """Where the training data lives."""

    uri: str | None = Field(
        default=None,
        max_length=2048,
        description="file://, s3:// or a local path to CSV or Parquet; unset uses the seeded generator.",
    )


MAX_WORKERS = 64
_KUBEFLOW_SCHEDULE = "training.schedule needs training.engine job: a CronJob cannot start a TrainJob"
_KUBEFLOW_POD_FIELDS = (
    "training.engine kubeflow takes no affinity or podAnnotations: a TrainJob cannot set them on its pods;"
    " set them in the training runtime"
)


class KubeflowTraining(SpecModel):
    """Which Kubeflow Trainer runtime a TrainJob runs on."""

    runtime: str = Field(
        default="torch-distributed",
        min_length=1,
        max_length=253,
        description="Name of the training runtime (Kubeflow Trainer's torch runtime by default).",
    )
    runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = Field(
        default="ClusterTrainingRuntime",
        description="ClusterTrainingRuntime (cluster-wide) or TrainingRuntime (in the ModelDeployment's namespace).",
    )


class Training(Scheduling):
    """GPU training Jobs that log to MLflow and register a version (candidate only if it beats the champion)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            ("!has(self.schedule) || !has(self.engine) || self.engine == 'job'", _KUBEFLOW_SCHEDULE),
            (
                "!has(self.engine) || self.engine == 'job'"
                " || (!has(self.affinity) && (!has(self.podAnnotations) || size(self.podAnnotations) == 0))",
                _KUBEFLOW_POD_FIELDS,
            ),
        )
    )

    image: Image = Field(description="Image with the modelpilot-train entrypoint.")
    args: list[str] = Field(default_factory=list, max_length=64, description="Extra arguments to modelpilot-train.")
    data: TrainingData = Field(default_factory=TrainingData, description="Training data location.")
    resources: Resources = Field(default_factory=Resources, description="Job container resources, e.g. a GPU.")
    env: list[EnvVar] = Field(default_factory=list, max_length=64, description="Extra environment variables.")
    service_account_name: str | None = Field(
        default=None,
        max_length=DNS1123_SUBDOMAIN_MAX,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        description=(
            "ServiceAccount (in the ModelDeployment's namespace) the training pods run as, e.g. one annotated "
            "with eks.amazonaws.com/role-arn for an IAM role that reads the data and writes artifacts; unset: "
            "the namespace's default."
        ),
    )
    schedule: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$",
        description="Cron schedule for periodic retraining, e.g. '0 3 * * 0'.",
    )
    allow_pickle_deserialization: bool = Field(default=False, description=ALLOW_PICKLE_DESCRIPTION)
    retrain_on_drift: bool = Field(default=False, description="Start a training Job when drift is detected.")
    backoff_limit: int = Field(default=2, ge=0, le=20, description="Retries of a failed training pod.")
    active_deadline_seconds: int = Field(default=7200, ge=60, description="Longest a training Job may run.")
    ttl_seconds_after_finished: int = Field(
        default=86400, ge=0, le=INT32_MAX, description="How long a finished Job is kept for its logs."
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=MAX_WORKERS,
        description="Training pods of one run; more than one trains with torchrun and DistributedDataParallel.",
    )
    engine: Literal["job", "kubeflow"] = Field(
        default="job",
        description="job: an Indexed Job (and a headless Service); kubeflow: a Kubeflow Trainer TrainJob.",
    )
    kubeflow: KubeflowTraining = Field(
        default_factory=KubeflowTraining, description="The TrainJob's runtime (engine kubeflow)."
    )

    @model_validator(mode="after")
    def _engine_fits(self) -> Training:
        if self.engine == "kubeflow" and self.schedule:
            raise ValueError(_KUBEFLOW_SCHEDULE)
        if self.engine == "kubeflow" and (self.affinity or self.pod_annotations):
            raise ValueError(_KUBEFLOW_POD_FIELDS)
        return self


class Drift(SpecModel):
    """Feature drift of the stable track's served inputs from the training reference, scored from the bins the
    serving pods count (modelpilot_feature_bin_total) in Prometheus."""

    method: Literal["psi", "ks"] = Field(default="psi", description="Population stability index or Kolmogorov-Smirnov.")
    threshold: float = Field(default=0.2, gt=0, description="Drift score above which a feature counts as drifted.")
    window: Duration = Field(default="1h", description="Window of serving inputs compared with the baseline.")
    prometheus: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
        description="Prometheus base URL; unset: the rollout analysis's.",
    )
    min_inputs: int = Field(
        default=200, ge=1, description="Fewest served values of a feature in the window for a score; fewer: unknown."
    )
    cooldown: Duration = Field(
        default="6h", description="Least time between two retrainings on drift (training.retrainOnDrift)."
    )


class Monitoring(SpecModel):
    """What the operator watches once a version serves."""

    drift: Drift | None = Field(default=None, description="Drift detection; unset disables it.")

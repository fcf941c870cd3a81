"""Training Jobs and the scheduled-training CronJob of a ModelDeployment."""

from __future__ import annotations

from typing import Any

from modelpilot.operator.builders.common import (
    Owner,
    container_resources,
    container_security_context,
    env_list,
    label_value,
    labels,
    metadata,
    pickle_env,
    pod_security_context,
    scheduling,
    tmp_mount,
    tmp_volume,
)
from modelpilot.operator.spec import ModelDeploymentSpec, Training

TRAINING_COMPONENT = "training"
TRIGGER_LABEL = "modelpilot.io/trigger"
SCHEDULE_TRIGGER = "schedule"
CONTAINER_NAME = "train"
ENTRYPOINT = "modelpilot-train"
# The entrypoint exits with this code when a retry cannot help (quality gate failed, bad data, schema
# mismatch): the Job then fails at once instead of training and registering again up to backoffLimit times.
PERMANENT_FAILURE_EXIT_CODE = 3
CRONJOB_HISTORY_LIMIT = 3
# A schedule missed by more than this (operator or control plane down) is skipped, not run late.
CRONJOB_STARTING_DEADLINE_SECONDS = 3600


def _training(spec: ModelDeploymentSpec) -> Training:
    if spec.training is None:
        raise ValueError("spec.training is not set: there is no training Job to build")
    return spec.training


def _registry_pointers(spec: ModelDeploymentSpec) -> list[tuple[str, str]]:
    """Which registry pointer the entrypoint compares with, and which one a passing version gets.

    Without a candidate pointer nothing would ever pick a candidate up, so a version that passes the
    gate moves the stable pointer itself (the operator then rolls the stable track to it).
    """
    model = spec.model
    if model.alias is not None:
        return [
            ("MODELPILOT_CHAMPION_ALIAS", model.alias),
            ("MODELPILOT_CANDIDATE_ALIAS", model.candidate_alias or model.alias),
        ]
    assert model.stage is not None  # the spec requires exactly one of alias and stage
    return [
        ("MODELPILOT_CHAMPION_STAGE", model.stage),
        ("MODELPILOT_CANDIDATE_STAGE", model.candidate_stage or model.stage),
    ]


def _env(spec: ModelDeploymentSpec, training: Training) -> list[dict[str, str]]:
    fixed = [("MODELPILOT_MODEL_NAME", spec.model.name)]
    if training.data.uri:
        fixed.append(("MODELPILOT_DATA_URI", training.data.uri))
    fixed += [
        ("MLFLOW_TRACKING_URI", spec.registry.tracking_uri),
        pickle_env(training.allow_pickle_deserialization),
        *_registry_pointers(spec),
    ]
    overridable = [("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "true")]
    return env_list(fixed, overridable, training.env)


def _pod_labels(owner: Owner, spec: ModelDeploymentSpec, trigger: str) -> dict[str, str]:
    return {**labels(owner, spec, component=TRAINING_COMPONENT), TRIGGER_LABEL: label_value(trigger)}


def _container(spec: ModelDeploymentSpec, training: Training) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": training.image,
        # The command is set, not left to the image, so any image with the entrypoint on PATH works,
        # whatever its ENTRYPOINT is; the spec's args follow it.
        "command": [ENTRYPOINT],
    }
    if training.args:
        container["args"] = list(training.args)
    container["env"] = _env(spec, training)
    if spec.registry.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": spec.registry.credentials_secret}}]
    resources = container_resources(training.resources)
    if resources:
        container["resources"] = resources
    container.update(
        {
            "securityContext": container_security_context(),
            "volumeMounts": [tmp_mount()],
            # The entrypoint writes its result JSON to the termination log; the logs' tail is the fallback.
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
    )
    return container


def _pod_template(owner: Owner, spec: ModelDeploymentSpec, trigger: str) -> dict[str, Any]:
    training = _training(spec)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        **({"serviceAccountName": training.service_account_name} if training.service_account_name else {}),
        # Training talks to MLflow and the data store only, never to the Kubernetes API.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": [_container(spec, training)],
        "volumes": [tmp_volume()],
        **scheduling(training.node_selector, training.tolerations, training.affinity, training.resources),
    }
    metadata: dict[str, Any] = {"labels": _pod_labels(owner, spec, trigger)}
    if training.pod_annotations:
        metadata["annotations"] = dict(training.pod_annotations)
    return {"metadata": metadata, "spec": pod_spec}


def _job_spec(owner: Owner, spec: ModelDeploymentSpec, trigger: str) -> dict[str, Any]:
    training = _training(spec)
    return {
        "backoffLimit": training.backoff_limit,
        "activeDeadlineSeconds": training.active_deadline_seconds,
        "ttlSecondsAfterFinished": training.ttl_seconds_after_finished,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER_NAME,
                        "operator": "In",
                        "values": [PERMANENT_FAILURE_EXIT_CODE],
                    },
                },
                # Preempted or evicted pods (spot GPU nodes, drains) do not use up the retries.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "template": _pod_template(owner, spec, trigger),
    }


def build_training_job(owner: Owner, spec: ModelDeploymentSpec, *, job_name: str, trigger: str) -> dict[str, Any]:
    """A batch/v1 Job that trains, logs to MLflow and registers a version; `trigger` says why it runs."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(owner, job_name, _pod_labels(owner, spec, trigger)),
        "spec": _job_spec(owner, spec, trigger),
    }


def build_training_cronjob(owner: Owner, spec: ModelDeploymentSpec, *, name: str) -> dict[str, Any]:
    """A batch/v1 CronJob that runs the training Job on `spec.training.schedule`, one at a time."""
    training = _training(spec)
    if not training.schedule:
        raise ValueError("spec.training.schedule is not set: there is no CronJob to build")
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(owner, name, _pod_labels(owner, spec, SCHEDULE_TRIGGER)),
        "spec": {
            "schedule": training.schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": CRONJOB_STARTING_DEADLINE_SECONDS,
            "successfulJobsHistoryLimit": CRONJOB_HISTORY_LIMIT,
            "failedJobsHistoryLimit": CRONJOB_HISTORY_LIMIT,
            "jobTemplate": {
                "metadata": {"labels": _pod_labels(owner, spec, SCHEDULE_TRIGGER)},
                "spec": _job_spec(owner, spec, SCHEDULE_TRIGGER),
            },
        },
    }

"""Training Jobs and the scheduled-training CronJob of a ModelDeployment.

One worker: a Job with one pod that runs the entrypoint. Several (`training.workers`): an Indexed Job with one
pod per worker, all running the entrypoint under torchrun, which meets its peers by c10d rendezvous at the
pod of index 0 through a headless Service (`build_rendezvous_service`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from modelpilot.operator.builders.common import (
    COMPONENT_LABEL,
    DEPLOYMENT_LABEL,
    Owner,
    container_resources,
    container_security_context,
    env_list,
    gpu_amount,
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
# torchrun in the training image, through the launcher that keeps the entrypoint's exit code.
LAUNCHER = ["python", "-m", "modelpilot.training.launch"]
RENDEZVOUS_PORT = 29400
# How long a worker waits for its peers (the pod of index 0 hosts the rendezvous and may start later).
RENDEZVOUS_CONF = "join_timeout=900,read_timeout=600"
JOB_NAME_ENV = "MODELPILOT_JOB_NAME"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# The Job's uid names the run across the Job's restarts: a restart that finds the version an earlier attempt
# registered reports it instead of training and registering again.
RUN_KEY_ENV = "MODELPILOT_RUN_KEY"
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"


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


def procs_per_worker(training: Training) -> int:
    """Training processes in each pod: one per GPU of the pod, else one."""
    # A fractional amount is refused by the API server (extended resources are whole numbers): round it down.
    return max(1, int(gpu_amount(training.resources)))


def rendezvous_service_name(owner: Owner) -> str:
    """The headless Service that gives each training pod of the owner a DNS name (`<job>-<index>.<service>`)."""
    digest = hashlib.sha256(owner.uid.encode()).hexdigest()[:6]
    name = f"{owner.name[:40].rstrip('-.')}-ranks-{digest}"
    # A Service's name must start with a letter; an object's name may start with a digit.
    return name if name[0].isalpha() else f"r-{name}"


def torchrun_args(training: Training, service: str) -> list[str]:
    """torchrun's arguments for `training.workers` pods; the Job's name comes from the pod's own label."""
    return [
        f"--nnodes={training.workers}",
        f"--nproc-per-node={procs_per_worker(training)}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=$({JOB_NAME_ENV})-0.{service}:{RENDEZVOUS_PORT}",
        f"--rdzv-id=$({JOB_NAME_ENV})",
        f"--rdzv-conf={RENDEZVOUS_CONF}",
        # A failed worker fails its pod; the Job's backoffLimit then restarts every pod together.
        "--max-restarts=0",
        "--no-python",
        ENTRYPOINT,
    ]


def training_env(spec: ModelDeploymentSpec, training: Training) -> list[dict[str, str]]:
    """The entrypoint's environment: model, data, registry and its pointers, then the spec's own variables."""
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


def training_labels(owner: Owner, spec: ModelDeploymentSpec, trigger: str) -> dict[str, str]:
    """Labels of a training run and its pods: the training component and why the run started."""
    return {**labels(owner, spec, component=TRAINING_COMPONENT), TRIGGER_LABEL: label_value(trigger)}


def _container(owner: Owner, spec: ModelDeploymentSpec, training: Training) -> dict[str, Any]:
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": training.image}
    env: list[dict[str, Any]] = list(training_env(spec, training))
    if training.workers == 1:
        # The command is set, not left to the image, so any image with the entrypoint on PATH works,
        # whatever its ENTRYPOINT is; the spec's args follow it.
        container["command"] = [ENTRYPOINT]
        if training.args:
            container["args"] = list(training.args)
    else:
        container["command"] = list(LAUNCHER)
        container["args"] = [*torchrun_args(training, rendezvous_service_name(owner)), *training.args]
        container["ports"] = [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT, "protocol": "TCP"}]
        env.append(
            {"name": JOB_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_NAME_LABEL}']"}}}
        )
    env.append({"name": RUN_KEY_ENV, "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_UID_LABEL}']"}}})
    container["env"] = env
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
        "containers": [_container(owner, spec, training)],
        "volumes": [tmp_volume()],
        **scheduling(training.node_selector, training.tolerations, training.affinity, training.resources),
    }
    if training.workers > 1:
        # An Indexed Job names each pod's host `<job>-<index>`; the subdomain makes that a DNS name.
        pod_spec["subdomain"] = rendezvous_service_name(owner)
    metadata: dict[str, Any] = {"labels": training_labels(owner, spec, trigger)}
    if training.pod_annotations:
        metadata["annotations"] = dict(training.pod_annotations)
    return {"metadata": metadata, "spec": pod_spec}


def _job_spec(owner: Owner, spec: ModelDeploymentSpec, trigger: str) -> dict[str, Any]:
    training = _training(spec)
    workers: dict[str, Any] = {}
    if training.workers > 1:
        # All pods run at once and each knows its rank from its index; they succeed or fail together (every
        # worker exits with rank 0's code), and a failed pod fails the others through their collectives.
        workers = {"completionMode": "Indexed", "completions": training.workers, "parallelism": training.workers}
    return {
        **workers,
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
        "metadata": metadata(owner, job_name, training_labels(owner, spec, trigger)),
        "spec": _job_spec(owner, spec, trigger),
    }


def build_rendezvous_service(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any]:
    """The headless Service of the training pods: DNS names for the pods of an Indexed training Job, published
    before the pods are ready, since the workers meet before any of them could be."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, rendezvous_service_name(owner), labels(owner, spec, component=TRAINING_COMPONENT)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {DEPLOYMENT_LABEL: label_value(owner.name), COMPONENT_LABEL: TRAINING_COMPONENT},
            "ports": [
                {"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT, "protocol": "TCP"}
            ],
        },
    }


def build_training_cronjob(owner: Owner, spec: ModelDeploymentSpec, *, name: str) -> dict[str, Any]:
    """A batch/v1 CronJob that runs the training Job on `spec.training.schedule`, one at a time."""
    training = _training(spec)
    if not training.schedule:
        raise ValueError("spec.training.schedule is not set: there is no CronJob to build")
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(owner, name, training_labels(owner, spec, SCHEDULE_TRIGGER)),
        "spec": {
            "schedule": training.schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": CRONJOB_STARTING_DEADLINE_SECONDS,
            "successfulJobsHistoryLimit": CRONJOB_HISTORY_LIMIT,
            "failedJobsHistoryLimit": CRONJOB_HISTORY_LIMIT,
            "jobTemplate": {
                "metadata": {"labels": training_labels(owner, spec, SCHEDULE_TRIGGER)},
                "spec": _job_spec(owner, spec, SCHEDULE_TRIGGER),
            },
        },
    }

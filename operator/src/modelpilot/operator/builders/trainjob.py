"""The Kubeflow Trainer TrainJob of a training run (`training.engine: kubeflow`), and which builder a run uses.

Kubeflow Trainer starts `training.workers` nodes from its runtime (a JobSet of an Indexed Job) and sets
torchrun's settings in PET_* variables (node count, node rank, master address), which torchrun reads as its
defaults; the TrainJob only names the image, the launcher command, the entrypoint's arguments and variables.
"""

from __future__ import annotations

from typing import Any

from modelpilot.operator.builders.common import Owner, container_resources, metadata, scheduling
from modelpilot.operator.builders.training import (
    ENTRYPOINT,
    LAUNCHER,
    RUN_KEY_ENV,
    build_rendezvous_service,
    build_training_job,
    procs_per_worker,
    training_env,
    training_labels,
)
from modelpilot.operator.spec import ModelDeploymentSpec, Training

TRAINER_GROUP = "trainer.kubeflow.org"
TRAINJOB_API_VERSION = f"{TRAINER_GROUP}/v1alpha1"
TRAINJOB_KIND = "TrainJob"
# The replicated job of Kubeflow's torch runtimes that runs the trainer nodes.
TRAINER_NODE_JOB = "node"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
# A TrainJob's container takes no envFrom: the registry credentials Secret's usual keys become variables.
CREDENTIAL_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def _training(spec: ModelDeploymentSpec) -> Training:
    if spec.training is None:
        raise ValueError("spec.training is not set: there is no training run to build")
    return spec.training


def _env(spec: ModelDeploymentSpec, training: Training, run_key: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = list(training_env(spec, training))
    secret = spec.registry.credentials_secret
    if secret:
        env += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
            for key in CREDENTIAL_KEYS
        ]
    # The JobSet under a TrainJob recreates its Jobs on a retry, so the run is named by the TrainJob.
    env.append({"name": RUN_KEY_ENV, "value": run_key})
    return env


def build_trainjob(owner: Owner, spec: ModelDeploymentSpec, *, job_name: str, trigger: str) -> dict[str, Any]:
    """A trainer.kubeflow.org TrainJob that runs the entrypoint under torchrun on `training.workers` nodes."""
    training = _training(spec)
    trainer: dict[str, Any] = {
        "image": training.image,
        "command": list(LAUNCHER),
        "args": ["--no-python", ENTRYPOINT, *training.args],
        "env": _env(spec, training, job_name),
        "numNodes": training.workers,
        "numProcPerNode": procs_per_worker(training),
    }
    resources = container_resources(training.resources)
    if resources:
        trainer["resourcesPerNode"] = resources
    object_labels = training_labels(owner, spec, trigger)
    trainjob_spec: dict[str, Any] = {
        "runtimeRef": {
            "apiGroup": TRAINER_GROUP,
            "kind": training.kubeflow.runtime_kind,
            "name": training.kubeflow.runtime,
        },
        # Carried to the JobSet and its Jobs, so they are recognisable as this ModelDeployment's training.
        "labels": dict(object_labels),
        "trainer": trainer,
    }
    # Where the nodes may run (the GPU taint's toleration included); affinity is the runtime's (see the spec).
    overrides = scheduling(training.node_selector, training.tolerations, None, training.resources)
    if overrides:
        trainjob_spec["podSpecOverrides"] = [{"targetJobs": [{"name": TRAINER_NODE_JOB}], **overrides}]
    return {
        "apiVersion": TRAINJOB_API_VERSION,
        "kind": TRAINJOB_KIND,
        "metadata": metadata(owner, job_name, object_labels),
        "spec": trainjob_spec,
    }


def training_run_kind(spec: ModelDeploymentSpec) -> tuple[str, str]:
    """(apiVersion, kind) of the object a training run is: a batch Job or a TrainJob."""
    if _training(spec).engine == "kubeflow":
        return TRAINJOB_API_VERSION, TRAINJOB_KIND
    return "batch/v1", "Job"


def training_pod_selector(spec: ModelDeploymentSpec, name: str) -> str:
    """Label selector of the pods of the training run `name`."""
    if _training(spec).engine == "kubeflow":
        return f"{JOBSET_NAME_LABEL}={name}"
    return f"job-name={name}"


def build_training_run(owner: Owner, spec: ModelDeploymentSpec, *, job_name: str, trigger: str) -> list[dict[str, Any]]:
    """Every object one training run needs, in the order to apply them."""
    training = _training(spec)
    if training.engine == "kubeflow":
        return [build_trainjob(owner, spec, job_name=job_name, trigger=trigger)]
    job = build_training_job(owner, spec, job_name=job_name, trigger=trigger)
    if training.workers > 1:
        return [build_rendezvous_service(owner, spec), job]
    return [job]

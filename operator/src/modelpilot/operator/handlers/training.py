"""Training Jobs of a ModelDeployment: when to start one, at most one at a time, and what it reported.

A Job starts when the model has no version yet (trigger `initial`), when a person sets the annotation
`modelpilot.io/retrain=<any new value>` (trigger `request`), or when drift is detected (trigger `drift`).
A schedule becomes a CronJob; the Jobs it starts (and those made from it with `kubectl create job
--from=cronjob/…`) are followed like any other (trigger `schedule`) once no other Job is being
followed. Job names derive from the trigger, so an operator that crashes after creating a Job and
before recording it applies the same Job again instead of starting a second one. The owner's training
Jobs are listed once per reconciliation; pods are read only for a Job that has just finished.

With `training.engine: kubeflow` a run is a Kubeflow Trainer TrainJob instead of a Job; it is followed the
same way (its Complete and Failed conditions, rank 0's termination message) and reported with the same
status, conditions and Events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelpilot.operator import metrics
from modelpilot.operator.builders.common import DEPLOYMENT_LABEL, Owner, label_value
from modelpilot.operator.builders.training import SCHEDULE_TRIGGER, build_training_cronjob
from modelpilot.operator.builders.trainjob import build_training_run, training_pod_selector, training_run_kind
from modelpilot.operator.kubeapi import KubeError
from modelpilot.operator.owned import OwnedObjects
from modelpilot.operator.rollout.clock import parse_stamp
from modelpilot.operator.rollout.requests import RETRAIN_ANNOTATION
from modelpilot.operator.spec import ModelDeploymentSpec, parse_duration
from modelpilot.operator.status import ModelDeploymentStatus, TrainingStatus, now_iso, set_condition

DRIFT_TRIGGER = "drift"
TRAINING_COMPONENT_SELECTOR = "app.kubernetes.io/component=training"

Notify = Callable[..., None]


@dataclass(frozen=True)
class JobState:
    """What a training Job shows."""

    name: str
    result: str  # Running, Succeeded or Failed
    message: str = ""
    report: dict[str, Any] | None = None


# A training run's name is a Job's or a TrainJob's. A TrainJob's JobSet names its pods
# `<name>-node-0-<index>-<5 characters>`, and JobSet refuses a JobSet whose pod names would exceed a DNS label
# (63): with up to 64 workers that leaves 47 characters, so at most 32 of the ModelDeployment's name.
TRAINING_RUN_NAME_LIMIT = 47
_RUN_NAME_PREFIX = TRAINING_RUN_NAME_LIMIT - len("-train-") - 8


def job_name(owner: Owner, trigger: str, key: str) -> str:
    """A stable, DNS-safe name for the training run of one trigger occurrence."""
    digest = hashlib.sha256(f"{owner.uid}:{trigger}:{key}".encode()).hexdigest()[:8]
    return f"{owner.name[:_RUN_NAME_PREFIX]}-train-{digest}"


# A CronJob's name has at most 52 characters (its Jobs append a timestamp).
CRONJOB_NAME_LIMIT = 52
CRONJOB_SUFFIX = "-train-scheduled"


def cronjob_name(owner: Owner) -> str:
    """Name of the scheduled-training CronJob: `<name>-train-scheduled`, or for a long name its start and a
    digest of the whole name, so that two names sharing a long prefix never share a CronJob."""
    name = f"{owner.name}{CRONJOB_SUFFIX}"
    if len(name) <= CRONJOB_NAME_LIMIT:
        return name
    digest = hashlib.sha256(owner.name.encode()).hexdigest()[:8]
    keep = CRONJOB_NAME_LIMIT - len(CRONJOB_SUFFIX) - len(digest) - 1
    return f"{owner.name[:keep].rstrip('-')}-{digest}{CRONJOB_SUFFIX}"


def job_state(job: dict[str, Any], pods: list[dict[str, Any]]) -> JobState:
    """Interpret a Job and its pods; the report is the JSON the entrypoint writes as termination message."""
    name = job["metadata"]["name"]
    conditions = {c["type"]: c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
    report = _termination_report(pods)
    if "Complete" in conditions or "SuccessCriteriaMet" in conditions:
        return JobState(name, "Succeeded", "training Job completed", report)
    if "Failed" in conditions or "FailureTarget" in conditions:
        failed = conditions.get("Failed") or conditions["FailureTarget"]
        reason = (report or {}).get("reason") or failed.get("message") or failed.get("reason", "failed")
        return JobState(name, "Failed", str(reason), report)
    return JobState(name, "Running", "training Job running", report)


COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def _rank_order(pod: dict[str, Any]) -> int:
    index = ((pod.get("metadata") or {}).get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION, "0")
    return int(index) if str(index).isdigit() else 0


def _termination_report(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    # Rank 0 (the pod of index 0) reports; other ranks leave no JSON, but a stale pod of theirs might.
    for pod in sorted(pods, key=_rank_order):
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((container.get("state") or {}).get("terminated") or {}).get("message")
            if not message:
                continue
            last_line = message.strip().splitlines()[-1]
            try:
                parsed = json.loads(last_line)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                return parsed
    return None


def _created(job: dict[str, Any]) -> str:
    return str(job["metadata"].get("creationTimestamp") or "")


def scheduled_job(jobs: list[dict[str, Any]], cronjob: str, training: TrainingStatus) -> dict[str, Any] | None:
    """The newest Job the CronJob `cronjob` started that status.training does not follow yet, when
    status.training follows no running Job; None otherwise. Only Jobs created after the followed one
    count, so a scheduled Job is picked up once."""
    if training.result == "Running":
        return None
    started = [
        job
        for job in jobs
        if any(
            ref.get("kind") == "CronJob" and ref.get("name") == cronjob
            for ref in job["metadata"].get("ownerReferences") or []
        )
        and job["metadata"]["name"] != training.job
        and _created(job) > (training.started_at or "")
    ]
    return max(started, key=_created, default=None)


def wanted_trigger(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    annotations: dict[str, str],
    *,
    has_any_version: bool,
    now: datetime | None = None,
) -> tuple[str, str] | None:
    """(trigger, key) of a Job that should start now, or None.

    On drift (training.retrainOnDrift): one Job per drift episode — its key is the episode's start, so a
    restarted operator finds the same Job — and none within monitoring.drift.cooldown of the last one."""
    if spec.training is None:
        return None
    training = status.training or TrainingStatus()
    request = annotations.get(RETRAIN_ANNOTATION)
    if request and request != training.request:
        return ("request", request)
    if not has_any_version and training.job is None:
        # Only the very first Job is automatic; after a failure a person asks again with the annotation.
        return ("initial", "initial")
    drift, watch = status.drift, spec.monitoring.drift
    if (
        spec.training.retrain_on_drift
        and watch is not None
        and drift is not None
        and drift.state == "Drifted"
        and drift.since
        and drift.since != drift.retrained_for
        and training.result != "Running"
        and _cooled_down(drift.retrained_at, parse_duration(watch.cooldown), now or datetime.now(UTC))
    ):
        return (DRIFT_TRIGGER, drift.since)
    return None


def _cooled_down(last: str | None, cooldown: float, now: datetime) -> bool:
    started = parse_stamp(last)
    return started is None or (now - started).total_seconds() >= cooldown


async def reconcile_training(
    objects: OwnedObjects,
    owner: Owner,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    annotations: dict[str, str],
    *,
    has_any_version: bool,
    notify: Notify,
) -> None:
    """Keep the CronJob in line with the schedule, follow the running Job, start a new one when wanted."""
    generation = status.observed_generation
    await _reconcile_schedule(objects, owner, spec)
    if spec.training is None:
        return
    training = status.training or TrainingStatus()
    selector = f"{DEPLOYMENT_LABEL}={label_value(owner.name)},{TRAINING_COMPONENT_SELECTOR}"
    jobs = await objects.list_of("batch/v1", "Job", selector)
    runs = await _list_runs(objects, spec, selector, jobs)
    if runs is None:
        _report_missing_engine(status, training, notify)
        return

    scheduled = scheduled_job(jobs, cronjob_name(owner), training)
    if scheduled is not None:
        name = scheduled["metadata"]["name"]
        training = TrainingStatus(
            job=name,
            trigger=SCHEDULE_TRIGGER,
            result="Running",
            message="training Job started by the schedule",
            started_at=_created(scheduled) or now_iso(),
            request=training.request,
        )
        status.training = training
        status.conditions = set_condition(
            status.conditions, "TrainingSucceeded", None, "JobRunning", f"Job {name} (schedule)", generation
        )
        metrics.TRAINING_JOBS.labels(event="started").inc()
        notify("Normal", "TrainingStarted", f"Job {name} started ({SCHEDULE_TRIGGER})")

    if training.job and training.result == "Running":
        state = await _read_job(objects, spec, runs, training.job)
        if state is None:
            training.result, training.message = "Failed", "training Job disappeared before it finished"
        else:
            _record_job(training, state)
        if training.result != "Running":
            training.finished_at = now_iso()
            succeeded = training.result == "Succeeded"
            status.conditions = set_condition(
                status.conditions,
                "TrainingSucceeded",
                succeeded,
                "JobSucceeded" if succeeded else "JobFailed",
                training.message or "",
                generation,
            )
            metrics.TRAINING_JOBS.labels(event="succeeded" if succeeded else "failed").inc()
            notify(
                "Normal" if succeeded else "Warning",
                "TrainingSucceeded" if succeeded else "TrainingFailed",
                f"Job {training.job}: {training.message}",
                training.version,
            )
        status.training = training
        if training.result == "Running":
            return

    trigger = wanted_trigger(spec, status, annotations, has_any_version=has_any_version)
    if trigger is None:
        status.training = training if status.training or training.job else status.training
        return
    kind, key = trigger
    if any(job_state(job, []).result == "Running" for job in [*jobs, *runs]):
        return
    name = job_name(owner, kind, key)
    await objects.apply(build_training_run(owner, spec, job_name=name, trigger=kind))
    status.training = TrainingStatus(
        job=name,
        trigger=kind,
        result="Running",
        message="training Job started",
        started_at=now_iso(),
        request=annotations.get(RETRAIN_ANNOTATION, training.request),
    )
    status.conditions = set_condition(
        status.conditions, "TrainingSucceeded", None, "JobRunning", f"Job {name} ({kind})", generation
    )
    if kind == DRIFT_TRIGGER and status.drift is not None:
        status.drift.retrained_for, status.drift.retrained_at = key, now_iso()
    metrics.TRAINING_JOBS.labels(event="started").inc()
    notify("Normal", "TrainingStarted", f"Job {name} started ({kind})")


def _record_job(training: TrainingStatus, state: JobState) -> None:
    training.result, training.message = state.result, state.message
    if state.report:
        training.run_id = str(state.report.get("run_id") or training.run_id or "") or None
        version = state.report.get("version")
        training.version = str(version) if version is not None else training.version
        if state.report.get("gate") == "failed":
            training.message = f"quality gate failed: {state.report.get('reason', '')}".strip()


async def _read_job(
    objects: OwnedObjects, spec: ModelDeploymentSpec, runs: list[dict[str, Any]], name: str
) -> JobState | None:
    job = next((item for item in runs if item["metadata"]["name"] == name), None)
    if job is None:
        return None
    state = job_state(job, [])
    if state.result == "Running":
        return state
    # Finished: the entrypoint's report is in its (rank 0) pod's termination message.
    return job_state(job, await objects.list_of("v1", "Pod", training_pod_selector(spec, name)))


async def _list_runs(
    objects: OwnedObjects, spec: ModelDeploymentSpec, selector: str, jobs: list[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    """The owner's training runs of the spec's engine; None when the engine's API is not installed."""
    api_version, kind = training_run_kind(spec)
    if kind == "Job":
        return jobs
    try:
        return await objects.list_of(api_version, kind, selector)
    except KubeError as error:
        if error.status == 404:
            return None
        raise


def _report_missing_engine(status: ModelDeploymentStatus, training: TrainingStatus, notify: Notify) -> None:
    message = (
        "training.engine is kubeflow but the API server serves no TrainJob (trainer.kubeflow.org/v1alpha1):"
        " install Kubeflow Trainer or set training.engine to job"
    )
    condition = next((c for c in status.conditions if c.type == "TrainingSucceeded"), None)
    if condition is None or condition.reason != "EngineMissing":
        notify("Warning", "TrainingEngineMissing", message)
    status.conditions = set_condition(
        status.conditions, "TrainingSucceeded", False, "EngineMissing", message, status.observed_generation
    )
    status.training = training if status.training or training.job else status.training


def prefetch_training(objects: OwnedObjects, owner: Owner) -> None:
    """Start the read the schedule's first apply or delete makes (`OwnedObjects.prefetch_first_touch`); a new
    owner's delete makes none."""
    training = objects.spec.training
    if objects.new_owner and (training is None or not training.schedule):
        return
    objects.prefetch_first_touch("batch/v1", "CronJob", cronjob_name(owner))


async def _reconcile_schedule(objects: OwnedObjects, owner: Owner, spec: ModelDeploymentSpec) -> None:
    name = cronjob_name(owner)
    if spec.training is not None and spec.training.schedule:
        await objects.apply([build_training_cronjob(owner, spec, name=name)])
    else:
        await objects.delete([("batch/v1", "CronJob", name)])

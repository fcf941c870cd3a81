"""Training Jobs on the real control plane: GPU scheduling, completion and failure (kwok), one at a time."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

from tests.cluster.operator.conftest import RegisteredModel, condition, model_deployment
from tests.support.cluster import wait_until
from tests.support.mlflow_server import MlflowServer
from tests.support.namespace_objects import Resources


def _unregistered(mlflow: MlflowServer) -> RegisteredModel:
    # A model name the registry does not know: the first training has to create it.
    return RegisteredModel(name=f"new-{uuid.uuid4().hex[:8]}", client=None, tracking_uri=mlflow.url)  # type: ignore[arg-type]


def _training(**extra: Any) -> dict[str, Any]:
    return {
        "image": "ghcr.io/modelpilot/train:test",
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "backoffLimit": 0,
        **extra,
    }


def _jobs(resources: Resources, name: str) -> list[dict[str, Any]]:
    return resources.list_of("batch/v1", "Job", f"modelpilot.io/deployment={name},app.kubernetes.io/component=training")


def _training_result(result: str) -> Any:
    return lambda obj: ((obj.get("status") or {}).get("training") or {}).get("result") == result


def test_first_training_runs_on_a_gpu_node_and_completes(
    resources: Resources,
    mlflow: MlflowServer,
    operator: subprocess.Popen[bytes],
) -> None:
    model = _unregistered(mlflow)
    manifest = model_deployment(
        "fresh", model, training=_training(podAnnotations={"modelpilot.io/kwok-duration": "3s"}, schedule="0 3 * * 0")
    )
    resources.apply(manifest)

    running = resources.wait_mdep("fresh", _training_result("Running"), "training Job started")
    assert running["status"]["phase"] == "Training"
    assert running["status"]["training"]["trigger"] == "initial"
    job_name = running["status"]["training"]["job"]
    job = resources.get("batch/v1", "Job", job_name)
    assert job is not None
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert any(t.get("key") == "nvidia.com/gpu" for t in pod_spec["tolerations"])
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["MODELPILOT_MODEL_NAME"] == model.name
    assert env["MLFLOW_TRACKING_URI"] == mlflow.url

    node = wait_until(
        lambda: next(
            (pod["spec"].get("nodeName") for pod in resources.list_of("v1", "Pod", f"job-name={job_name}")), None
        ),
        timeout=30,
        description="training pod scheduled",
    )
    assert str(node).startswith("kwok-gpu-")

    done = resources.wait_mdep("fresh", _training_result("Succeeded"), "training Job succeeded", timeout=90)
    assert condition(done, "TrainingSucceeded")["status"] == "True"
    resources.wait_event("fresh", "TrainingStarted")
    assert len(_jobs(resources, "fresh")) == 1, "the initial training runs once"

    cron = resources.get("batch/v1", "CronJob", "fresh-train-scheduled")
    assert cron is not None
    assert cron["spec"]["schedule"] == "0 3 * * 0"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    cron_container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert cron_container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_retrain_requests_run_one_job_at_a_time_and_failures_are_reported(
    resources: Resources,
    mlflow: MlflowServer,
    operator: subprocess.Popen[bytes],
) -> None:
    model = _unregistered(mlflow)
    slow = _training(podAnnotations={"modelpilot.io/kwok-duration": "6s", "modelpilot.io/kwok-fail": "true"})
    resources.apply(model_deployment("retry", model, training=slow))
    resources.wait_mdep("retry", _training_result("Running"), "initial Job running")

    manifest = model_deployment("retry", model, training=slow)
    manifest["metadata"]["annotations"] = {"modelpilot.io/retrain": "first"}
    resources.apply(manifest)
    failed = resources.wait_mdep("retry", _training_result("Failed"), "the initial Job failed", timeout=90)
    assert condition(failed, "TrainingSucceeded")["status"] == "False"
    assert failed["status"]["phase"] == "Pending"
    assert (failed["status"].get("canary") or {}).get("state") in (None, "Idle"), "a failed Job starts no rollout"
    resources.wait_event("retry", "TrainingFailed")

    # The retrain request that arrived while the first Job ran starts the second Job, and only then.
    second = resources.wait_mdep(
        "retry",
        lambda obj: (obj["status"].get("training") or {}).get("trigger") == "request",
        "the requested Job started",
        timeout=60,
    )
    assert second["status"]["training"]["request"] == "first"
    jobs = _jobs(resources, "retry")
    active = [job for job in jobs if not (job.get("status") or {}).get("conditions")]
    assert len(active) <= 1
    assert len(jobs) == 2


def test_jobs_the_schedule_starts_are_followed_in_status_like_any_other(
    resources: Resources,
    model: RegisteredModel,
    operator: subprocess.Popen[bytes],
) -> None:
    model.set_alias("champion", model.add_version())  # a version exists: no initial training
    every_minute = _training(schedule="* * * * *", podAnnotations={"modelpilot.io/kwok-duration": "2s"})
    resources.apply(model_deployment("cron", model, training=every_minute))

    # The control plane's CronJob controller starts the Job at the next full minute.
    started = resources.wait_mdep(
        "cron",
        lambda obj: ((obj.get("status") or {}).get("training") or {}).get("trigger") == "schedule",
        "the scheduled Job followed",
        timeout=100,
    )
    job_name = started["status"]["training"]["job"]
    job = resources.get("batch/v1", "Job", job_name)
    assert job is not None
    assert [ref["kind"] for ref in job["metadata"]["ownerReferences"]] == ["CronJob"]

    done = resources.wait_mdep("cron", _training_result("Succeeded"), "the scheduled Job succeeded", timeout=60)
    assert done["status"]["training"]["job"] == job_name
    assert condition(done, "TrainingSucceeded")["status"] == "True"
    # Events are posted after the status write that records them: the status may be seen first.
    wait_until(
        lambda: {"TrainingStarted", "TrainingSucceeded"} <= {event["reason"] for event in resources.events("cron")},
        timeout=30,
        description="TrainingStarted and TrainingSucceeded Events",
    )
    history = [entry for entry in done["status"]["history"] if entry["event"].startswith("Training")]
    assert [entry["event"] for entry in history][:2] == ["TrainingStarted", "TrainingSucceeded"]
    assert job_name in history[0]["message"]

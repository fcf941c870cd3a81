"""When a training Job starts, and how a finished Job is read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from modelpilot.operator.builders.common import Owner
from modelpilot.operator.handlers.training import (
    TRAINING_RUN_NAME_LIMIT,
    cronjob_name,
    job_name,
    job_state,
    scheduled_job,
    wanted_trigger,
)
from modelpilot.operator.spec import parse_spec
from modelpilot.operator.status import DriftStatus, ModelDeploymentStatus, TrainingStatus
from tests.support.crd_cases import valid_spec

OWNER = Owner(name="fraud", namespace="ml", uid="1234-5678")


def _job(*conditions: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "fraud-train-1"},
        "status": {"conditions": [{"type": kind, "status": "True", "message": f"{kind} msg"} for kind in conditions]},
    }


def _pod(message: str) -> dict[str, Any]:
    return {"status": {"containerStatuses": [{"state": {"terminated": {"message": message}}}]}}


def test_job_names_are_stable_per_trigger_and_distinct_across_triggers() -> None:
    assert job_name(OWNER, "request", "a") == job_name(OWNER, "request", "a")
    assert job_name(OWNER, "request", "a") != job_name(OWNER, "request", "b")
    assert len(job_name(Owner(name="x" * 63, namespace="ml", uid="u"), "initial", "initial")) == TRAINING_RUN_NAME_LIMIT


def test_running_complete_and_failed_jobs() -> None:
    assert job_state(_job(), []).result == "Running"
    report = {"run_id": "abc", "version": "4", "gate": "passed"}
    done = job_state(_job("Complete"), [_pod("epoch 3\n" + json.dumps(report))])
    assert (done.result, done.report) == ("Succeeded", report)
    failed = job_state(_job("Failed"), [_pod(json.dumps({"gate": "failed", "reason": "AUC 0.6 < 0.8"}))])
    assert failed.result == "Failed"
    assert "AUC 0.6" in failed.message


@pytest.mark.parametrize(
    ("annotations", "training", "has_version", "expected"),
    [
        ({}, None, False, ("initial", "initial")),
        ({}, TrainingStatus(job="fraud-train-1", trigger="initial", result="Failed"), False, None),
        ({}, TrainingStatus(job="fraud-train-2", trigger="request", result="Failed"), False, None),
        ({}, None, True, None),
        ({"modelpilot.io/retrain": "now"}, None, True, ("request", "now")),
        ({"modelpilot.io/retrain": "now"}, TrainingStatus(request="now"), True, None),
    ],
)
def test_wanted_trigger(
    annotations: dict[str, str],
    training: TrainingStatus | None,
    has_version: bool,
    expected: tuple[str, str] | None,
) -> None:
    spec = parse_spec(valid_spec())
    status = ModelDeploymentStatus(training=training)
    assert wanted_trigger(spec, status, annotations, has_any_version=has_version) == expected


def test_no_training_section_never_trains() -> None:
    raw = valid_spec()
    del raw["training"]
    assert wanted_trigger(parse_spec(raw), ModelDeploymentStatus(), {}, has_any_version=False) is None


def _scheduled(name: str, created: str, cronjob: str = "fraud-train-scheduled") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cronjob, "controller": True}],
        }
    }


def test_the_newest_job_of_the_schedule_is_followed_once_nothing_else_runs() -> None:
    jobs = [
        _scheduled("fraud-train-scheduled-100", "2026-03-01T03:00:00Z"),
        _scheduled("fraud-train-scheduled-200", "2026-03-08T03:00:00Z"),
        _scheduled("other-train-scheduled-300", "2026-03-09T03:00:00Z", cronjob="other-train-scheduled"),
        {"metadata": {"name": "fraud-train-abc", "creationTimestamp": "2026-03-10T00:00:00Z"}},
    ]
    idle = TrainingStatus(job="fraud-train-abc", result="Succeeded", started_at="2026-02-01T00:00:00Z")
    found = scheduled_job(jobs, "fraud-train-scheduled", idle)
    assert found is not None
    assert found["metadata"]["name"] == "fraud-train-scheduled-200"
    assert scheduled_job(jobs, "fraud-train-scheduled", TrainingStatus()) == found


def test_a_scheduled_job_is_not_followed_twice_nor_while_another_job_runs() -> None:
    jobs = [_scheduled("fraud-train-scheduled-200", "2026-03-08T03:00:00Z")]
    followed = TrainingStatus(job="fraud-train-scheduled-200", result="Succeeded", started_at="2026-03-08T03:00:00Z")
    assert scheduled_job(jobs, "fraud-train-scheduled", followed) is None
    running = TrainingStatus(job="fraud-train-abc", result="Running", started_at="2026-03-01T00:00:00Z")
    assert scheduled_job(jobs, "fraud-train-scheduled", running) is None
    older = TrainingStatus(job="fraud-train-abc", result="Failed", started_at="2026-03-09T00:00:00Z")
    assert scheduled_job(jobs, "fraud-train-scheduled", older) is None


def test_cronjob_names_fit_the_cronjob_limit_and_never_collide() -> None:
    assert cronjob_name(OWNER) == "fraud-train-scheduled"
    prefix = "a" * 36 + "-model-"
    long = [Owner(name=f"{prefix}{tail}", namespace="ml", uid=tail) for tail in ("one", "two")]
    names = [cronjob_name(owner) for owner in long]
    assert all(len(name) <= 52 and name.endswith("-train-scheduled") for name in names), names
    assert names[0] != names[1]
    assert cronjob_name(long[0]) == names[0], "stable for one name"
    longest = Owner(name="b" * 36, namespace="ml", uid="u")
    assert cronjob_name(longest) == "b" * 36 + "-train-scheduled"


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("drift", "training", "expected"),
    [
        # A new drift episode retrains, keyed by the episode so a restarted operator finds the same Job.
        (DriftStatus(state="Drifted", since="2026-03-01T11:00:00Z"), None, ("drift", "2026-03-01T11:00:00Z")),
        # Once per episode.
        (
            DriftStatus(
                state="Drifted",
                since="2026-03-01T11:00:00Z",
                retrained_for="2026-03-01T11:00:00Z",
                retrained_at="2026-03-01T11:01:00Z",
            ),
            None,
            None,
        ),
        # A second episode within the cooldown (6h by default) waits…
        (
            DriftStatus(
                state="Drifted",
                since="2026-03-01T11:30:00Z",
                retrained_for="2026-03-01T08:00:00Z",
                retrained_at="2026-03-01T08:01:00Z",
            ),
            None,
            None,
        ),
        # …and after it retrains.
        (
            DriftStatus(
                state="Drifted",
                since="2026-03-01T11:30:00Z",
                retrained_for="2026-03-01T04:00:00Z",
                retrained_at="2026-03-01T04:01:00Z",
            ),
            None,
            ("drift", "2026-03-01T11:30:00Z"),
        ),
        # Unknown (too little traffic) or not drifted never retrains; nor while a Job runs.
        (DriftStatus(state="Unknown", since="2026-03-01T11:00:00Z"), None, None),
        (DriftStatus(state="NotDrifted", since="2026-03-01T11:00:00Z"), None, None),
        (
            DriftStatus(state="Drifted", since="2026-03-01T11:00:00Z"),
            TrainingStatus(job="fraud-train-1", result="Running"),
            None,
        ),
    ],
)
def test_drift_retrains_once_per_episode_after_the_cooldown(
    drift: DriftStatus, training: TrainingStatus | None, expected: tuple[str, str] | None
) -> None:
    spec = parse_spec(valid_spec())
    assert spec.training is not None
    assert spec.training.retrain_on_drift
    status = ModelDeploymentStatus(training=training, drift=drift)
    assert wanted_trigger(spec, status, {}, has_any_version=True, now=NOW) == expected


def test_drift_without_retrain_on_drift_only_reports() -> None:
    raw = valid_spec()
    raw["training"]["retrainOnDrift"] = False
    status = ModelDeploymentStatus(drift=DriftStatus(state="Drifted", since="2026-03-01T11:00:00Z"))
    assert wanted_trigger(parse_spec(raw), status, {}, has_any_version=True, now=NOW) is None


def _ranked_pod(index: int, message: str) -> dict[str, Any]:
    pod = _pod(message)
    pod["metadata"] = {"annotations": {"batch.kubernetes.io/job-completion-index": str(index)}}
    return pod


def test_the_report_of_a_run_with_several_workers_is_rank_0s_whatever_the_pod_order() -> None:
    leader = {"run_id": "abc", "version": "7", "gate": "passed"}
    stale = {"error": "RegistryUnreachable", "reason": "a stale follower message"}
    pods = [_ranked_pod(1, json.dumps(stale)), _ranked_pod(0, json.dumps(leader))]
    assert job_state(_job("Complete"), pods).report == leader


def test_a_trainjob_reads_like_a_job_from_its_conditions() -> None:
    trainjob = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "fraud-train-1"},
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "JobsFailed", "message": "node-0 failed"}]
        },
    }
    state = job_state(trainjob, [])
    assert (state.result, state.message) == ("Failed", "node-0 failed")

"""Training runs of several workers: the Indexed Job with its headless Service, and the Kubeflow TrainJob."""

from __future__ import annotations

from typing import Any

import pytest

from modelpilot.operator.builders.common import selector
from modelpilot.operator.builders.training import (
    ENTRYPOINT,
    LAUNCHER,
    PERMANENT_FAILURE_EXIT_CODE,
    RENDEZVOUS_PORT,
    build_training_job,
    rendezvous_service_name,
)
from modelpilot.operator.builders.trainjob import (
    build_training_run,
    training_pod_selector,
    training_run_kind,
)
from modelpilot.operator.spec import parse_spec
from tests.unit.operator.builders.examples import OWNER, gateway_raw, spec_of
from tests.unit.operator.builders.golden import assert_matches_golden

JOB = "fraud-train-1a2b3c4d"


def _raw(**training: Any) -> dict[str, Any]:
    raw = gateway_raw()
    raw["training"].pop("schedule")
    raw["training"].update(training)
    return raw


def _run(**training: Any) -> list[dict[str, Any]]:
    return build_training_run(OWNER, spec_of(_raw(**training)), job_name=JOB, trigger="request")


def _container(job: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return container


def test_two_workers_with_the_job_engine_match_golden() -> None:
    assert_matches_golden("training-indexed-job-two-workers", _run(workers=2))


def test_a_kubeflow_trainjob_matches_golden() -> None:
    assert_matches_golden("training-trainjob-two-workers", _run(workers=2, engine="kubeflow"))


def test_one_worker_stays_a_plain_job_running_the_entrypoint() -> None:
    (job,) = _run()
    assert "completionMode" not in job["spec"]
    assert "subdomain" not in job["spec"]["template"]["spec"]
    assert _container(job)["command"] == [ENTRYPOINT]


def test_n_workers_are_an_indexed_job_of_n_pods_at_once_behind_a_headless_service() -> None:
    service, job = _run(workers=4)
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 4, 4)
    assert service["kind"] == "Service"
    assert service["spec"]["clusterIP"] == "None"
    # The workers meet before any pod could be ready: their names must resolve at once.
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert job["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"]
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[key] == value for key, value in service["spec"]["selector"].items())


def test_the_rendezvous_service_never_selects_serving_pods_and_serving_never_selects_training() -> None:
    service, job = _run(workers=2)
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert not all(pod_labels.get(key) == value for key, value in selector(OWNER.name, None).items())
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "training"


def test_workers_run_torchrun_with_c10d_rendezvous_at_the_pod_of_index_0() -> None:
    _, job = _run(workers=3)
    container = _container(job)
    service = rendezvous_service_name(OWNER)
    assert container["command"] == LAUNCHER
    args = container["args"]
    assert "--nnodes=3" in args
    assert "--rdzv-backend=c10d" in args
    assert f"--rdzv-endpoint=$(MODELPILOT_JOB_NAME)-0.{service}:{RENDEZVOUS_PORT}" in args
    # The entrypoint and the spec's own args come last, after torchrun's.
    assert args[-4:] == ["--no-python", ENTRYPOINT, "--epochs", "20"]
    job_name_env = next(var for var in container["env"] if var["name"] == "MODELPILOT_JOB_NAME")
    assert job_name_env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['batch.kubernetes.io/job-name']"


def test_one_process_per_gpu_of_a_worker_and_one_on_a_cpu_worker() -> None:
    _, gpu_job = _run(workers=2, resources={"limits": {"nvidia.com/gpu": 4}})
    _, cpu_job = _run(workers=2, resources={"requests": {"cpu": "2"}})
    assert "--nproc-per-node=4" in _container(gpu_job)["args"]
    assert "--nproc-per-node=1" in _container(cpu_job)["args"]


def test_a_gate_failure_on_any_worker_still_fails_the_whole_job_at_once() -> None:
    _, job = _run(workers=2)
    rule = job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"]["values"] == [PERMANENT_FAILURE_EXIT_CODE]
    assert job["spec"]["backoffLimit"] == 1


def test_the_scheduled_cronjob_starts_indexed_jobs_too() -> None:
    from modelpilot.operator.builders.training import build_training_cronjob

    raw = gateway_raw()
    raw["training"]["workers"] = 2
    cronjob = build_training_cronjob(OWNER, spec_of(raw), name="fraud-train-scheduled")
    assert cronjob["spec"]["jobTemplate"]["spec"]["completionMode"] == "Indexed"


def test_service_names_are_dns_labels_distinct_per_owner() -> None:
    from modelpilot.operator.builders.common import Owner

    long_a = Owner(name="9" + "x" * 200, namespace="ml", uid="a")
    long_b = Owner(name="9" + "x" * 200, namespace="ml", uid="b")
    for owner in (long_a, long_b, OWNER):
        name = rendezvous_service_name(owner)
        assert len(name) <= 63
        assert name[0].isalpha()
    assert rendezvous_service_name(long_a) != rendezvous_service_name(long_b)


def test_the_trainjob_runs_the_same_image_launcher_and_arguments_as_the_job() -> None:
    (trainjob,) = _run(workers=2, engine="kubeflow")
    _, job = _run(workers=2)
    trainer = trainjob["spec"]["trainer"]
    assert trainer["image"] == _container(job)["image"]
    assert trainer["command"] == _container(job)["command"] == LAUNCHER
    assert trainer["args"] == ["--no-python", ENTRYPOINT, "--epochs", "20"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 1)
    job_env = {var["name"]: var.get("value") for var in _container(job)["env"] if "value" in var}
    trainer_env = {var["name"]: var["value"] for var in trainer["env"] if "value" in var}
    # The Job's run key is its uid (from its pods' labels); a TrainJob's is its name, which its retries keep.
    assert trainer_env.pop("MODELPILOT_RUN_KEY") == trainjob["metadata"]["name"]
    assert trainer_env == job_env
    assert trainjob["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    assert trainjob["metadata"]["ownerReferences"] == [OWNER.reference()]


def test_the_trainjob_places_its_nodes_like_the_job_and_reads_registry_credentials_by_key() -> None:
    raw = _raw(engine="kubeflow", workers=2)
    raw["registry"]["credentialsSecret"] = "mlflow-auth"
    (trainjob,) = build_training_run(OWNER, spec_of(raw), job_name=JOB, trigger="request")
    (override,) = trainjob["spec"]["podSpecOverrides"]
    assert override["targetJobs"] == [{"name": "node"}]
    assert override["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in override["tolerations"]
    secret_vars = {
        var["name"]: var["valueFrom"]["secretKeyRef"]
        for var in trainjob["spec"]["trainer"]["env"]
        if "valueFrom" in var
    }
    assert secret_vars["MLFLOW_TRACKING_TOKEN"] == {
        "name": "mlflow-auth",
        "key": "MLFLOW_TRACKING_TOKEN",
        "optional": True,
    }


def test_the_run_kind_and_its_pods_follow_the_engine() -> None:
    job_spec, kubeflow_spec = spec_of(_raw(workers=2)), spec_of(_raw(engine="kubeflow"))
    assert training_run_kind(job_spec) == ("batch/v1", "Job")
    assert training_run_kind(kubeflow_spec) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert training_pod_selector(job_spec, JOB) == f"job-name={JOB}"
    assert training_pod_selector(kubeflow_spec, JOB) == f"jobset.sigs.k8s.io/jobset-name={JOB}"


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"engine": "kubeflow", "schedule": "0 3 * * 0"}, "a CronJob cannot start a TrainJob"),
        ({"engine": "kubeflow", "affinity": {"nodeAffinity": {}}}, "takes no affinity or podAnnotations"),
        ({"engine": "kubeflow", "podAnnotations": {"a": "b"}}, "takes no affinity or podAnnotations"),
        ({"workers": 0}, "greater than or equal to 1"),
        ({"workers": 65}, "less than or equal to 64"),
        ({"engine": "slurm"}, "'job' or 'kubeflow'"),
    ],
)
def test_specs_the_engines_cannot_run_are_refused_with_the_reason(training: dict[str, Any], message: str) -> None:
    raw = gateway_raw()
    raw["training"].pop("schedule")
    raw["training"].update(training)
    with pytest.raises(ValueError, match=message):
        parse_spec(raw)


def test_a_one_worker_job_is_unchanged_by_the_defaults() -> None:
    raw = _raw()
    explicit = _raw(workers=1, engine="job")
    assert build_training_job(OWNER, spec_of(raw), job_name=JOB, trigger="request") == build_training_job(
        OWNER, spec_of(explicit), job_name=JOB, trigger="request"
    )

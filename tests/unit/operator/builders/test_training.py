"""Training Jobs and the scheduled-training CronJob."""

from __future__ import annotations

from typing import Any

import pytest

from modelpilot.operator.builders.common import is_valid_label_value
from modelpilot.operator.builders.training import (
    PERMANENT_FAILURE_EXIT_CODE,
    build_training_cronjob,
    build_training_job,
)
from tests.unit.operator.builders.examples import OWNER, gateway_raw, ingress_raw, replicas_raw, spec_of
from tests.unit.operator.builders.golden import assert_matches_golden

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _job(raw: dict[str, Any] | None = None, trigger: str = "initial") -> dict[str, Any]:
    return build_training_job(OWNER, spec_of(raw or gateway_raw()), job_name="fraud-train-1a2b3c4d", trigger=trigger)


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def _env(job: dict[str, Any]) -> dict[str, str]:
    return {var["name"]: var["value"] for var in _pod(job)["containers"][0]["env"] if "value" in var}


def test_job_and_cronjob_of_the_full_example_match_golden() -> None:
    spec = spec_of(gateway_raw())
    job = build_training_job(OWNER, spec, job_name="fraud-train-1a2b3c4d", trigger="request")
    cronjob = build_training_cronjob(OWNER, spec, name="fraud-train-scheduled")
    assert_matches_golden("training-job-and-cronjob", [job, cronjob])


def test_job_runs_the_entrypoint_with_the_spec_args_once_per_pod() -> None:
    job = _job()
    assert job["apiVersion"] == "batch/v1"
    assert job["metadata"]["name"] == "fraud-train-1a2b3c4d"
    assert job["metadata"]["ownerReferences"] == [OWNER.reference()]
    container = _pod(job)["containers"][0]
    assert container["image"] == "ghcr.io/modelpilot/train:0.1.0"
    assert container["command"] == ["modelpilot-train"]
    assert container["args"] == ["--epochs", "20"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert _pod(job)["restartPolicy"] == "Never"
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (1, 3600, 86400)


def test_job_env_points_at_the_registry_data_and_alias_pointers() -> None:
    env = _env(_job())
    assert env["MODELPILOT_MODEL_NAME"] == "fraud-detector"
    assert env["MODELPILOT_DATA_URI"] == "s3://modelpilot-data/flows.parquet"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow:5000"
    assert env["MODELPILOT_CHAMPION_ALIAS"] == "champion"
    assert env["MODELPILOT_CANDIDATE_ALIAS"] == "challenger"
    assert "MODELPILOT_CHAMPION_STAGE" not in env
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_the_run_key_is_the_jobs_uid_and_the_spec_cannot_replace_it() -> None:
    raw = gateway_raw()
    raw["training"]["env"] = [{"name": "MODELPILOT_RUN_KEY", "value": "mine"}]
    env = _pod(_job(raw))["containers"][0]["env"]
    keys = [var for var in env if var["name"] == "MODELPILOT_RUN_KEY"]
    # Kubernetes takes the last of two variables with one name.
    assert keys[-1] == {
        "name": "MODELPILOT_RUN_KEY",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/controller-uid']"}},
    }


def test_job_env_uses_stages_for_the_stage_flavour() -> None:
    env = _env(_job(ingress_raw()))
    assert env["MODELPILOT_CHAMPION_STAGE"] == "Production"
    assert env["MODELPILOT_CANDIDATE_STAGE"] == "Staging"
    assert "MODELPILOT_CHAMPION_ALIAS" not in env
    assert "MODELPILOT_DATA_URI" not in env  # the seeded generator


def test_without_a_candidate_pointer_a_passing_version_moves_the_stable_one() -> None:
    raw = replicas_raw()
    raw["training"] = {"image": "ghcr.io/modelpilot/train:0.1.0"}
    env = _env(_job(raw))
    assert env["MODELPILOT_CANDIDATE_ALIAS"] == env["MODELPILOT_CHAMPION_ALIAS"] == "champion"


def test_registry_credentials_come_from_the_secret() -> None:
    assert _pod(_job())["containers"][0]["envFrom"] == [{"secretRef": {"name": "mlflow-auth"}}]
    assert "envFrom" not in _pod(_job(ingress_raw()))["containers"][0]


def test_gpu_job_gets_gpu_limits_toleration_and_node_selector() -> None:
    pod = _pod(_job())
    assert pod["containers"][0]["resources"] == {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    assert pod["tolerations"] == [GPU_TOLERATION]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def test_spec_tolerations_and_affinity_pass_through_without_a_second_gpu_toleration() -> None:
    raw = gateway_raw()
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a10g"]}]}]
            }
        }
    }
    raw["training"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present"}]
    raw["training"]["affinity"] = affinity
    pod = _pod(_job(raw))
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present"}]
    assert pod["affinity"] == affinity


def test_cpu_job_has_no_gpu_toleration() -> None:
    assert "tolerations" not in _pod(_job(ingress_raw()))


def test_job_labels_name_the_trigger_and_the_training_component() -> None:
    job = _job(trigger="drift")
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels["modelpilot.io/trigger"] == "drift"
        assert labels["app.kubernetes.io/component"] == "training"
        assert labels["modelpilot.io/deployment"] == "fraud"
        assert all(is_valid_label_value(value) for value in labels.values())


def test_training_pods_are_never_selected_by_serving_services() -> None:
    labels = _job()["spec"]["template"]["metadata"]["labels"]
    assert "modelpilot.io/track" not in labels
    assert labels["app.kubernetes.io/component"] != "serving"


def test_training_pods_meet_the_restricted_pod_security_standard() -> None:
    pod = _pod(_job())
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = pod["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_permanent_failures_fail_the_job_at_once_and_disruptions_do_not_count() -> None:
    rules = _job()["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob"
    assert rules[0]["onExitCodes"]["values"] == [PERMANENT_FAILURE_EXIT_CODE]
    assert rules[1] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}


def test_cronjob_runs_the_same_pod_one_at_a_time_on_the_schedule() -> None:
    spec = spec_of(gateway_raw())
    cronjob = build_training_cronjob(OWNER, spec, name="fraud-train-scheduled")
    assert cronjob["spec"]["schedule"] == "0 3 * * 0"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    template = cronjob["spec"]["jobTemplate"]
    assert template["metadata"]["labels"]["modelpilot.io/trigger"] == "schedule"
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "training"
    job = build_training_job(OWNER, spec, job_name="x", trigger="schedule")
    assert template["spec"] == job["spec"]


def test_building_without_training_or_schedule_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"spec\.training is not set"):
        build_training_job(OWNER, spec_of(replicas_raw()), job_name="x", trigger="initial")
    with pytest.raises(ValueError, match=r"schedule is not set"):
        build_training_cronjob(OWNER, spec_of(ingress_raw()), name="x")


def test_training_pods_may_not_unpickle_models_unless_the_spec_opts_in() -> None:
    assert _env(_job())["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    raw = gateway_raw()
    raw["training"]["allowPickleDeserialization"] = True
    raw["training"]["env"] = [{"name": "MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "value": "false"}]
    assert _env(_job(raw))["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "true"


def test_training_pods_run_as_the_named_service_account() -> None:
    raw = gateway_raw()
    raw["training"]["serviceAccountName"] = "fraud-training"
    job = _job(raw)
    assert _pod(job)["serviceAccountName"] == "fraud-training"
    assert _pod(job)["automountServiceAccountToken"] is False
    cronjob = build_training_cronjob(OWNER, spec_of(raw), name="fraud-train-scheduled")
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"] == "fraud-training"


def test_training_pods_without_a_service_account_name_use_the_namespace_default() -> None:
    assert "serviceAccountName" not in _pod(_job())


@pytest.mark.parametrize("name", ["Fraud", "-fraud", "fraud_training", ""])
def test_an_invalid_training_service_account_name_is_refused(name: str) -> None:
    raw = gateway_raw()
    raw["training"]["serviceAccountName"] = name
    with pytest.raises(ValueError, match="serviceAccountName"):
        spec_of(raw)

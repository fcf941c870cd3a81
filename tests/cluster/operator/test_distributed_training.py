"""Training runs of several workers on the real control plane: an Indexed Job on kwok's GPU nodes, and a
Kubeflow Trainer TrainJob accepted by the API server with Trainer's own CRDs (hack/kubeflow-trainer-crds).

Trainer's controller (and JobSet) do not run here: the TrainJob's end is written into its status the way the
controller writes it, and the operator must read it back like a Job's.
"""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import pytest
from kubernetes import client

from tests.cluster.operator.conftest import RegisteredModel, condition, model_deployment
from tests.support.cluster import wait_until
from tests.support.kubeflow_trainer import install_kubeflow_trainer_crds, set_trainjob_condition
from tests.support.mlflow_server import MlflowServer
from tests.support.namespace_objects import Resources

TRAINJOB = ("trainer.kubeflow.org/v1alpha1", "TrainJob")


@pytest.fixture(scope="session")
def kubeflow_trainer_crds(api_client: client.ApiClient) -> list[str]:
    return install_kubeflow_trainer_crds(api_client)


def _unregistered(mlflow: MlflowServer) -> RegisteredModel:
    return RegisteredModel(name=f"new-{uuid.uuid4().hex[:8]}", client=None, tracking_uri=mlflow.url)  # type: ignore[arg-type]


def _training_result(result: str) -> Any:
    return lambda obj: ((obj.get("status") or {}).get("training") or {}).get("result") == result


def test_two_workers_run_as_an_indexed_job_with_named_pods_behind_a_headless_service(
    resources: Resources, mlflow: MlflowServer, operator: subprocess.Popen[bytes]
) -> None:
    training = {
        "image": "ghcr.io/modelpilot/train:test",
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "workers": 2,
        "backoffLimit": 0,
        "podAnnotations": {"modelpilot.io/kwok-duration": "4s"},
    }
    resources.apply_with_this_crd(model_deployment("ranks", _unregistered(mlflow), training=training))
    running = resources.wait_mdep("ranks", _training_result("Running"), "training run started")
    job_name = running["status"]["training"]["job"]
    job = resources.get("batch/v1", "Job", job_name)
    assert job is not None
    assert (job["spec"]["completionMode"], job["spec"]["parallelism"]) == ("Indexed", 2)
    subdomain = job["spec"]["template"]["spec"]["subdomain"]
    service = resources.get("v1", "Service", subdomain)
    assert service is not None
    assert service["spec"]["clusterIP"] == "None"

    pods = wait_until(
        lambda: found if len(found := resources.list_of("v1", "Pod", f"job-name={job_name}")) == 2 else None,
        timeout=30,
        description="both worker pods created",
    )
    # The Job controller names each pod's host after its index: that name is what torchrun's peers dial.
    assert sorted(pod["spec"]["hostname"] for pod in pods) == [f"{job_name}-0", f"{job_name}-1"]
    assert all(pod["spec"]["subdomain"] == subdomain for pod in pods)

    done = resources.wait_mdep("ranks", _training_result("Succeeded"), "both workers completed", timeout=90)
    assert condition(done, "TrainingSucceeded")["status"] == "True"


def test_a_trainjob_is_accepted_by_trainers_crd_and_its_end_is_read_back_like_a_jobs(
    resources: Resources,
    mlflow: MlflowServer,
    operator: subprocess.Popen[bytes],
    kubeflow_trainer_crds: list[str],
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    assert "trainjobs.trainer.kubeflow.org" in kubeflow_trainer_crds
    training = {
        "image": "ghcr.io/modelpilot/train:test",
        "args": ["--epochs", "5"],
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "workers": 2,
        "engine": "kubeflow",
    }
    resources.apply_with_this_crd(model_deployment("kubeflow", _unregistered(mlflow), training=training))
    running = resources.wait_mdep("kubeflow", _training_result("Running"), "TrainJob created")
    name = running["status"]["training"]["job"]
    assert condition(running, "TrainingSucceeded")["reason"] == "JobRunning"
    trainjob = resources.get(*TRAINJOB, name)
    assert trainjob is not None, "the API server stored the TrainJob as built"
    trainer = trainjob["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 1)
    assert trainer["args"][-2:] == ["--epochs", "5"]
    assert trainjob["spec"]["runtimeRef"]["name"] == "torch-distributed"
    assert trainjob["metadata"]["ownerReferences"][0]["name"] == "kubeflow"
    assert not resources.list_of("batch/v1", "Job", "modelpilot.io/deployment=kubeflow"), "no batch Job as well"

    stored = set_trainjob_condition(api_client, namespace, name, "Complete", "JobsCompleted", "TrainJob completed")
    assert stored["status"]["conditions"][0]["type"] == "Complete"
    done = resources.wait_mdep("kubeflow", _training_result("Succeeded"), "TrainJob read back as done", timeout=60)
    assert done["status"]["training"]["job"] == name
    assert condition(done, "TrainingSucceeded")["status"] == "True"
    reasons = [event["reason"] for event in resources.events("kubeflow")]
    assert "TrainingStarted" in reasons
    assert "TrainingSucceeded" in reasons


def test_a_failed_trainjob_is_reported_as_a_failed_training_with_its_message(
    resources: Resources,
    mlflow: MlflowServer,
    operator: subprocess.Popen[bytes],
    kubeflow_trainer_crds: list[str],
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    training = {"image": "ghcr.io/modelpilot/train:test", "workers": 2, "engine": "kubeflow"}
    resources.apply_with_this_crd(model_deployment("kubeflow-fails", _unregistered(mlflow), training=training))
    running = resources.wait_mdep("kubeflow-fails", _training_result("Running"), "TrainJob created")
    name = running["status"]["training"]["job"]
    set_trainjob_condition(api_client, namespace, name, "Failed", "JobsFailed", "node-0 exceeded its backoff limit")
    failed = resources.wait_mdep("kubeflow-fails", _training_result("Failed"), "TrainJob read back as failed")
    assert failed["status"]["training"]["message"] == "node-0 exceeded its backoff limit"
    assert condition(failed, "TrainingSucceeded")["status"] == "False"
    resources.wait_event("kubeflow-fails", "TrainingFailed")

"""modelpilot-train as two ranks (gloo over loopback, started by the launcher the training Job uses) against a
real MLflow server: the same model as one process within a tolerance, one run, one version, the leader's exit
code on every path."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

from tests.api.training.runner import ROWS, TrainRun, TrainRunner
from tests.support.mlflow_server import MlflowServer

# Same seeded data, split and hyperparameters; two ranks see each epoch's rows in another order and average
# the gradients of two half-batches (class weights are per half-batch), so the weights differ slightly.
AUC_TOLERANCE = 0.01
SHORT = ("--rows", ROWS, "--epochs", "6", "--stability-seeds", "1")


@pytest.fixture(scope="module")
def client(mlflow: MlflowServer) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url)


def registered_versions(client: MlflowClient, model: str) -> list[str]:
    return sorted(v.version for v in client.search_model_versions(f"name = '{model}'"))


def runs_of(client: MlflowClient, experiment: str) -> list[object]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return list(client.search_runs([found.experiment_id]))


def test_two_gloo_ranks_register_one_version_as_good_as_one_process(client: MlflowClient, train: TrainRunner) -> None:
    single = train("--model-name", "ids-one-rank", *SHORT)
    assert single.returncode == 0, single.stderr[-3000:]
    started = time.monotonic()
    pair = train.distributed(2, "--model-name", "ids-two-ranks", *SHORT)
    assert pair.returncode == 0, pair.stderr[-3000:]
    print(f"two ranks: {time.monotonic() - started:.1f}s wall")

    assert registered_versions(client, "ids-two-ranks") == ["1"]
    (run,) = runs_of(client, "ids-two-ranks")
    assert run.data.params["workers"] == "2"  # type: ignore[attr-defined]
    assert pair.last_stdout_line == pair.written_result
    assert pair.written_result["gate"] == "passed"
    assert pair.stderr.count("joined the process group as rank") == 2

    auc_one = float(client.get_model_version("ids-one-rank", "1").tags["modelpilot.io/test-auc"])
    auc_two = float(client.get_model_version("ids-two-ranks", "1").tags["modelpilot.io/test-auc"])
    print(f"test AUC: one rank {auc_one:.4f}, two ranks {auc_two:.4f}")
    assert abs(auc_one - auc_two) <= AUC_TOLERANCE


def test_a_failed_gate_keeps_exit_code_3_through_the_launcher(client: MlflowClient, train: TrainRunner) -> None:
    gated = ("--model-name", "ids-two-ranks-gated", "--rows", ROWS, "--epochs", "1", "--stability-seeds", "0",
             "--min-auc", "0.999", "--run-key", "gated-run")  # fmt: skip
    outcome: TrainRun = train.distributed(2, *gated)
    assert outcome.returncode == 3, outcome.stderr[-3000:]
    assert outcome.written_result["gate"] == "failed"
    (version,) = client.search_model_versions("name = 'ids-two-ranks-gated'")
    assert version.tags["modelpilot.io/gate"] == "failed"
    assert version.tags["modelpilot.io/run-key"] == "gated-run"

    # Restarted with the same run key, it reports the same verdict with the same exit code.
    again = train.distributed(2, *gated)
    assert again.returncode == 3, again.stderr[-3000:]
    assert again.written_result == outcome.written_result
    assert registered_versions(client, "ids-two-ranks-gated") == ["1"]


def test_a_restarted_run_finishes_what_its_earlier_attempt_registered_and_trains_nothing(
    client: MlflowClient, train: TrainRunner
) -> None:
    model = "ids-two-ranks-restarted"
    run = ("--model-name", model, *SHORT, "--run-key", "0f3a-uid")
    first = train.distributed(2, *run)
    assert first.returncode == 0, first.stderr[-3000:]
    assert client.get_registered_model(model).aliases == {"challenger": "1"}
    # As if the leader had died after registering, before pointing the candidate alias at its version.
    client.delete_registered_model_alias(model, "challenger")
    client.delete_model_version_tag(model, "1", "modelpilot.io/semver")

    started = time.monotonic()
    again = train.distributed(2, *run)
    assert again.returncode == 0, again.stderr[-3000:]
    print(f"restart that trains nothing: {time.monotonic() - started:.1f}s wall")
    assert again.written_result == first.written_result
    assert "was registered by an earlier attempt of this run (0f3a-uid): not training again" in again.stderr
    assert "trained in" not in again.stderr, "the leader trained nothing"
    assert registered_versions(client, model) == ["1"]
    assert len(runs_of(client, model)) == 1, "no second MLflow run"
    assert client.get_registered_model(model).aliases == {"challenger": "1"}
    assert client.get_model_version(model, "1").tags["modelpilot.io/semver"] == "1.1.0"


def test_an_unreachable_mlflow_stops_every_rank_at_once_with_the_leaders_code(train: TrainRunner) -> None:
    from tests.support.processes import free_port

    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    outcome = train.distributed(2, "--model-name", "ids-two-ranks-unreachable", "--mlflow-retries", "2",
                                "--retry-backoff-seconds", "0.1", env={"MLFLOW_TRACKING_URI": url})  # fmt: skip
    assert outcome.returncode == 5, outcome.stderr[-3000:]
    assert outcome.written_result["error"] == "RegistryUnreachable"
    # Only the leader reports the error; the follower learns of it and stops with the same code.
    assert outcome.stderr.count(f"modelpilot-train: error: MLflow at {url} unreachable") == 1
    assert time.monotonic() - started < 120

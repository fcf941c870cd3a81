"""modelpilot-train end to end against a real MLflow server, on the CPU, on generated flows."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient, get_tracking_uri, set_registry_uri, set_tracking_uri
from mlflow.artifacts import download_artifacts
from mlflow.models import get_model_info
from mlflow.pytorch import load_model

from modelpilot.training.data import FEATURES, generate_flows
from tests.api.training.runner import ROWS, Train, TrainRun, TrainRunner
from tests.support.mlflow_server import MlflowServer

MODEL = "ids-alias"
WORSE = ("--epochs", "1", "--learning-rate", "1e-5", "--stability-seeds", "0")


@pytest.fixture(scope="module")
def client(mlflow: MlflowServer) -> Iterator[MlflowClient]:
    """A client of the test server; MLflow's module-level functions point there too while the module runs."""
    previous = get_tracking_uri()
    set_tracking_uri(mlflow.url)
    set_registry_uri(mlflow.url)
    yield MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url)
    set_tracking_uri(previous)
    set_registry_uri(previous)


@pytest.fixture(scope="module")
def first_run(mlflow: MlflowServer, bytecode_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainRun:
    """A short first training (3 epochs) of MODEL: no champion yet, so only the floor applies."""
    run = TrainRunner(mlflow.url, bytecode_cache, tmp_path_factory.mktemp("first"))
    outcome: TrainRun = run("--model-name", MODEL, "--rows", ROWS, "--epochs", "3")
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    return outcome


def artifact_paths(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    found: set[str] = set()
    for entry in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, entry.path) if entry.is_dir else {entry.path}
    return found


def test_first_version_is_registered_with_every_artifact_and_tag(
    first_run: TrainRun, client: MlflowClient, tmp_path: Path
) -> None:
    result = first_run.last_stdout_line
    assert result["gate"] == "passed"
    assert result["version"] == "1"
    assert "floor 0.7000" in result["reason"]
    assert first_run.written_result == result

    version = client.get_model_version(MODEL, "1")
    assert version.run_id == result["run_id"]
    tags = version.tags
    assert tags["modelpilot.io/gate"] == "passed"
    assert tags["modelpilot.io/gate-reason"] == result["reason"]
    assert tags["modelpilot.io/semver"] == "1.1.0"
    assert tags["modelpilot.io/compared-with"] == "none"
    assert len(tags["modelpilot.io/data-version"]) == 16
    assert tags["modelpilot.io/training-date"].startswith("20")
    assert tags["modelpilot.io/code-version"].startswith("0.1.0")

    run = client.get_run(result["run_id"])
    assert {"plots/confusion_matrix.png", "plots/calibration.png", "reference/feature_stats.json",
            "model_card.md"} <= artifact_paths(client, run.info.run_id)  # fmt: skip
    metrics = run.data.metrics
    for name in ("test_auc", "test_f1_attack", "test_f1_benign", "test_precision_attack", "test_recall_attack",
                 "test_precision_benign", "test_recall_benign"):  # fmt: skip
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["test_auc"] > 0.8
    assert metrics["training_seconds"] < 60
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_auc")] == [1, 2, 3]
    assert run.data.params["epochs"] == "3"
    assert run.data.params["learning_rate"] == "0.003"
    assert run.inputs is not None
    dataset = run.inputs.dataset_inputs[0].dataset
    assert dataset.digest == tags["modelpilot.io/data-version"]
    assert "generate_flows(n_rows=4000" in dataset.source

    reference = json.loads(
        (Path(client.download_artifacts(run.info.run_id, "reference/feature_stats.json"))).read_text()
    )
    assert set(reference["features"]) == set(FEATURES)
    card = Path(client.download_artifacts(run.info.run_id, "model_card.md")).read_text()
    assert "## Intended use" in card
    assert "## Limits" in card
    assert tags["modelpilot.io/data-version"] in card
    png = Path(client.download_artifacts(run.info.run_id, "plots/calibration.png")).read_bytes()
    assert png.startswith(b"\x89PNG")

    # The registered model is a torch.export program with a tensor signature and an input example.
    info = get_model_info(f"models:/{MODEL}/1")
    assert tuple(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, len(FEATURES))
    assert info.saved_input_example_info is not None
    loaded = load_model(f"models:/{MODEL}/1")  # type: ignore[no-untyped-call]
    rows = torch.from_numpy(generate_flows(9, seed=99)[FEATURES].to_numpy().copy())
    assert loaded(rows).shape == (9, 2)
    # The gates are a second exported program inside the model (an exported program keeps only forward).
    model_files = Path(download_artifacts(artifact_uri=client.get_model_version_download_uri(MODEL, "1")))
    gates = torch.export.load(str(model_files / "extra_files" / "gates.pt2")).module()
    assert np.allclose(gates(rows).sum(dim=1).detach().numpy(), 1.0, atol=1e-5)


def test_a_better_model_becomes_the_candidate_and_a_worse_one_is_gated_out(
    first_run: TrainRun, client: MlflowClient, train: Train
) -> None:
    assert client.get_model_version_by_alias(MODEL, "challenger").version == "1"
    client.set_registered_model_alias(MODEL, "champion", "1")  # what a promotion does

    better = train("--model-name", MODEL, "--rows", ROWS)
    assert better.returncode == 0, better.stderr[-3000:]
    assert better.last_stdout_line["version"] == "2"
    assert "champion v1" in better.last_stdout_line["reason"]
    assert client.get_model_version_by_alias(MODEL, "challenger").version == "2"
    v1, v2 = client.get_model_version(MODEL, "1"), client.get_model_version(MODEL, "2")
    assert v2.tags["modelpilot.io/compared-with"] == "1"
    assert float(v2.tags["modelpilot.io/test-auc"]) >= float(v1.tags["modelpilot.io/test-auc"]) - 0.01

    worse = train("--model-name", MODEL, "--rows", ROWS, *WORSE)
    assert worse.returncode == 3, worse.stderr[-3000:]
    result = worse.last_stdout_line
    assert (result["version"], result["gate"]) == ("3", "failed")
    assert "< champion v1 (@champion)" in result["reason"]
    assert worse.error_line.startswith("modelpilot-train: quality gate failed for version 3")
    v3 = client.get_model_version(MODEL, "3")
    assert v3.tags["modelpilot.io/gate"] == "failed"
    assert v3.tags["modelpilot.io/gate-reason"] == result["reason"]
    assert client.get_model_version_by_alias(MODEL, "challenger").version == "2"
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    assert worse.written_result == result


def test_stage_flavour_moves_a_passing_version_to_staging_and_leaves_a_failing_one_alone(
    client: MlflowClient, train: Train, tmp_path: Path
) -> None:
    model = "ids-stage"
    data = tmp_path / "flows.parquet"
    generate_flows(int(ROWS), seed=31).to_parquet(data, index=False)
    env = {
        "MODELPILOT_MODEL_NAME": model,
        "MODELPILOT_DATA_URI": f"file://{data}",
        "MODELPILOT_CHAMPION_STAGE": "Production",
        "MODELPILOT_CANDIDATE_STAGE": "Staging",
        "MODELPILOT_EPOCHS": "10",
        "MODELPILOT_STABILITY_SEEDS": "1",
    }
    first = train(env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert client.get_model_version(model, "1").current_stage == "Staging"
    inputs = client.get_run(first.last_stdout_line["run_id"]).inputs
    assert inputs is not None
    assert json.loads(inputs.dataset_inputs[0].dataset.source) == {"uri": f"file://{data}"}
    with pytest.warns(FutureWarning):
        client.transition_model_version_stage(model, "1", "Production")

    worse = train(*WORSE, env=env)
    assert worse.returncode == 3, worse.stderr[-3000:]
    assert "champion v1 (stage Production)" in worse.last_stdout_line["reason"]
    assert client.get_model_version(model, "2").current_stage == "None"
    assert client.get_model_version(model, "2").tags["modelpilot.io/gate"] == "failed"
    assert client.get_model_version(model, "1").current_stage == "Production"


def assert_nothing_registered(client: MlflowClient, model: str) -> None:
    assert client.search_registered_models(filter_string=f"name = '{model}'") == []


def test_a_missing_data_file_fails_fast_with_a_clear_message_and_registers_nothing(
    client: MlflowClient, train: Train, tmp_path: Path
) -> None:
    outcome = train("--model-name", "ids-no-data", "--data-uri", str(tmp_path / "missing.csv"))
    assert outcome.returncode == 4
    assert outcome.error_line == f"modelpilot-train: error: data file not found: {tmp_path / 'missing.csv'}"
    assert outcome.written_result["error"] == "DataError"
    assert outcome.stdout.strip() == ""
    assert_nothing_registered(client, "ids-no-data")


def test_a_schema_mismatch_names_the_missing_column_and_registers_nothing(
    client: MlflowClient, train: Train, tmp_path: Path
) -> None:
    data = tmp_path / "flows.csv"
    generate_flows(500, seed=1).drop(columns=["payload_entropy"]).to_csv(data, index=False)
    outcome = train("--model-name", "ids-bad-schema", "--data-uri", f"file://{data}")
    assert outcome.returncode == 4
    assert "schema mismatch" in outcome.error_line
    assert "missing column(s) payload_entropy" in outcome.error_line
    assert_nothing_registered(client, "ids-bad-schema")


def test_an_unreachable_mlflow_fails_after_bounded_retries(train: Train) -> None:
    from tests.support.processes import free_port

    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    outcome = train("--model-name", "ids", "--mlflow-retries", "3", "--retry-backoff-seconds", "0.1",
                    env={"MLFLOW_TRACKING_URI": url})  # fmt: skip
    assert outcome.returncode == 5
    assert outcome.error_line.startswith(f"modelpilot-train: error: MLflow at {url} unreachable after 3 attempts")
    assert outcome.written_result == {"error": "RegistryUnreachable", "reason": outcome.error_line.split("error: ")[1]}
    assert time.monotonic() - started < 60


def test_a_nan_loss_stops_training_marks_the_run_failed_and_registers_nothing(
    client: MlflowClient, train: Train
) -> None:
    outcome = train("--model-name", "ids-diverged", "--rows", "1000", "--learning-rate", "1e12")
    assert outcome.returncode == 6
    assert outcome.error_line.startswith("modelpilot-train: error: training diverged: loss became nan")
    assert_nothing_registered(client, "ids-diverged")
    experiment = client.get_experiment_by_name("ids-diverged")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert "loss became nan" in run.data.tags["modelpilot.io/error"]


def test_bad_settings_exit_with_a_usage_error(train: Train) -> None:
    outcome = train("--model-name", "ids", "--epochs", "zero")
    assert outcome.returncode == 2
    assert outcome.error_line.startswith("modelpilot-train: error: invalid settings: epochs:")

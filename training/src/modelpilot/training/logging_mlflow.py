"""What a run writes to MLflow tracking: params, metrics, dataset, plots, reference statistics, card and model."""

from __future__ import annotations

import json
import os
import subprocess
import time
import warnings
from functools import cache
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Metric
from mlflow.models import infer_signature

from modelpilot.training.data import FEATURES, LABEL
from modelpilot.training.fit import EpochRecord, FitResult, Splits
from modelpilot.training.gate import GateDecision
from modelpilot.training.metrics import Evaluation
from modelpilot.training.model import GatingView, MixtureOfExperts
from modelpilot.training.reference import REFERENCE_ARTIFACT, reference_statistics
from modelpilot.training.report import CardFacts, model_card, plot_calibration, plot_confusion_matrix
from modelpilot.training.settings import TrainSettings
from modelpilot.training.sources import Dataset

MODEL_ARTIFACT = "model"
# The gates program, an extra file of the logged model (`extra_files/gates.pt2` in its directory).
GATES_FILE = "gates.pt2"
INPUT_EXAMPLE_ROWS = 5


@cache
def code_version() -> str:
    """MODELPILOT_CODE_VERSION (set when the image is built), else the package version plus the git commit if any."""
    if configured := os.environ.get("MODELPILOT_CODE_VERSION"):
        return configured
    version = metadata.version("modelpilot-training")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}" if commit else version


def log_setup(settings: TrainSettings, dataset: Dataset, splits: Splits) -> None:
    """Params, code version and the dataset (digest and source) of the active run, before training starts."""
    params = settings.model_dump(exclude={"result_file"})
    params.update(
        features=len(FEATURES),
        rows_train=len(splits.train),
        rows_validation=len(splits.validation),
        rows_test=len(splits.test),
        attack_share=round(float(dataset.frame[LABEL].mean()), 4),
    )
    mlflow.log_params({key: str(value) for key, value in params.items()})
    mlflow.set_tags({"modelpilot.io/code-version": code_version(), "modelpilot.io/data-version": dataset.digest})
    with warnings.catch_warnings():
        # MLflow warns that a local path fits two equivalent source types, and that integer labels
        # cannot hold missing values (the schema check already refused those); neither applies.
        warnings.simplefilter("ignore", UserWarning)
        source = from_pandas(
            dataset.frame, source=dataset.source, targets=LABEL, name=dataset.name, digest=dataset.digest
        )
        mlflow.log_input(source, context="training")


def log_epoch(run_id: str, record: EpochRecord) -> None:
    """One epoch's metrics, stepped by epoch, in one request."""
    now = int(time.time() * 1000)
    values = {
        "train_loss": record.train_loss,
        "val_loss": record.validation_loss,
        "val_auc": record.validation_auc,
        "epoch_seconds": record.seconds,
    }
    MlflowClient().log_batch(
        run_id, metrics=[Metric(key, value, now, record.epoch) for key, value in values.items() if np.isfinite(value)]
    )


def log_model(model: MixtureOfExperts, example: np.ndarray, scratch: Path) -> str:
    """The model as a torch.export (pt2) MLflow model with signature and input example; its model URI.

    An exported program keeps only `forward`, so the gates are exported as a second program and saved inside
    the model, as its extra file `GATES_FILE`: the prediction server loads it with the model and answers
    `return_gates` from it.
    """
    example = np.ascontiguousarray(example, dtype=np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(example)).numpy()
    gates = torch.export.export(
        GatingView(model), (torch.from_numpy(example),), dynamic_shapes=({0: torch.export.Dim.AUTO},)
    )
    gates_path = scratch / GATES_FILE
    torch.export.save(gates, gates_path)
    info = mlflow.pytorch.log_model(
        model,
        name=MODEL_ARTIFACT,
        input_example=example,
        signature=infer_signature(example, logits),
        serialization_format="pt2",
        extra_files=[str(gates_path)],
        # Listed, not inferred: inference loads the model in a subprocess and takes many seconds.
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
    )
    return str(info.model_uri)


def log_results(
    settings: TrainSettings,
    dataset: Dataset,
    splits: Splits,
    result: FitResult,
    evaluation: Evaluation,
    decision: GateDecision,
    seed_aucs: list[float],
    trained_at: str,
    scratch: Path,
) -> str:
    """Final metrics, plots, reference statistics, model card and the model of the active run; the model URI."""
    metrics = evaluation.as_metrics("test_")
    metrics.update(
        best_epoch=float(result.best_epoch),
        epochs_run=float(len(result.history)),
        training_seconds=result.seconds,
        stability_auc_spread=float(max(seed_aucs) - min(seed_aucs)),
    )
    mlflow.log_metrics({key: value for key, value in metrics.items() if np.isfinite(value)})
    mlflow.log_dict(
        {"confusion_matrix": evaluation.confusion.tolist(), "labels": ["benign", "attack"]}, "metrics/confusion.json"
    )
    mlflow.set_tags(
        {"modelpilot.io/device": result.device, "modelpilot.io/mixed-precision": str(result.mixed_precision)}
    )

    plots = scratch / "plots"
    plots.mkdir()
    plot_confusion_matrix(evaluation, plots / "confusion_matrix.png")
    plot_calibration(evaluation, plots / "calibration.png")
    mlflow.log_artifacts(str(plots), artifact_path="plots")

    # The baseline is the training split: what the model learned from.
    reference = reference_statistics(pd.DataFrame(splits.train.features, columns=FEATURES), FEATURES)
    mlflow.log_text(json.dumps(reference, indent=1), REFERENCE_ARTIFACT)

    card = CardFacts(
        model_name=settings.model_name,
        data_source=dataset.source,
        data_digest=dataset.digest,
        rows={"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test)},
        attack_share=float(dataset.frame[LABEL].mean()),
        features=FEATURES,
        params={key: str(value) for key, value in settings.model_dump(exclude={"result_file"}).items()},
        evaluation=evaluation,
        gate_passed=decision.passed,
        gate_reason=decision.reason,
        training_date=trained_at,
        code_version=code_version(),
        device=result.device + (" with mixed precision" if result.mixed_precision else ""),
    )
    mlflow.log_text(model_card(card), "model_card.md")
    return log_model(result.model, splits.test.features[:INPUT_EXAMPLE_ROWS], scratch)

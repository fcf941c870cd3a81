"""The lab's real model: a small torch classifier logged once to MLflow and registered as versions.

Every version of a lab model serves the same weights; what makes a version good or bad in a rollout
is the fault injection the lab gives its servers (`Lab.faults`), not the model itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from mlflow import MlflowClient

from tests.api.inference.models import N_FEATURES, make_moe, sample_rows

EXPERIMENT = "rollout-lab"
FEATURE_NAMES = [f"f{index}" for index in range(N_FEATURES)]


@dataclass(frozen=True)
class LoggedClassifier:
    """A logged model that registry versions can point at."""

    tracking_uri: str
    model_uri: str  # models:/m-<id>, MLflow 3's logged-model URI
    model_id: str
    run_id: str


def log_classifier(tracking_uri: str) -> LoggedClassifier:
    """Log the mixture-of-experts classifier (20 float features, 2 classes) in torch.export format."""
    import mlflow
    import mlflow.pytorch

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run() as run:
        info = mlflow.pytorch.log_model(
            make_moe(),
            name="classifier",
            input_example=sample_rows(4),
            # Explicit requirements: inferring them exports the whole workspace lock, seconds per model.
            pip_requirements=["torch", "mlflow"],
        )
    return LoggedClassifier(tracking_uri, info.model_uri, info.model_id, run.info.run_id)


def register_versions(logged: LoggedClassifier, name: str, count: int) -> list[str]:
    """Register `count` new versions of `name` (created if missing) pointing at the logged classifier."""
    client = MlflowClient(tracking_uri=logged.tracking_uri, registry_uri=logged.tracking_uri)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    versions = []
    for _ in range(count):
        created = client.create_model_version(
            name, source=logged.model_uri, run_id=logged.run_id, model_id=logged.model_id
        )
        versions.append(str(created.version))
    return versions


def invocation_body(rows: int = 1, seed: int = 7) -> bytes:
    """An MLflow `/invocations` request in the dataframe_split format."""
    data = sample_rows(rows, seed=seed).tolist()
    return orjson.dumps({"dataframe_split": {"columns": FEATURE_NAMES, "data": data}})

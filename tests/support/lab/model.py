"""The lab's real model: a small torch classifier logged once to MLflow and registered as versions.

Every version of a lab model serves the same weights; what makes a version good or bad in a rollout
is the fault injection the lab gives its servers (`Lab.faults`), not the model itself — except for the
flow classifiers below, trained well or badly, which make versions differ in what they answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd
import torch
from mlflow import MlflowClient

from modelpilot.training.data import ATTACK_SHARE, FEATURES, LABEL, generate_flows
from modelpilot.training.model import MixtureOfExperts
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


# -- models that differ in quality --------------------------------------------------------------
#
# The classifier above serves the same weights in every version. To judge versions by what they answer,
# the lab also trains the production classifier (`modelpilot.training.model.MixtureOfExperts`) on the
# seeded network-flow generator: one on the real labels, one on the same labels shuffled (it answers as
# fast, and about as well as a coin on balanced traffic). Traffic and its ground truth come from the
# same generator (`labelled_flows`), so the labels the lab posts are the data's own.

FLOW_TRAINING_ROWS = 4000
FLOW_TRAINING_STEPS = 150


def train_flow_classifier(seed: int, *, shuffle_labels: bool = False) -> MixtureOfExperts:
    """A MixtureOfExperts trained full-batch on `FLOW_TRAINING_ROWS` generated flows (seconds on one core)."""
    frame = generate_flows(FLOW_TRAINING_ROWS, seed=seed)
    features = torch.tensor(frame[FEATURES].to_numpy(), dtype=torch.float32)
    labels = frame[LABEL].to_numpy()
    if shuffle_labels:
        labels = np.random.default_rng(seed).permutation(labels)
    targets = torch.tensor(labels, dtype=torch.int64)
    torch.manual_seed(seed)
    model = MixtureOfExperts(len(FEATURES))
    model.fit_normalisation(features)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    weights = torch.tensor([1.0, (1.0 - ATTACK_SHARE) / ATTACK_SHARE])  # attacks are a minority
    for _ in range(FLOW_TRAINING_STEPS):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(features), targets, weight=weights)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    return model.eval()


def log_flow_classifier(tracking_uri: str, model: MixtureOfExperts) -> LoggedClassifier:
    """Log a trained flow classifier in torch.export format, as `log_classifier` logs the lab's classifier."""
    import mlflow
    import mlflow.pytorch

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    example = np.array(generate_flows(4, seed=0)[FEATURES].to_numpy(dtype=np.float32))  # a writable copy
    with mlflow.start_run() as run:
        info = mlflow.pytorch.log_model(
            model, name="classifier", input_example=example, pip_requirements=["torch", "mlflow"]
        )
    return LoggedClassifier(tracking_uri, info.model_uri, info.model_id, run.info.run_id)


@dataclass(frozen=True)
class LabelledFlows:
    """Rows of generated flows (raw features) and their ground truth, half attacks and half benign."""

    rows: list[list[float]]
    labels: list[int]

    def body(self, index: int) -> bytes:
        """An `/invocations` body with row `index` (modulo the count) alone."""
        row = self.rows[index % len(self.rows)]
        return orjson.dumps({"dataframe_split": {"columns": FEATURES, "data": [row]}})

    def label(self, index: int) -> int:
        """The ground truth of the row `body(index)` sends."""
        return self.labels[index % len(self.labels)]


def labelled_flows(count: int, seed: int) -> LabelledFlows:
    """`count` flows from the generator (a seed the models were not trained on), balanced between the classes
    so that accuracy tells a model that finds attacks from one that calls everything benign."""
    frame = generate_flows(count * 8, seed=seed)
    attacks, benign = frame[frame[LABEL] == 1], frame[frame[LABEL] == 0]
    half = min(count // 2, len(attacks))
    chosen = pd.concat([attacks.iloc[:half], benign.iloc[: count - half]]).sample(frac=1.0, random_state=seed)
    rows = [[float(value) for value in row] for row in chosen[FEATURES].to_numpy(dtype=np.float32)]
    return LabelledFlows(rows, [int(value) for value in chosen[LABEL]])

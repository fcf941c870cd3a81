"""Small real models for the inference tests and benchmark, logged to MLflow the way users log theirs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from modelpilot.training.reference import reference_statistics

N_FEATURES = 20
N_EXPERTS = 4


class TinyMixtureOfExperts(nn.Module):
    """Softmax-gated experts over 20 float features, 2 classes: `forward(x) -> logits`, `gates(x) -> [N, 4]`."""

    def __init__(self, n_features: int = N_FEATURES, n_experts: int = N_EXPERTS, hidden: int = 16) -> None:
        super().__init__()
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 2)) for _ in range(n_experts)
        )
        self.gate = nn.Linear(n_features, n_experts)

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Gating weights per row; each row sums to 1."""
        return torch.softmax(self.gate(x), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate-weighted sum of the experts' logits."""
        weights = self.gates(x)
        logits = torch.stack([expert(x) for expert in self.experts], dim=1)
        return (weights.unsqueeze(-1) * logits).sum(dim=1)


def make_moe(seed: int = 0) -> TinyMixtureOfExperts:
    """A deterministic, untrained MoE in eval mode."""
    torch.manual_seed(seed)
    return TinyMixtureOfExperts().eval()


def sample_rows(n: int, seed: int = 1) -> np.ndarray[Any, Any]:
    """`n` rows of 20 float32 features."""
    return np.random.default_rng(seed).normal(size=(n, N_FEATURES)).astype(np.float32)


FEATURE_COLUMNS = [f"f{i}" for i in range(N_FEATURES)]


class RiskRules:
    """A generic pyfunc model over mixed column types.

    Columns: amount (double), items (long), country (string), vip (boolean).
    """

    @staticmethod
    def predict_frame(frame: Any) -> np.ndarray[Any, Any]:
        """'review' when amount per item is high outside the home country and not VIP, else 'ok'."""
        per_item = frame["amount"].to_numpy() / np.maximum(frame["items"].to_numpy(), 1)
        risky = (per_item > 100.0) & (frame["country"].to_numpy() != "DE") & ~frame["vip"].to_numpy()
        return np.where(risky, "review", "ok")


@dataclass(frozen=True)
class LoggedModels:
    """Registry names of the models logged for a test session."""

    moe_pt2: str
    moe_pickle: str
    moe_columns: str
    rules_pyfunc: str


def log_all(tracking_uri: str) -> LoggedModels:
    """Log and register the four test models on a tracking server; version 1 of each."""
    import mlflow
    import mlflow.pyfunc
    import mlflow.pytorch
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("inference-tests")
    model = make_moe()
    example = sample_rows(4)
    names = LoggedModels("moe-pt2", "moe-pickle", "moe-columns", "rules-pyfunc")
    # Explicit requirements: inferring them exports the whole workspace lock, seconds per model.
    requirements = {"pip_requirements": ["torch", "mlflow"]}
    with mlflow.start_run():
        mlflow.pytorch.log_model(
            model, name="moe", input_example=example, registered_model_name=names.moe_pt2, **requirements
        )
        # The training reference a training run logs beside its model (reference/feature_stats.json).
        frame = pd.DataFrame(sample_rows(2000, seed=7).astype(np.float64), columns=FEATURE_COLUMNS)
        mlflow.log_text(json.dumps(reference_statistics(frame, FEATURE_COLUMNS)), "reference/feature_stats.json")
        mlflow.pytorch.log_model(
            model,
            name="moe-pickle",
            input_example=example,
            serialization_format="pickle",
            registered_model_name=names.moe_pickle,
            **requirements,
        )
        column_signature = ModelSignature(inputs=Schema([ColSpec("double", c) for c in FEATURE_COLUMNS]))
        mlflow.pytorch.log_model(
            model,
            name="moe-columns",
            signature=column_signature,
            serialization_format="pickle",
            registered_model_name=names.moe_columns,
            **requirements,
        )
        rules_signature = ModelSignature(
            inputs=Schema(
                [
                    ColSpec("double", "amount"),
                    ColSpec("long", "items"),
                    ColSpec("string", "country"),
                    ColSpec("boolean", "vip"),
                ]
            ),
            outputs=Schema([ColSpec("string")]),
        )
        mlflow.pyfunc.log_model(
            name="rules",
            python_model=_RulesModel(),
            signature=rules_signature,
            input_example=pd.DataFrame({"amount": [250.0], "items": [1], "country": ["FR"], "vip": [False]}),
            registered_model_name=names.rules_pyfunc,
            **requirements,
        )
    mlflow.MlflowClient().set_registered_model_alias(names.moe_pt2, "champion", "1")
    return names


def _rules_model_class() -> Any:
    import mlflow.pyfunc

    class RulesModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
        """The pyfunc wrapper around `RiskRules`."""

        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return RiskRules.predict_frame(model_input)

    return RulesModel


_RulesModel = _rules_model_class()

"""Settings of a training run: command-line flags first, then MODELPILOT_* environment variables, then defaults.

Every field is a flag (`learning_rate` → `--learning-rate`) and an environment variable
(`MODELPILOT_LEARNING_RATE`); the operator's Job sets the variables, people use the flags.
MLflow's own variables (MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN, …) are read by MLflow.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from modelpilot.training.fit import TrainConfig
    from modelpilot.training.gate import GateConfig

TERMINATION_LOG = Path("/dev/termination-log")


def default_result_file() -> str | None:
    """Kubernetes' termination message file when this runs in a pod that can write it, else none."""
    if TERMINATION_LOG.exists() and os.access(TERMINATION_LOG, os.W_OK):
        return str(TERMINATION_LOG)
    return None


class TrainSettings(BaseSettings):
    """Everything a training run needs to know."""

    # `model_name` is a field here, not pydantic's "model_" namespace.
    model_config = SettingsConfigDict(env_prefix="MODELPILOT_", extra="ignore", protected_namespaces=())

    model_name: str = Field(min_length=1, description="Registered model name in MLflow.")
    experiment: str | None = Field(default=None, description="MLflow experiment (default: the model name).")
    data_uri: str = Field(default="", description="Path, file:// or s3:// URI of a CSV/Parquet table; empty: generate.")
    rows: int = Field(default=20000, ge=200, description="Rows to generate when no data URI is given.")
    data_seed: int = Field(default=7, description="Seed of the generated data and of the split.")
    drift: float = Field(default=0.0, ge=0.0, description="Drift of the generated data away from the reference.")
    validation_fraction: float = Field(default=0.15, gt=0.0, lt=0.5, description="Share of rows for early stopping.")
    test_fraction: float = Field(default=0.2, gt=0.0, lt=0.5, description="Share of rows held out for the gate.")

    epochs: int = Field(default=30, ge=1, description="Most epochs to train.")
    batch_size: int = Field(default=256, ge=1, description="Rows per optimisation step.")
    learning_rate: float = Field(default=3e-3, gt=0.0, description="AdamW learning rate.")
    weight_decay: float = Field(default=1e-4, ge=0.0, description="AdamW weight decay.")
    patience: int = Field(default=5, ge=1, description="Epochs without validation gain before stopping early.")
    experts: int = Field(default=4, ge=1, description="Number of experts.")
    hidden_units: int = Field(default=32, ge=1, description="Hidden units per expert and in the gate.")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="Dropout inside the experts.")
    seed: int = Field(default=0, description="Seed of weights and batch order.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: CUDA when available.")
    cpu_threads: int = Field(default=1, ge=1, description="Torch threads when training on the CPU.")

    champion_alias: str = Field(default="champion", description="Alias of the version in production.")
    candidate_alias: str = Field(default="challenger", description="Alias set on a version that passes the gate.")
    champion_stage: str | None = Field(default=None, description="Stage flavour: stage of the production version.")
    candidate_stage: str | None = Field(default=None, description="Stage flavour: stage a passing version moves to.")

    min_auc: float = Field(default=0.7, ge=0.0, le=1.0, description="Absolute AUC floor of the gate.")
    auc_tolerance: float = Field(default=0.01, ge=0.0, description="How far below the champion's AUC may pass.")
    stability_seeds: int = Field(default=2, ge=0, description="Extra seeds retrained to check stability.")
    max_seed_spread: float = Field(default=0.03, ge=0.0, description="Largest AUC spread across seeds.")
    max_segment_gap: float = Field(default=0.1, ge=0.0, description="Largest AUC shortfall within one segment.")
    min_segment_rows: int = Field(default=50, ge=1, description="Smallest segment the gate judges.")

    mlflow_retries: int = Field(default=5, ge=1, description="Attempts to reach MLflow before giving up.")
    retry_backoff_seconds: float = Field(default=2.0, ge=0.0, description="First wait between attempts (doubles).")
    semver_major: int = Field(default=1, ge=0, description="Major of the semantic version tag (the feature schema).")
    result_file: str | None = Field(
        default_factory=default_result_file, description="File the result JSON is also written to."
    )
    run_key: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="Names this run across restarts (the operator's Job sets its uid): a restart that finds a "
        "version registered under it reports that version instead of training again.",
    )

    @field_validator("result_file", "experiment", "champion_stage", "candidate_stage", "run_key", mode="before")
    @classmethod
    def empty_is_unset(cls, value: object) -> object:
        """An empty environment variable means "not set" (a Job template sets every variable)."""
        return None if value == "" else value

    @model_validator(mode="after")
    def stage_flavour_is_whole(self) -> TrainSettings:
        """One stage flag implies the other's default, so a run never mixes aliases and stages."""
        if self.champion_stage or self.candidate_stage:
            self.champion_stage = self.champion_stage or "Production"
            self.candidate_stage = self.candidate_stage or "Staging"
        return self

    @property
    def uses_stages(self) -> bool:
        """True for the stage flavour of the registry (Production / Staging), False for aliases."""
        return bool(self.candidate_stage)

    @property
    def experiment_name(self) -> str:
        """The experiment runs are logged to."""
        return self.experiment or self.model_name

    def train_config(self, seed: int | None = None) -> TrainConfig:
        """Hyperparameters for fit(), optionally with another seed."""
        # Imported here: parsing settings (and --help) should not wait for torch to load.
        from modelpilot.training.fit import TrainConfig

        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            patience=self.patience,
            n_experts=self.experts,
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            seed=self.seed if seed is None else seed,
            cpu_threads=self.cpu_threads,
        )

    def gate_config(self) -> GateConfig:
        """Tolerances for the quality gate."""
        from modelpilot.training.gate import GateConfig

        return GateConfig(
            min_auc=self.min_auc,
            auc_tolerance=self.auc_tolerance,
            max_seed_spread=self.max_seed_spread,
            max_segment_gap=self.max_segment_gap,
            min_segment_rows=self.min_segment_rows,
        )


def build_parser() -> argparse.ArgumentParser:
    """One flag per setting; values are strings here and typed and checked by TrainSettings."""
    parser = argparse.ArgumentParser(
        prog="modelpilot-train",
        description="Train the mixture-of-experts flow classifier, log it to MLflow, register it and gate it.",
        epilog="Every flag falls back to MODELPILOT_<FLAG> (e.g. MODELPILOT_MODEL_NAME), then to its default.",
    )
    for name, field in TrainSettings.model_fields.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", dest=name, default=argparse.SUPPRESS, metavar="VALUE", help=field.description
        )
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> TrainSettings:
    """Settings from `argv` over the environment; raises pydantic.ValidationError on bad values."""
    given = vars(build_parser().parse_args(argv))
    return TrainSettings(**given)

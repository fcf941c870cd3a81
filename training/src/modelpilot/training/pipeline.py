"""One training run end to end: data, training, evaluation, the gate decision, MLflow logging, registration.

The order keeps the registry clean: nothing is registered until training has succeeded and the gate
has been decided, and the version is created with its gate tags already on it. Only then is the
candidate alias (or stage) moved, and only when the gate passed.

With several ranks (torchrun) every rank loads the same data and trains (the main model and the
stability retrains) together; only the leader, rank 0, talks to MLflow, judges and registers, so a run
of any size registers at most one version.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient

from modelpilot.training import logging_mlflow
from modelpilot.training.data import FEATURES, SEGMENT_FEATURE
from modelpilot.training.distributed import SINGLE, Workers, join, leader_setup, wait_for_leader
from modelpilot.training.fit import (
    EpochRecord,
    Splits,
    TrainingDivergedError,
    choose_device,
    fit,
    predict_proba,
    split_frame,
)
from modelpilot.training.gate import Check, GateDecision, Holdout, decide
from modelpilot.training.metrics import evaluate, roc_auc
from modelpilot.training.registry import (
    GATE_REASON_TAG,
    GATE_TAG,
    RUN_KEY_TAG,
    SEMVER_TAG,
    TAG_PREFIX,
    RegistryTarget,
    find_champion_version,
    find_version_by_run_key,
    load_champion,
    mark_candidate,
    register_version,
    wait_for_tracking_server,
)
from modelpilot.training.settings import TrainSettings
from modelpilot.training.sources import Dataset, load_dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run reports: the MLflow run, the registered version and the gate's verdict."""

    run_id: str
    version: str
    gate_passed: bool
    reason: str

    def as_result(self) -> dict[str, str]:
        """The result object printed on stdout and written to the result file."""
        return {
            "run_id": self.run_id,
            "version": self.version,
            "gate": "passed" if self.gate_passed else "failed",
            "reason": self.reason,
        }


def registry_target(settings: TrainSettings) -> RegistryTarget:
    """Champion and candidate names from the settings."""
    return RegistryTarget(
        model_name=settings.model_name,
        champion_alias=settings.champion_alias,
        candidate_alias=settings.candidate_alias,
        champion_stage=settings.champion_stage,
        candidate_stage=settings.candidate_stage,
    )


def stability_aucs(settings: TrainSettings, splits: Splits, first_auc: float, workers: Workers = SINGLE) -> list[float]:
    """Test AUCs of the same configuration trained with `stability_seeds` further seeds (a diverged seed is NaN)."""
    aucs = [first_auc]
    for offset in range(1, settings.stability_seeds + 1):
        seed = settings.seed + offset * 1000
        try:
            model = fit(splits, settings.train_config(seed=seed), settings.device, workers=workers).model
            aucs.append(roc_auc(splits.test.labels, predict_proba(model, splits.test.features)[:, 1]))
        except TrainingDivergedError:
            aucs.append(float("nan"))
        log.info("stability: seed %d test_auc=%.4f", seed, aucs[-1])
    return aucs


def judge(
    settings: TrainSettings, target: RegistryTarget, splits: Splits, candidate: np.ndarray, seed_aucs: list[float]
) -> tuple[GateDecision, str | None]:
    """The gate decision against the current champion on the test split, and the champion's version if any."""
    holdout = Holdout(
        labels=splits.test.labels,
        segments=splits.test.features[:, FEATURES.index(SEGMENT_FEATURE)],
        segment_name=SEGMENT_FEATURE,
    )
    champion_version = find_champion_version(MlflowClient(), target)
    champion: np.ndarray | None = None
    label = f"champion v{champion_version} ({target.champion_label})"
    if champion_version is not None:
        try:
            champion = predict_proba(load_champion(target.model_name, champion_version), splits.test.features)[:, 1]
        except Exception as error:  # any model may hold the alias; one we cannot score cannot be beaten fairly
            reason = f"{label} could not be scored on the holdout: {type(error).__name__}: {error}"
            return GateDecision(False, (Check("champion", False, reason),)), champion_version
    decision = decide(holdout, candidate, champion, seed_aucs, settings.gate_config(), champion_label=label)
    return decision, champion_version


def load_splits(settings: TrainSettings) -> tuple[Dataset, Splits]:
    """The data and its split, the same on every rank."""
    dataset = load_dataset(settings.data_uri, settings.rows, settings.data_seed, settings.drift)
    splits = split_frame(dataset.frame, settings.validation_fraction, settings.test_fraction, settings.data_seed)
    log.info("data %s (digest %s): %d train, %d validation, %d test rows", dataset.source, dataset.digest,
             len(splits.train), len(splits.validation), len(splits.test))  # fmt: skip
    return dataset, splits


def train_as_follower(settings: TrainSettings, splits: Splits, workers: Workers) -> None:
    """A rank other than 0: its part of the main training and of the stability retrains, nothing else."""
    fit(splits, settings.train_config(), settings.device, workers=workers)
    for offset in range(1, settings.stability_seeds + 1):
        try:
            fit(splits, settings.train_config(seed=settings.seed + offset * 1000), settings.device, workers=workers)
        except TrainingDivergedError:
            continue  # every rank saw it; the leader records the seed as diverged


def run(settings: TrainSettings, workers: Workers = SINGLE) -> RunOutcome | None:
    """Train, log, register and gate; raises DataError, TrainingDivergedError or RegistryUnreachableError.

    The leader returns the outcome; other ranks train with it and return None."""
    join(workers, choose_device(settings.device))
    if not workers.is_leader:
        if wait_for_leader(workers):
            train_as_follower(settings, load_splits(settings)[1], workers)
        return None
    target = registry_target(settings)
    with leader_setup(workers) as setup:
        wait_for_tracking_server(mlflow.get_tracking_uri(), settings.mlflow_retries, settings.retry_backoff_seconds)
        earlier = registered_earlier(settings)
        setup.train = earlier is None
        if earlier is None:
            dataset, splits = load_splits(settings)
    if earlier is not None:
        return resume(settings, target, earlier)

    mlflow.set_experiment(settings.experiment_name)
    with mlflow.start_run(run_name=f"train-{settings.model_name}") as active:
        run_id = active.info.run_id
        logging_mlflow.log_setup(settings, dataset, splits)
        mlflow.log_param("workers", workers.world_size)

        def on_epoch(record: EpochRecord) -> None:
            logging_mlflow.log_epoch(run_id, record)

        try:
            result = fit(splits, settings.train_config(), settings.device, on_epoch=on_epoch, workers=workers)
        except TrainingDivergedError as error:
            mlflow.set_tag(f"{TAG_PREFIX}error", str(error))
            raise
        candidate = predict_proba(result.model, splits.test.features)[:, 1]
        evaluation = evaluate(splits.test.labels, candidate)
        log.info("trained in %.1fs on %s, best epoch %d, test_auc=%.4f", result.seconds, result.device,
                 result.best_epoch, evaluation.auc)  # fmt: skip
        seed_aucs = stability_aucs(settings, splits, evaluation.auc, workers)
        decision, champion_version = judge(settings, target, splits, candidate, seed_aucs)
        log.info("quality gate %s: %s", "passed" if decision.passed else "failed", decision.reason)

        trained_at = datetime.now(UTC).isoformat(timespec="seconds")
        with tempfile.TemporaryDirectory() as scratch:
            model_uri = logging_mlflow.log_results(
                settings, dataset, splits, result, evaluation, decision, seed_aucs, trained_at, Path(scratch)
            )
        tags = {
            f"{TAG_PREFIX}data-version": dataset.digest,
            f"{TAG_PREFIX}data-source": dataset.source,
            f"{TAG_PREFIX}training-date": trained_at,
            f"{TAG_PREFIX}code-version": logging_mlflow.code_version(),
            f"{TAG_PREFIX}test-auc": f"{evaluation.auc:.4f}",
            f"{TAG_PREFIX}compared-with": champion_version or "none",
            GATE_TAG: "passed" if decision.passed else "failed",
            GATE_REASON_TAG: decision.reason,
            **({RUN_KEY_TAG: settings.run_key} if settings.run_key else {}),
        }
        version = register_version(model_uri, settings.model_name, tags)
        mlflow.set_tags({f"{TAG_PREFIX}version": version, GATE_TAG: tags[GATE_TAG]})
        outcome = RunOutcome(run_id=run_id, version=version, gate_passed=decision.passed, reason=decision.reason)
        finish_registration(settings, target, outcome)
    return outcome


def finish_registration(settings: TrainSettings, target: RegistryTarget, outcome: RunOutcome) -> None:
    """The steps after a version exists: its semantic version tag and, when it passed, the candidate pointer.
    Each one sets a value, so running them again (a restarted run) changes nothing more."""
    client = MlflowClient()
    version = outcome.version
    client.set_model_version_tag(settings.model_name, version, SEMVER_TAG, f"{settings.semver_major}.{version}.0")
    if outcome.gate_passed:
        mark_candidate(client, target, version)
        log.info("version %s of %s is the new candidate (%s)", version, settings.model_name,
                 target.candidate_label)  # fmt: skip


def registered_earlier(settings: TrainSettings) -> RunOutcome | None:
    """The outcome an earlier attempt of this run recorded, when it got as far as registering its version
    (a Job restarts every pod when one fails, even after the leader registered)."""
    if not settings.run_key:
        return None
    found = find_version_by_run_key(MlflowClient(), settings.model_name, settings.run_key)
    if found is None:
        return None
    tags = found.tags or {}
    return RunOutcome(
        run_id=str(found.run_id),
        version=str(found.version),
        gate_passed=tags.get(GATE_TAG) == "passed",
        reason=tags.get(GATE_REASON_TAG, ""),
    )


def resume(settings: TrainSettings, target: RegistryTarget, earlier: RunOutcome) -> RunOutcome:
    """Finish what an earlier attempt of this run began after registering, and report its outcome."""
    log.info("version %s of %s was registered by an earlier attempt of this run (%s): not training again",
             earlier.version, settings.model_name, settings.run_key)  # fmt: skip
    finish_registration(settings, target, earlier)
    return earlier

"""Splitting and training: stratified, reproducible on the CPU, early stopping, divergence detected."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelpilot.training.data import generate_flows
from modelpilot.training.fit import (
    Splits,
    TrainConfig,
    TrainingDivergedError,
    class_weights,
    fit,
    predict_proba,
    split_frame,
)
from modelpilot.training.metrics import roc_auc


@pytest.fixture(scope="module")
def splits() -> Splits:
    return split_frame(generate_flows(3000, seed=21), validation_fraction=0.15, test_fraction=0.2, seed=21)


def test_split_is_stratified_disjoint_and_reproducible(splits: Splits) -> None:
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (1950, 450, 600)
    shares = [part.labels.mean() for part in (splits.train, splits.validation, splits.test)]
    assert max(shares) - min(shares) < 0.01
    again = split_frame(generate_flows(3000, seed=21), 0.15, 0.2, seed=21)
    assert np.array_equal(again.test.features, splits.test.features)


def test_class_weights_balance_the_rare_class() -> None:
    weights = class_weights(np.array([0] * 90 + [1] * 10))
    assert torch.allclose(weights, torch.tensor([100 / 180, 100 / 20]))


def test_training_learns_the_generated_flows_and_is_deterministic_on_cpu(splits: Splits) -> None:
    config = TrainConfig(epochs=8, seed=3)
    first, second = fit(splits, config, "cpu"), fit(splits, config, "cpu")
    for (name, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    auc = roc_auc(splits.test.labels, predict_proba(first.model, splits.test.features)[:, 1])
    assert auc > 0.85
    assert first.device == "cpu"
    assert not first.mixed_precision
    assert [record.epoch for record in first.history] == list(range(1, len(first.history) + 1))


def test_early_stopping_keeps_the_best_epoch(splits: Splits) -> None:
    result = fit(splits, TrainConfig(epochs=200, patience=2, learning_rate=0.02, seed=0), "cpu")
    assert result.stopped_early
    assert len(result.history) < 200
    best = min(result.history, key=lambda record: record.validation_loss)
    assert result.best_epoch == best.epoch
    assert len(result.history) - result.best_epoch <= 2


def test_each_epoch_is_reported_as_it_ends(splits: Splits) -> None:
    seen: list[int] = []
    fit(splits, TrainConfig(epochs=3, patience=10), "cpu", on_epoch=lambda record: seen.append(record.epoch))
    assert seen == [1, 2, 3]


def test_an_exploding_learning_rate_raises_training_diverged(splits: Splits) -> None:
    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        fit(splits, TrainConfig(epochs=3, learning_rate=1e12), "cpu")

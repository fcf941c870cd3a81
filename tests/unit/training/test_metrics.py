"""Metrics computed without scikit-learn must agree with the textbook definitions."""

from __future__ import annotations

import math

import numpy as np

from modelpilot.training.metrics import calibration_curve, confusion_matrix, evaluate, roc_auc


def test_auc_is_one_for_a_perfect_ranking_zero_for_a_reversed_one_and_half_for_ties() -> None:
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(labels, np.full(4, 0.5)) == 0.5


def test_auc_counts_pairs_with_ties_as_half() -> None:
    labels = np.array([0, 1, 0, 1, 1])
    scores = np.array([0.3, 0.3, 0.1, 0.7, 0.2])
    # Pairs (positive, negative): 6; wins: (0.3>0.1), (0.7>0.3), (0.7>0.1), (0.2>0.1) = 4, tie (0.3,0.3) = 0.5.
    assert math.isclose(roc_auc(labels, scores), 4.5 / 6)


def test_auc_is_undefined_with_one_class() -> None:
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.4])))


def test_confusion_matrix_rows_are_true_classes() -> None:
    matrix = confusion_matrix(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]))
    assert matrix.tolist() == [[1, 1], [1, 2]]


def test_per_class_precision_recall_f1() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    probability = np.array([0.1, 0.2, 0.7, 0.9, 0.4])
    result = evaluate(labels, probability)
    # attack: tp 1, fp 1, fn 1 → precision 0.5, recall 0.5; benign: tp 2, fp 1, fn 1 → 2/3, 2/3.
    assert result.precision == (2 / 3, 0.5)
    assert result.recall == (2 / 3, 0.5)
    assert math.isclose(result.f1[1], 0.5)
    assert result.accuracy == 0.6
    assert set(result.as_metrics()) >= {"test_auc", "test_f1_attack", "test_recall_benign", "test_precision_attack"}


def test_a_class_never_predicted_reports_zero_precision_not_nan() -> None:
    result = evaluate(np.array([0, 1, 1]), np.array([0.1, 0.2, 0.3]))
    assert result.precision[1] == 0.0
    assert result.f1[1] == 0.0


def test_calibration_bins_hold_mean_prediction_and_observed_rate() -> None:
    labels = np.array([0, 0, 1, 1])
    curve = calibration_curve(labels, np.array([0.05, 0.15, 0.85, 0.95]), bins=2)
    assert curve.counts == [2, 2]
    assert curve.observed == [0.0, 1.0]
    assert np.allclose(curve.predicted, [0.1, 0.9])

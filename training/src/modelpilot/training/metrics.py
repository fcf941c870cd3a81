"""Classification metrics on numpy arrays: ROC AUC, per-class precision/recall/F1, confusion, calibration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from modelpilot.training.data import CLASS_NAMES

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def roc_auc(labels: NDArray[np.integer], scores: NDArray[np.floating]) -> float:
    """Area under the ROC curve of `scores` for the positive class 1 (Mann-Whitney U, ties count half).

    NaN when only one class is present: the area is undefined, not 0.5.
    """
    labels = np.asarray(labels)
    positives = int((labels == 1).sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    # Average rank of each distinct score, so tied scores share their rank.
    _, inverse, counts = np.unique(np.asarray(scores), return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average_rank[inverse.reshape(-1)]
    rank_sum = ranks[labels == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def confusion_matrix(labels: NDArray[np.integer], predicted: NDArray[np.integer], n_classes: int = 2) -> IntArray:
    """Counts [true class, predicted class]."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predicted)), 1)
    return matrix


@dataclass(frozen=True)
class CalibrationCurve:
    """Mean predicted probability and observed positive rate per probability bin (bins with rows only)."""

    predicted: list[float]
    observed: list[float]
    counts: list[int]


def calibration_curve(
    labels: NDArray[np.integer], probabilities: NDArray[np.floating], bins: int = 10
) -> CalibrationCurve:
    """Reliability of the attack probability over `bins` equal-width bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    predicted, observed, counts = [], [], []
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            predicted.append(float(np.mean(probabilities[in_bin])))
            observed.append(float(np.mean(np.asarray(labels)[in_bin])))
            counts.append(int(in_bin.sum()))
    return CalibrationCurve(predicted, observed, counts)


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one model on one labelled set."""

    auc: float
    accuracy: float
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    confusion: IntArray
    calibration: CalibrationCurve

    def as_metrics(self, prefix: str = "test_") -> dict[str, float]:
        """Flat name → value map for MLflow, per-class values named after the class."""
        metrics = {f"{prefix}auc": self.auc, f"{prefix}accuracy": self.accuracy}
        for index, name in enumerate(CLASS_NAMES):
            metrics[f"{prefix}precision_{name}"] = self.precision[index]
            metrics[f"{prefix}recall_{name}"] = self.recall[index]
            metrics[f"{prefix}f1_{name}"] = self.f1[index]
        return metrics


def evaluate(
    labels: NDArray[np.integer], attack_probability: NDArray[np.floating], threshold: float = 0.5
) -> Evaluation:
    """All metrics for binary labels and the predicted probability of class 1."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = (np.asarray(attack_probability) >= threshold).astype(np.int64)
    matrix = confusion_matrix(labels, predicted)
    true_positive = np.diag(matrix).astype(np.float64)
    predicted_count = matrix.sum(axis=0).astype(np.float64)
    actual_count = matrix.sum(axis=1).astype(np.float64)
    # A class never predicted (or never present) has precision (or recall) 0, not NaN: it is a failure to report.
    precision = np.divide(true_positive, predicted_count, out=np.zeros(2), where=predicted_count > 0)
    recall = np.divide(true_positive, actual_count, out=np.zeros(2), where=actual_count > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(2), where=denominator > 0)
    return Evaluation(
        auc=roc_auc(labels, attack_probability),
        accuracy=float((predicted == labels).mean()) if labels.size else float("nan"),
        precision=tuple(float(v) for v in precision),
        recall=tuple(float(v) for v in recall),
        f1=tuple(float(v) for v in f1),
        confusion=matrix,
        calibration=calibration_curve(labels, np.asarray(attack_probability)),
    )

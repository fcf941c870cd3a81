"""Human-facing artifacts of a run: confusion matrix and calibration plots (PNG) and the model card (markdown)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display in a training pod; must precede pyplot

import matplotlib.pyplot as plt

from modelpilot.training.data import CLASS_NAMES
from modelpilot.training.metrics import Evaluation


def plot_confusion_matrix(evaluation: Evaluation, path: Path) -> Path:
    """Counts per true/predicted class, written as a PNG."""
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.imshow(evaluation.confusion, cmap="Blues")
    for (row, column), count in _cells(evaluation):
        axes.text(column, row, str(count), ha="center", va="center")
    axes.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    axes.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix (test split)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _cells(evaluation: Evaluation) -> list[tuple[tuple[int, int], int]]:
    matrix = evaluation.confusion
    return [((r, c), int(matrix[r, c])) for r in range(matrix.shape[0]) for c in range(matrix.shape[1])]


def plot_calibration(evaluation: Evaluation, path: Path) -> Path:
    """Observed attack rate against predicted attack probability per bin, written as a PNG."""
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    axes.plot(evaluation.calibration.predicted, evaluation.calibration.observed, marker="o", label="model")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("predicted attack probability")
    axes.set_ylabel("observed attack rate")
    axes.set_title("Calibration (test split)")
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


@dataclass(frozen=True)
class CardFacts:
    """What the model card states."""

    model_name: str
    data_source: str
    data_digest: str
    rows: dict[str, int]
    attack_share: float
    features: list[str]
    params: dict[str, str]
    evaluation: Evaluation
    gate_passed: bool
    gate_reason: str
    training_date: str
    code_version: str
    device: str


def model_card(facts: CardFacts) -> str:
    """The model card in markdown: data, metrics, gate, intended use and limits."""
    evaluation = facts.evaluation
    metric_rows = "\n".join(
        f"| {name} | {evaluation.precision[i]:.4f} | {evaluation.recall[i]:.4f} | {evaluation.f1[i]:.4f} |"
        for i, name in enumerate(CLASS_NAMES)
    )
    params = "\n".join(f"| {key} | {value} |" for key, value in sorted(facts.params.items()))
    return f"""# Model card: {facts.model_name}

Mixture-of-experts classifier of network flows (benign / attack), trained {facts.training_date}
on {facts.device} by modelpilot-train {facts.code_version}.

## Intended use
Scoring individual network flows for intrusion triage: the attack probability ranks flows for
review or alerting. Inputs are the {len(facts.features)} raw flow features below, in this order;
the model standardises them itself. It also reports which expert handled each row (gating weights).

## Data
- Source: `{facts.data_source}`
- Digest (data version): `{facts.data_digest}`
- Rows: train {facts.rows["train"]}, validation {facts.rows["validation"]}, test {facts.rows["test"]};
  attack share {facts.attack_share:.3f} (class weights balance the loss)
- Features: {", ".join(facts.features)}

## Metrics (test split)
AUC {evaluation.auc:.4f}, accuracy {evaluation.accuracy:.4f}.

| class | precision | recall | F1 |
| --- | --- | --- | --- |
{metric_rows}

Confusion matrix and calibration plot: `plots/confusion_matrix.png`, `plots/calibration.png`.
Reference feature statistics for drift detection: `reference/feature_stats.json`.

## Quality gate
{"Passed" if facts.gate_passed else "Failed"}: {facts.gate_reason}.

## Limits
- Trained on one traffic distribution; quality drops as traffic drifts from the reference statistics.
  Watch drift and retrain.
- Probabilities are calibrated on the test split only as far as the calibration plot shows;
  pick alert thresholds on recent labelled traffic.
- Flows of protocols or port classes rare in the training data are scored with less evidence.
- Not a replacement for signature-based detection of known exploits.

## Training parameters
| parameter | value |
| --- | --- |
{params}
"""

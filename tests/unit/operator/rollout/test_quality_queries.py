"""The PromQL of labelled predictions and shadow comparisons, and when quality bounds count."""

from __future__ import annotations

from modelpilot.operator.analysis import AnalysisTarget, analysis_queries
from modelpilot.operator.rollout.quality import (
    accuracy_query,
    labelled_count_query,
    precision_query,
    recall_query,
    shadow_agreed_query,
    shadow_comparisons_query,
)
from modelpilot.operator.rollout.queries import violations
from modelpilot.operator.spec import Analysis

CANARY = '{namespace="ml",model="fraud",track="canary",version="3"'


def counted(series: str, window: str) -> str:
    """The documented form: increase() of the series that existed when the window began, the value of those
    born in it."""
    existing = f"increase({series}[{window}]) and {series} offset {window}"
    return f"sum(({existing}) or ({series} unless {series} offset {window}))"


def analysis_spec(**fields: object) -> Analysis:
    return Analysis.model_validate({"prometheus": "http://p:9090", **fields})


def test_labels_are_counted_for_the_canary_version_in_the_namespace() -> None:
    assert labelled_count_query("ml", "fraud", "3", "1m") == (
        counted(f"modelpilot_labelled_predictions_total{CANARY}}}", "1m")
    )


def test_accuracy_is_zero_without_correct_series_and_empty_without_labels() -> None:
    correct = counted(f'modelpilot_labelled_predictions_total{CANARY},correct="true"}}', "1m")
    labelled = counted(f"modelpilot_labelled_predictions_total{CANARY}}}", "1m")
    assert accuracy_query("ml", "fraud", "3", "1m") == f"({correct} or vector(0)) / ({labelled} > 0)"


def test_precision_and_recall_divide_by_the_predicted_and_the_actual_positives() -> None:
    hits = f'modelpilot_labelled_predictions_total{CANARY},predicted="yes",actual="yes"}}'
    precision = precision_query("ml", "fraud", "3", "1m", "yes")
    recall = recall_query("ml", "fraud", "3", "1m", "yes")
    assert hits in precision
    assert hits in recall
    predicted = counted(f'modelpilot_labelled_predictions_total{CANARY},predicted="yes"}}', "1m")
    actual = counted(f'modelpilot_labelled_predictions_total{CANARY},actual="yes"}}', "1m")
    assert precision.endswith(f"/ ({predicted} > 0)")
    assert recall.endswith(f"/ ({actual} > 0)")


def test_shadow_comparisons_select_the_candidate_version_not_a_track() -> None:
    selector = '{namespace="ml",model="fraud",version="3"'
    assert shadow_comparisons_query("ml", "fraud", "3", 90) == (
        counted(f"modelpilot_shadow_comparisons_total{selector}}}", "90s")
    )
    assert shadow_agreed_query("ml", "fraud", "3", 90) == (
        counted(f'modelpilot_shadow_comparisons_total{selector},agreed="true"}}', "90s")
    )


def test_the_analysis_asks_only_for_the_quality_values_it_bounds() -> None:
    target = AnalysisTarget(model="fraud", version="3", namespace="ml", step=0, weight=10)
    assert "labelled_predictions" not in analysis_queries(analysis_spec(), target)
    queries = analysis_queries(analysis_spec(minAccuracy=0.9), target)
    assert {"labelled_predictions", "accuracy"} <= set(queries)
    assert "precision" not in queries
    with_recall = analysis_queries(analysis_spec(minRecall=0.5, positiveClass="fraud"), target)
    assert 'actual="fraud"' in with_recall["recall"]


def test_quality_bounds_break_only_with_min_labels_labels() -> None:
    spec = analysis_spec(minAccuracy=0.9, minPrecision=0.8, minLabels=50)
    few = {"labelled_predictions": 49.0, "accuracy": 0.5, "precision": 0.5}
    assert violations(spec, few) == []
    enough = {**few, "labelled_predictions": 50.0}
    assert [(v.metric, v.limit) for v in violations(spec, enough)] == [
        ("accuracy", "minAccuracy"),
        ("precision", "minPrecision"),
    ]
    assert violations(spec, enough)[0].describe() == "accuracy 0.5 below minAccuracy 0.9"
    assert violations(spec, {**enough, "accuracy": 0.9, "precision": 0.8}) == []

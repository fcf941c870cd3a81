"""What the dashboard shows, from the objects alone: list rows, the canary's weight over time, the analyses'
metrics, drift per feature and the training runs; and how an uploaded CSV becomes a prediction request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from modelpilot.kubectl.dashboard.csv_input import CsvInputError, cell_value, read_csv
from modelpilot.kubectl.dashboard.views import detail, summary

NOW = datetime(2026, 11, 30, 8, 10, tzinfo=UTC)


def analysis(minute: int, weight: int, verdict: str, **values: float) -> dict[str, Any]:
    return {"time": f"2026-11-30T08:0{minute}:00Z", "step": 0, "weight": weight, "verdict": verdict, "values": values}


def mdep(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "fraud", "namespace": "ml", "creationTimestamp": "2026-11-30T07:10:00Z"},
        "spec": {"model": {"name": "fraud-detector"}, "rollout": {"steps": [20, 50, 100], "interval": "60s"}},
        "status": status,
    }


ROLLING = mdep(
    phase="Progressing",
    stable={"version": "3"},
    canary={
        "version": "4",
        "state": "Progressing",
        "step": 1,
        "weight": 50,
        "effectiveWeight": 48,
        "startedAt": "2026-11-30T08:01:00Z",
        "stepStartedAt": "2026-11-30T08:03:30Z",
        "analyses": [
            analysis(2, 20, "Passed", request_count=200, error_rate=0.0, slo_burn=0.3),
            analysis(3, 20, "Passed", request_count=210, error_rate=0.01, p99_latency_seconds=0.2),
            analysis(5, 50, "Failed", request_count=400, error_rate=0.05),
        ],
    },
    drift={
        "state": "Drifted",
        "threshold": 0.2,
        "features": ["bytes", "legacy"],
        "scores": {"bytes": 0.5, "rate": 0.1},
    },
    training={"job": "fraud-train-2", "result": "Succeeded"},
    history=[
        {"time": "2026-11-30T07:59:00Z", "event": "TrainingStarted", "message": "Job started"},
        {"time": "2026-11-30T08:00:30Z", "event": "TrainingSucceeded", "version": "4"},
        {"time": "2026-11-30T08:01:00Z", "event": "RolloutStarted", "version": "4"},
    ],
)


def test_a_list_row_shows_the_active_canary_and_its_step() -> None:
    row = summary(ROLLING, NOW)
    assert (row["stable"], row["canary"], row["weight"], row["step"]) == ("3", "4", 48, "2/3")
    assert (row["phase"], row["drift"], row["training"], row["age"]) == ("Progressing", "Drifted", "Succeeded", "1h")
    finished = summary(mdep(phase="Ready", stable={"version": "4"}, canary={"version": "4", "state": "Succeeded"}), NOW)
    assert (finished["canary"], finished["weight"], finished["step"], finished["rollout"]) == (
        None,
        None,
        None,
        "Succeeded",
    )


def test_the_weight_over_time_starts_at_zero_and_follows_the_analyses_and_the_current_step() -> None:
    weights = detail(ROLLING, [], NOW)["rollout"]["weights"]
    assert [(w["time"][11:16], w["weight"]) for w in weights] == [
        ("08:01", 0), ("08:02", 20), ("08:03", 20), ("08:03", 50), ("08:05", 50)
    ]  # fmt: skip


def test_a_finished_rollout_ends_its_weight_line_at_promotion() -> None:
    promoted = mdep(
        canary={"version": "4", "state": "Succeeded", "startedAt": "2026-11-30T08:01:00Z",
                "analyses": [analysis(2, 50, "Passed")]},
        history=[{"time": "2026-11-30T07:00:00Z", "event": "Promoted", "version": "3"},  # an older rollout's
                 {"time": "2026-11-30T08:04:00Z", "event": "Promoted", "version": "4"}],
    )  # fmt: skip
    weights = detail(promoted, [], NOW)["rollout"]["weights"]
    assert [w["weight"] for w in weights] == [0, 50, 100]


def test_metrics_are_the_built_in_ones_first_then_custom_ones_by_name() -> None:
    assert detail(ROLLING, [], NOW)["rollout"]["metrics"] == [
        "request_count", "error_rate", "p99_latency_seconds", "slo_burn"
    ]  # fmt: skip


def test_drift_lists_every_scored_feature_worst_first_and_marks_those_over_the_threshold() -> None:
    features = detail(ROLLING, [], NOW)["drift"]["featureScores"]
    assert features == [
        {"feature": "bytes", "score": 0.5, "over": True},
        {"feature": "rate", "score": 0.1, "over": False},
        {"feature": "legacy", "score": None, "over": True},  # named over the threshold, no score kept
    ]


def test_training_runs_are_the_latest_job_and_the_training_history_newest_first() -> None:
    training = detail(ROLLING, [], NOW)["training"]
    assert training["latest"]["job"] == "fraud-train-2"
    assert [entry["event"] for entry in training["history"]] == ["TrainingSucceeded", "TrainingStarted"]


def test_no_rollout_no_drift_no_training_yet() -> None:
    view = detail(mdep(phase="Pending"), [], NOW)
    assert (view["rollout"]["state"], view["rollout"]["weights"], view["drift"]) == (None, [], None)
    assert view["training"] == {"latest": None, "history": []}


def test_a_csv_becomes_typed_records_keyed_by_the_header() -> None:
    table = read_csv("\ufeffa, b ,c,d\n1,2.5,true,x\n-3,1e3,FALSE,\n\n")
    assert table.columns == ["a", "b", "c", "d"]
    assert table.cells == [["1", "2.5", "true", "x"], ["-3", "1e3", "FALSE", ""]]
    assert table.records == [{"a": 1, "b": 2.5, "c": True, "d": "x"}, {"a": -3, "b": 1000.0, "c": False, "d": None}]
    assert cell_value("nan") == "nan"  # not a number a model can take: left as text, the server says so
    assert cell_value('<img src=x onerror="1">') == '<img src=x onerror="1">'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("a,b\n", "at least one row"),
        ("a,,c\n1,2,3\n", "column 2 of the header has no name"),
        ("a,a\n1,2\n", "'a' more than once"),
        ("a,b\n1,2\n3\n", "line 3 has 1 values, the header 2"),
    ],
)
def test_a_csv_that_is_not_a_table_is_refused_with_where(text: str, message: str) -> None:
    with pytest.raises(CsvInputError, match=message):
        read_csv(text)


def test_too_many_rows_are_refused() -> None:
    with pytest.raises(CsvInputError, match="at most 3"):
        read_csv("a\n" + "1\n" * 4, max_rows=3)

"""What `kubectl modelpilot` shows a person: the list, the one-screen status and the history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from modelpilot.kubectl.screen import age, list_rows, status_screen, time_left
from modelpilot.operator.status import CanaryStatus

NOW = datetime(2026, 11, 30, 7, 0, 0, tzinfo=UTC)


def stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def mdep(status: dict[str, Any], name: str = "fraud") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ml", "creationTimestamp": stamp(3 * 3600)},
        "spec": {
            "model": {"name": "fraud-detector", "alias": "champion", "candidateAlias": "challenger"},
            "rollout": {"steps": [10, 50, 100], "interval": "60s", "analysis": {"failureLimit": 3}},
        },
        "status": status,
    }


ROLLING = {
    "phase": "Progressing",
    "stable": {"version": "3", "readyReplicas": 2, "replicas": 2},
    "canary": {
        "version": "4",
        "state": "Progressing",
        "step": 1,
        "weight": 50,
        "effectiveWeight": 50,
        "readyReplicas": 1,
        "replicas": 1,
        "stepStartedAt": stamp(45),
        "failures": 1,
        "reason": "holding step 2/3 at 50%",
        "analyses": [
            {
                "time": stamp(70),
                "step": 0,
                "weight": 10,
                "verdict": "Passed",
                "reason": "error_rate 0 within bounds",
                "values": {"request_count": 120.0, "error_rate": 0.0, "p99_latency_seconds": 0.0421, "positive": 0.2},
            }
        ],
    },
    "drift": {"state": "Drifted", "method": "psi", "score": 0.31, "threshold": 0.2, "features": ["amount", "hour"]},
    "training": {"job": "fraud-train-1a2b", "result": "Succeeded", "trigger": "drift", "runId": "abc", "version": "4"},
    "history": [
        {"time": stamp(300), "event": "RolloutStarted", "version": "4", "message": "rolling out version 4"},
        {
            "time": stamp(100),
            "event": "RolloutResumed",
            "version": "4",
            "message": "rollout resumed at 10%",
            "requestedBy": "alice",
            "requestReason": "report is out",
        },
    ],
    "lastRequest": {
        "id": "r1",
        "action": "resume",
        "requestedBy": "alice",
        "reason": "report is out",
        "time": stamp(100),
        "outcome": "Applied",
        "message": "resume applied to the rollout of version 4",
        "version": "4",
        "recorded": True,
    },
}


def test_age_reads_like_kubectl() -> None:
    assert [age(timedelta(seconds=s)) for s in (5, 125, 7300, 200000)] == ["5s", "2m", "2h", "2d"]


def test_the_list_shows_versions_weight_step_and_phase_of_a_running_rollout_only() -> None:
    at_rest = mdep({"phase": "Ready", "stable": {"version": "3"}, "canary": {"version": "2", "state": "RolledBack"}})
    text = list_rows([mdep(ROLLING), {**at_rest, "metadata": {**at_rest["metadata"], "name": "churn"}}], NOW, False)
    header, rolling, resting = text.splitlines()
    assert header.split() == ["NAME", "MODEL", "STABLE", "CANARY", "WEIGHT", "STEP", "PHASE", "AGE"]
    assert rolling.split() == ["fraud", "fraud-detector", "3", "4", "50%", "2/3", "Progressing", "3h"]
    # A rollout at rest has no canary to show.
    assert resting.split() == ["churn", "fraud-detector", "3", "-", "-", "-", "Ready", "3h"]
    assert list_rows([mdep(ROLLING)], NOW, True).splitlines()[1].split()[0] == "ml"


def test_time_left_counts_from_the_step_or_its_last_analysis_and_adds_the_remaining_steps() -> None:
    obj = mdep(ROLLING)
    canary = CanaryStatus.model_validate(ROLLING["canary"])
    assert time_left(obj, canary, NOW) == (15.0, 75.0)
    analysed = canary.model_copy(
        update={"last_analysis": canary.analyses[0].model_copy(update={"step": 1, "weight": 50, "time": stamp(30)})}
    )
    assert time_left(obj, analysed, NOW) == (30.0, 90.0)
    held = canary.model_copy(update={"state": "Paused", "held_by": "bob"})
    assert time_left(obj, held, NOW) == (None, None)


def test_the_status_screen_has_versions_weights_step_time_left_analyses_drift_training_and_history() -> None:
    screen = status_screen(mdep(ROLLING), [], NOW)
    lines = screen.splitlines()
    assert "Stable:       version 3, 2/2 pods ready" in lines
    assert "Canary:       version 4, 1/1 pods ready" in lines
    assert "Rollout:      Progressing, step 2/3 (10%, 50%, 100%)" in lines
    assert "Weight:       50% on the canary now (the step asks 50%)" in lines
    assert "Time left:    next analysis in 15s, promotion in 1m at best" in lines
    assert "Analyses:     1/3 failed, 0/10 inconclusive in a row" in lines
    analysis_header = next(line for line in lines if "VERDICT" in line).split()
    assert analysis_header == [
        "TIME", "STEP", "WEIGHT", "VERDICT", "REQUEST_COUNT", "ERROR_RATE", "P99_LATENCY_SECONDS", "POSITIVE", "REASON"
    ]  # fmt: skip
    analysis_row = next(line for line in lines if "Passed" in line).split()
    assert analysis_row[1:8] == ["1", "10%", "Passed", "120", "0", "0.0421", "0.2"]
    assert "Drift:        Drifted (psi 0.31 / 0.2, version -), features: amount, hour" in lines
    assert "Training:     Job fraud-train-1a2b, Succeeded, trigger drift, run abc, registered version 4" in lines
    assert any(line.startswith("Last request: resume by alice") and "report is out" in line for line in lines)
    resumed = next(line for line in lines if "RolloutResumed" in line)
    assert "alice" in resumed
    assert "(why: report is out)" in resumed


def test_a_resource_the_operator_has_not_seen_yet_still_gets_a_screen() -> None:
    screen = status_screen(mdep({}), [], NOW)
    assert "Phase:        -" in screen
    assert "Canary" not in screen


def test_the_status_screen_shows_the_shadow_phase_against_its_thresholds_and_the_quality_values() -> None:
    obj = mdep(
        {
            "phase": "Progressing",
            "canary": {
                "version": "4",
                "state": "Progressing",
                "weight": 0,
                "shadow": {
                    "state": "Mirroring",
                    "startedAt": stamp(120),
                    "mirrored": True,
                    "comparisons": 312,
                    "agreed": 309,
                    "agreement": 0.990385,
                    "reason": "312 of minComparisons 500 comparisons, agreement 0.9904 so far",
                },
                "analyses": [
                    {
                        "time": stamp(600),
                        "step": 0,
                        "weight": 10,
                        "verdict": "Inconclusive",
                        "reason": "12 labelled canary predictions in 1m, fewer than minLabels 50",
                        "values": {"request_count": 80, "labelled_predictions": 12, "accuracy": 0.9167},
                    }
                ],
            },
        }
    )
    obj["spec"]["rollout"]["shadow"] = {"minComparisons": 500, "minAgreement": 0.97}
    screen = status_screen(obj, [], NOW)
    # Counted every interval (60 s) from the phase's start, 120 s ago: the next count is due now.
    assert f"Shadow:       Mirroring since {stamp(120)}, mirroring live traffic now, next count in 0s" in screen
    assert "312/500 comparisons, 309 agreed, agreement 0.9904 (min 0.97), maxDuration 30m" in screen
    assert "312 of minComparisons 500 comparisons" in screen
    header = next(line for line in screen.splitlines() if "VERDICT" in line)
    assert header.split()[4:9] == [
        "REQUEST_COUNT",
        "ERROR_RATE",
        "P99_LATENCY_SECONDS",
        "LABELLED_PREDICTIONS",
        "ACCURACY",
    ]
    assert "0.9167" in screen


def test_no_shadow_line_before_the_phase() -> None:
    assert "Shadow:" not in status_screen(mdep(ROLLING), [], NOW)

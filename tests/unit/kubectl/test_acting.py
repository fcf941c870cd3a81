"""The plugin's side of a request: the annotations it writes, and its refusal before writing when the action
cannot apply."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from modelpilot.kubectl.acting import check_applies, new_request_id, request_annotations
from modelpilot.kubectl.errors import NotApplicableError
from modelpilot.operator.rollout.requests import read_request


def mdep(spec: dict[str, Any], canary: dict[str, Any] | None = None) -> dict[str, Any]:
    status = {"canary": canary} if canary else {}
    return {"metadata": {"name": "fraud"}, "spec": spec, "status": status}


WITH_ROLLOUT = {"rollout": {"steps": [10, 100]}}


def test_a_request_written_by_the_plugin_reads_back_as_the_same_request() -> None:
    request_id = new_request_id(datetime(2026, 11, 30, 7, 1, 2, 345678, tzinfo=UTC))
    assert re.fullmatch(r"20261130T070102345Z-[0-9a-f]{6}", request_id)
    annotations = request_annotations("pause", request_id, "alice", "why not")
    written = {key: value for key, value in annotations.items() if value is not None}
    request = read_request(written)
    assert request is not None
    assert (request.id, request.action, request.requested_by, request.reason) == (
        request_id,
        "pause",
        "alice",
        "why not",
    )
    assert "modelpilot.io/retrain" not in annotations
    # retrain also sets the training's own annotation, to the request id.
    assert request_annotations("retrain", request_id, "alice", "")["modelpilot.io/retrain"] == request_id


def test_ids_do_not_repeat() -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC)
    assert len({new_request_id(now) for _ in range(50)}) == 50


@pytest.mark.parametrize(
    ("action", "state"),
    [
        ("promote", "Progressing"),
        ("promote", "Paused"),
        ("abort", "Progressing"),
        ("abort", "Paused"),
        ("pause", "Progressing"),
        ("resume", "Paused"),
    ],
)
def test_an_action_that_applies_passes_the_check(action: str, state: str) -> None:
    check_applies(action, mdep(WITH_ROLLOUT, {"version": "2", "state": state}))


@pytest.mark.parametrize(
    ("action", "obj", "says"),
    [
        ("promote", mdep(WITH_ROLLOUT, {"version": "2", "state": "Succeeded"}), "the rollout is Succeeded"),
        ("abort", mdep(WITH_ROLLOUT), "the rollout is Idle"),
        ("pause", mdep({}), "its spec has no rollout section"),
        ("resume", mdep(WITH_ROLLOUT, {"version": "2", "state": "Progressing"}), "resume applies while it is Paused"),
        ("retrain", mdep(WITH_ROLLOUT), "its spec has no training section"),
    ],
)
def test_an_action_that_does_not_apply_is_refused_before_anything_is_written(
    action: str, obj: dict[str, Any], says: str
) -> None:
    with pytest.raises(NotApplicableError, match=says):
        check_applies(action, obj)


def test_resume_applies_to_a_rollout_aborted_by_request_only() -> None:
    check_applies("resume", mdep(WITH_ROLLOUT, {"version": "2", "state": "Aborted", "heldBy": "bob"}))
    with pytest.raises(NotApplicableError, match="remove it to roll out again"):
        check_applies("resume", mdep(WITH_ROLLOUT, {"version": "2", "state": "Aborted"}))

"""The status write is a merge patch: what went away from the status must be cleared in the patch, at any
depth, or the API server keeps the old value."""

from __future__ import annotations

from typing import Any

from modelpilot.operator.handlers.journal import Journal
from modelpilot.operator.status import CanaryStatus


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch, as the API server applies it."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


async def test_a_field_cleared_inside_a_section_is_cleared_by_the_patch() -> None:
    stored = {
        "phase": "Paused",
        "canary": {"version": "2", "state": "Paused", "heldBy": "alice", "replaces": "1", "weight": 20},
        "drift": {"state": "Drifted"},
    }
    patches: list[dict[str, Any]] = []

    async def write(body: dict[str, Any]) -> None:
        patches.append(body)

    journal = Journal(stored, 1, lambda *_: None, write)
    journal.status.canary = CanaryStatus(version="2", state="Progressing", weight=20)
    journal.status.drift = None
    await journal.write()

    assert len(patches) == 1
    written = merge(stored, patches[0])
    assert "heldBy" not in written["canary"]
    assert "replaces" not in written["canary"]
    assert written["canary"]["state"] == "Progressing"
    assert "drift" not in written

"""Reading a ModelDeployment's rollout status and the lab's evidence, for the assertions of the tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tests.support.lab import SplitObservation


def canary(obj: dict[str, Any]) -> dict[str, Any]:
    """status.canary, or an empty dict."""
    return dict((obj.get("status") or {}).get("canary") or {})


def state_is(*states: str) -> Callable[[dict[str, Any]], bool]:
    """A check: status.canary.state is one of `states`."""
    return lambda obj: canary(obj).get("state") in states


def stable_is(version: str) -> Callable[[dict[str, Any]], bool]:
    """A check: Ready=True and status.stable.version is `version`."""

    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
        return ready and (status.get("stable") or {}).get("version") == version

    return check


def history(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """status.history entries, oldest first."""
    return list((obj.get("status") or {}).get("history") or [])


def history_events(obj: dict[str, Any]) -> list[str]:
    """The event reasons of status.history, oldest first."""
    return [entry["event"] for entry in history(obj)]


def step_weights_started(obj: dict[str, Any]) -> list[str]:
    """The messages of the StepStarted history entries, oldest first."""
    return [entry["message"] for entry in history(obj) if entry["event"] == "StepStarted"]


def canary_weights(observations: Sequence[SplitObservation]) -> list[int]:
    """The canary weights the splitter applied, consecutive repeats collapsed."""
    weights: list[int] = []
    for observation in observations:
        if not weights or weights[-1] != observation.canary_weight:
            weights.append(observation.canary_weight)
    return weights


def assert_never_routed_to_unready_canary(observations: Sequence[SplitObservation]) -> None:
    """No split sent traffic to a canary without a ready server."""
    unready = [observation for observation in observations if observation.canary_unready]
    assert not unready, f"traffic routed to an unready canary: {unready}"


def assert_ramp(observations: Sequence[SplitObservation], steps: Sequence[int], *, until: int | None = None) -> None:
    """The canary weight rose through `steps` (up to `until`) in order, never skipping or going back
    before it returned to 0 at the end."""
    weights = [weight for weight in canary_weights(observations) if weight > 0]
    expected = [step for step in steps if until is None or step <= until]
    assert weights == expected, f"canary weights {canary_weights(observations)}, expected the ramp {expected}"
    assert_never_routed_to_unready_canary(observations)

"""Serving pods that cannot start: Degraded says why, and the Event repeats only when what it means changes,
not each time the kubelet moves a crash-looping container between waiting, running and exited."""

from __future__ import annotations

from typing import Any

from modelpilot.operator.handlers.journal import Journal
from modelpilot.operator.observe import TrackObservation, pod_failure


def _crash_loop(restarts: int) -> list[dict[str, Any]]:
    """The states one crash-looping container passes through, in order, for its `restarts`-th restart."""
    last = {"terminated": {"exitCode": 1, "reason": "Error"}}
    return [
        {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": last, "restartCount": restarts},
        {"state": {"running": {"startedAt": "t"}}, "ready": False, "lastState": last, "restartCount": restarts + 1},
        {"state": last, "lastState": last, "restartCount": restarts + 1},
    ]


def _pod(name: str, container: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"containerStatuses": [{"name": "inference", **container}]}}


def _observe(*pods: dict[str, Any]) -> TrackObservation:
    failures = tuple(f for f in (pod_failure(p) for p in pods) if f is not None)
    return TrackObservation(True, len(pods), 0, 0, False, failures)


def _reconcile(
    status: dict[str, Any], observation: TrackObservation, events: list[tuple[str, str, str]]
) -> dict[str, Any]:
    async def write(_: dict[str, Any]) -> None:
        return None

    journal = Journal(status, 1, lambda *event: events.append(event), write)
    journal.set_serving_conditions("3", observation)
    return journal.status.dump()


def test_two_pods_crash_looping_out_of_step_post_one_event() -> None:
    events: list[tuple[str, str, str]] = []
    status: dict[str, Any] = {}
    for restarts in range(3):
        for a, b in zip(_crash_loop(restarts), reversed(_crash_loop(restarts)), strict=True):
            status = _reconcile(status, _observe(_pod("m-stable-a", a), _pod("m-stable-b", b)), events)
            degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
            assert (degraded["status"], degraded["reason"]) == ("True", "PodsFailing")
    assert [reason for _, reason, _ in events] == ["PodsFailing"]


def test_a_new_cause_posts_a_new_event_and_recovery_clears_degraded() -> None:
    events: list[tuple[str, str, str]] = []
    crashing = _pod("m-stable-a", _crash_loop(0)[0])
    status = _reconcile({}, _observe(crashing), events)
    pulling = _pod("m-stable-b", {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}})
    status = _reconcile(status, _observe(crashing, pulling), events)
    assert [message for _, _, message in events][1].endswith("ImagePullBackOff: not found")
    ready = {"state": {"running": {"startedAt": "t"}}, "ready": True, "restartCount": 4}
    status = _reconcile(status, _observe(_pod("m-stable-a", ready)), events)
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"], len(events)) == ("False", "AsExpected", 2)

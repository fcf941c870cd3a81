"""Why serving pods cannot run, as the kubelet reports it in their container statuses."""

from __future__ import annotations

from typing import Any

import pytest

from modelpilot.operator.observe import pod_failure


def _pod(*statuses: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {
        "metadata": {"name": "m-stable-abc"},
        "status": {"phase": "Pending", "containerStatuses": list(statuses), "initContainerStatuses": list(init)},
    }


def _waiting(reason: str, message: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": "inference", "state": {"waiting": {"reason": reason, "message": message}}, **extra}


@pytest.mark.parametrize(
    "reason", ["ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull", "CreateContainerError", "RunContainerError"]
)
def test_an_image_or_entrypoint_that_cannot_start_is_a_failure_with_the_kubelet_message(reason: str) -> None:
    failure = pod_failure(_pod(_waiting(reason, 'exec: "/nope": no such file')))
    assert failure == f'pod m-stable-abc: container inference: {reason}: exec: "/nope": no such file'


def test_a_crash_loop_names_the_last_exit_code() -> None:
    crashed = _waiting("CrashLoopBackOff", lastState={"terminated": {"exitCode": 3, "reason": "Error"}})
    expected = "pod m-stable-abc: container inference: CrashLoopBackOff: last exit code 3 (Error)"
    assert pod_failure(_pod(crashed)) == expected


@pytest.mark.parametrize("reason", ["ContainerCreating", "PodInitializing"])
def test_a_container_on_its_way_up_is_not_a_failure(reason: str) -> None:
    assert pod_failure(_pod(_waiting(reason))) is None


def test_a_running_pod_is_not_a_failure() -> None:
    assert pod_failure(_pod({"name": "inference", "state": {"running": {"startedAt": "now"}}})) is None


def test_an_init_container_that_cannot_start_is_a_failure() -> None:
    initializing = {"name": "inference", "state": {"waiting": {"reason": "PodInitializing"}}}
    pod = _pod(initializing, init=(_waiting("ErrImagePull"),))
    assert pod_failure(pod) == "pod m-stable-abc: container inference: ErrImagePull"


def test_long_kubelet_messages_are_bounded() -> None:
    failure = pod_failure(_pod(_waiting("RunContainerError", "x" * 5000)))
    assert failure is not None
    assert len(failure) < 400


def test_a_crash_loop_between_restarts_is_still_a_crash() -> None:
    exited = {"name": "inference", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}, "restartCount": 2}
    running = {
        "name": "inference",
        "state": {"running": {"startedAt": "now"}},
        "ready": False,
        "restartCount": 3,
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
    }
    assert (
        pod_failure(_pod(exited)) == "pod m-stable-abc: container inference: Crashed: exit code 1 (Error), 2 restart(s)"
    )
    assert pod_failure(_pod(running)) == (
        "pod m-stable-abc: container inference: Crashed: running again after exit code 1 (Error), 3 restart(s)"
    )


def test_a_container_that_recovered_or_exited_cleanly_is_not_a_failure() -> None:
    recovered = {
        "name": "inference",
        "state": {"running": {"startedAt": "now"}},
        "ready": True,
        "restartCount": 1,
        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
    }
    completed = {"name": "inference", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    assert pod_failure(_pod(recovered)) is None
    assert pod_failure(_pod(completed)) is None

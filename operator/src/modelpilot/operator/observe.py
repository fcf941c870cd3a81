"""What the cluster shows about a serving track: the facts `Ready` is computed from. Pure: objects in,
an observation out; the handlers read the objects (once per reconcile) and pass them here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelpilot.operator.builders.common import VERSION_LABEL, label_value

# Container states that do not resolve by waiting, by what they mean: the image cannot be had, the
# container cannot be made or started, or its process keeps crashing. The kubelet alternates between the
# reasons of one meaning (ErrImagePull, ImagePullBackOff, …) as it retries. Transient states
# (ContainerCreating, PodInitializing) are not failures.
FAILING_WAITING_REASONS: dict[str, str] = {
    "ErrImageNeverPull": "ImageUnavailable",
    "ErrImagePull": "ImageUnavailable",
    "ImageInspectError": "ImageUnavailable",
    "ImagePullBackOff": "ImageUnavailable",
    "InvalidImageName": "ImageUnavailable",
    "CreateContainerConfigError": "ContainerConfigInvalid",
    "CreateContainerError": "ContainerCannotStart",
    "RunContainerError": "ContainerCannotStart",
    "StartError": "ContainerCannotStart",
    "CrashLoopBackOff": "ContainerCrashing",
}
# A crash-looping container is Waiting only between restarts; while it runs again (not ready) or has just
# exited it is still the same crash loop, reported under this reason so that its meaning does not flap.
CRASHED = "Crashed"
FAILURE_CAUSES: dict[str, str] = {**FAILING_WAITING_REASONS, CRASHED: "ContainerCrashing"}


@dataclass(frozen=True)
class TrackObservation:
    """Pods of one track, counted by readiness and the model version they run."""

    exists: bool
    desired: int
    ready_with_version: int
    ready_with_other_version: int
    rolled_out: bool
    failures: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        """All desired pods are Ready with the expected version, and none of another version serve."""
        return (
            self.exists
            and self.rolled_out
            and self.ready_with_version >= max(self.desired, 1)
            and self.ready_with_other_version == 0
        )

    @property
    def serves_only_version(self) -> bool:
        """Pods serve the expected version and none serve another, while more may still be starting (a
        canary scaled up for its next step keeps its traffic meanwhile)."""
        return self.exists and self.ready_with_version >= 1 and self.ready_with_other_version == 0

    @property
    def serving(self) -> int:
        """Ready pods of the track, whatever version they run (each takes traffic from its Service)."""
        return self.ready_with_version + self.ready_with_other_version


ABSENT = TrackObservation(False, 0, 0, 0, False)


def deployed_version(deployment: dict[str, Any] | None) -> str | None:
    """The model version label of a Deployment's pod template; None without a Deployment."""
    if deployment is None:
        return None
    template = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    version = (template.get("labels") or {}).get(VERSION_LABEL)
    return str(version) if version is not None else None


def _desired(deployment: dict[str, Any]) -> int:
    return int((deployment.get("spec") or {}).get("replicas", 1))


def _rolled_out(deployment: dict[str, Any]) -> bool:
    status = deployment.get("status") or {}
    return bool(
        status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
        and status.get("updatedReplicas", 0) >= _desired(deployment)
    )


def observe_settled(deployment: dict[str, Any] | None, version: str) -> TrackObservation | None:
    """The observation from the Deployment alone when its status settles it, else None (count the pods).

    Its status settles it when the controller has seen the current spec and every pod it counts is
    of the current template (which runs `version`) and Ready: then the pods need not be listed.
    """
    if deployment is None:
        return ABSENT
    if deployed_version(deployment) == label_value(version) and is_settled(deployment):
        desired = _desired(deployment)
        return TrackObservation(True, desired, desired, 0, True)
    return None


def is_settled(deployment: Mapping[str, Any]) -> bool:
    """Whether the Deployment's controller has seen its current spec and every pod it counts is of the current
    template and Ready."""
    status = deployment.get("status") or {}
    desired = int((deployment.get("spec") or {}).get("replicas", 1))
    counted = {status.get(key, 0) for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")}
    return (
        status.get("observedGeneration", 0) >= (deployment.get("metadata") or {}).get("generation", 0)
        and counted == {desired}
        and not status.get("unavailableReplicas")
        and not status.get("terminatingReplicas")
    )


def _pod_is_ready(pod: dict[str, Any]) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def pod_failure(pod: dict[str, Any]) -> str | None:
    """Why a pod's containers cannot run, e.g. `pod p: container inference: CrashLoopBackOff: …`; None if they can."""
    status = pod.get("status") or {}
    name = pod.get("metadata", {}).get("name", "?")
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        failure = _container_failure(container)
        if failure is not None:
            reason, detail = failure
            text = f"pod {name}: container {container.get('name', '?')}: {reason}"
            # Kubelet messages can be long (a whole runc error): enough to act on, bounded for status.
            return f"{text}: {detail[:300]}" if detail else text
    return None


def _container_failure(container: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, detail) when the container cannot run, from its current and last state."""
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    last_exit = _failed_exit(container.get("lastState") or {})
    if reason in FAILING_WAITING_REASONS:
        detail = waiting.get("message") or ""
        if not detail and reason == "CrashLoopBackOff":
            terminated = (container.get("lastState") or {}).get("terminated") or {}
            detail = f"last exit code {terminated.get('exitCode')} ({terminated.get('reason', 'unknown')})"
        return reason, detail
    exited = _failed_exit(state)
    if exited is not None:
        return CRASHED, f"{exited}, {container.get('restartCount', 0)} restart(s)"
    if state.get("running") is not None and not container.get("ready") and last_exit is not None:
        return CRASHED, f"running again after {last_exit}, {container.get('restartCount', 0)} restart(s)"
    return None


def _failed_exit(state: dict[str, Any]) -> str | None:
    """`exit code N (Reason)` when the state is a termination with a non-zero exit code."""
    terminated = state.get("terminated")
    if not terminated or terminated.get("exitCode") in (0, None):
        return None
    return f"exit code {terminated['exitCode']} ({terminated.get('reason', 'unknown')})"


def observe_pods(deployment: dict[str, Any] | None, pods: list[dict[str, Any]], version: str) -> TrackObservation:
    """Count the track's Ready pods that run `version` and those that run another."""
    if deployment is None:
        return ABSENT
    wanted = label_value(version)
    with_version = other = 0
    failures: list[str] = []
    for pod in pods:
        failure = pod_failure(pod)
        if failure is not None:
            failures.append(failure)
        if not _pod_is_ready(pod):
            continue
        if pod["metadata"].get("labels", {}).get(VERSION_LABEL) == wanted:
            with_version += 1
        else:
            other += 1
    return TrackObservation(
        exists=True,
        desired=_desired(deployment),
        ready_with_version=with_version,
        ready_with_other_version=other,
        rolled_out=_rolled_out(deployment),
        failures=tuple(sorted(failures)),
    )

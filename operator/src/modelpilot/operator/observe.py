"""What the cluster shows about a serving track: the facts `Ready` is computed from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpilot.operator.kubeapi import KubeApi

DEPLOYMENT_LABEL = "modelpilot.io/deployment"
TRACK_LABEL = "modelpilot.io/track"
VERSION_LABEL = "modelpilot.io/version"

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
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason")
        if reason in FAILING_WAITING_REASONS:
            detail = waiting.get("message") or ""
            if not detail and reason == "CrashLoopBackOff":
                terminated = (container.get("lastState") or {}).get("terminated") or {}
                detail = f"last exit code {terminated.get('exitCode')} ({terminated.get('reason', 'unknown')})"
            name = pod.get("metadata", {}).get("name", "?")
            text = f"pod {name}: container {container.get('name', '?')}: {reason}"
            # Kubelet messages can be long (a whole runc error): enough to act on, bounded for status.
            return f"{text}: {detail[:300]}" if detail else text
    return None


def _rolled_out(deployment: dict[str, Any]) -> bool:
    status = deployment.get("status") or {}
    desired = (deployment.get("spec") or {}).get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
        and status.get("updatedReplicas", 0) >= desired
    )


async def observe_track(
    kube: KubeApi, namespace: str, deployment_name: str, owner: str, track: str, version: str
) -> TrackObservation:
    """Read the track's Deployment and pods and count what serves `version`."""
    deployment = await kube.get("apps/v1", "Deployment", namespace, deployment_name)
    if deployment is None:
        return TrackObservation(False, 0, 0, 0, False)
    pods = await kube.list_objects("v1", "Pod", namespace, f"{DEPLOYMENT_LABEL}={owner},{TRACK_LABEL}={track}")
    with_version = other = 0
    failures: list[str] = []
    for pod in pods:
        failure = pod_failure(pod)
        if failure is not None:
            failures.append(failure)
        if not _pod_is_ready(pod):
            continue
        if pod["metadata"].get("labels", {}).get(VERSION_LABEL) == version:
            with_version += 1
        else:
            other += 1
    return TrackObservation(
        exists=True,
        desired=int((deployment.get("spec") or {}).get("replicas", 1)),
        ready_with_version=with_version,
        ready_with_other_version=other,
        rolled_out=_rolled_out(deployment),
        failures=tuple(sorted(failures)),
    )

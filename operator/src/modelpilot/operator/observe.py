"""What the cluster shows about a serving track: the facts `Ready` is computed from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpilot.operator.kubeapi import KubeApi

DEPLOYMENT_LABEL = "modelpilot.io/deployment"
TRACK_LABEL = "modelpilot.io/track"
VERSION_LABEL = "modelpilot.io/version"


@dataclass(frozen=True)
class TrackObservation:
    """Pods of one track, counted by readiness and the model version they run."""

    exists: bool
    desired: int
    ready_with_version: int
    ready_with_other_version: int
    rolled_out: bool

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
    for pod in pods:
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
    )

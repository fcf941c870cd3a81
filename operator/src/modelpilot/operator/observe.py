"""What the cluster shows about a serving track: the facts `Ready` is computed from. Pure: objects in,
an observation out; the handlers read the objects (once per reconcile) and pass them here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpilot.operator.builders.common import VERSION_LABEL, label_value


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
    status = deployment.get("status") or {}
    desired = _desired(deployment)
    counted = {status.get(key, 0) for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")}
    if (
        deployed_version(deployment) == label_value(version)
        and status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
        and counted == {desired}
        and not status.get("unavailableReplicas")
        and not status.get("terminatingReplicas")
    ):
        return TrackObservation(True, desired, desired, 0, True)
    return None


def _pod_is_ready(pod: dict[str, Any]) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def observe_pods(deployment: dict[str, Any] | None, pods: list[dict[str, Any]], version: str) -> TrackObservation:
    """Count the track's Ready pods that run `version` and those that run another."""
    if deployment is None:
        return ABSENT
    wanted = label_value(version)
    with_version = other = 0
    for pod in pods:
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
    )

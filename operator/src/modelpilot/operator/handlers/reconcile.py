"""One reconciliation of a ModelDeployment: registry → serving objects → honest status.

Every run starts from a fresh read of the resource, so it never acts on a stale status, and
ends with one status write (only when something changed). Nothing that already serves is deleted
or changed when the registry cannot be read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelpilot.operator.builders.common import Owner, track_name
from modelpilot.operator.builders.routing import RouterPlan, build_router
from modelpilot.operator.builders.serving import TrackPlan, build_track, track_object_keys
from modelpilot.operator.kubeapi import KubeApi
from modelpilot.operator.observe import TrackObservation, observe_track
from modelpilot.operator.registry import Credentials, RegistryError, ResolvedVersions
from modelpilot.operator.runtime import Runtime
from modelpilot.operator.spec import GROUP, VERSION, InvalidSpecError, ModelDeploymentSpec, parse_spec
from modelpilot.operator.status import (
    HistoryEntry,
    ModelDeploymentStatus,
    TrackStatus,
    append_history,
    set_condition,
)

logger = logging.getLogger(__name__)

# (type, reason, message) → posts a Kubernetes Event on the resource.
EmitEvent = Callable[[str, str, str], None]

NOT_READY_REQUEUE_SECONDS = 2.0
INVALID_SPEC_REQUEUE_SECONDS = 600.0


@dataclass
class Outcome:
    """What a reconciliation decided about its next run."""

    requeue_after: float
    result: str = "ok"


async def reconcile(runtime: Runtime, namespace: str, name: str, emit: EmitEvent) -> Outcome | None:
    """Reconcile one ModelDeployment; None when it is gone or being deleted."""
    kube = runtime.kube
    obj = await kube.get(f"{GROUP}/{VERSION}", "ModelDeployment", namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    previous = ModelDeploymentStatus.model_validate(obj.get("status") or {})
    status = previous.model_copy(deep=True)
    generation = int(obj["metadata"].get("generation", 0))
    status.observed_generation = generation
    owner = Owner(name=name, namespace=namespace, uid=obj["metadata"]["uid"])
    failures = runtime.failures.get((namespace, name), 0)

    def notify(kind: str, reason: str, message: str, version: str | None = None) -> None:
        status.history = append_history(status.history, HistoryEntry(event=reason, version=version, message=message))
        emit(kind, reason, message)

    try:
        spec = parse_spec(obj.get("spec") or {})
    except InvalidSpecError as error:
        _mark_invalid(status, generation, str(error), notify)
        await _write_status(kube, namespace, name, previous, status)
        return Outcome(INVALID_SPEC_REQUEUE_SECONDS, "invalid")
    status.model_name = spec.model.name

    resolved_or_error = await _resolve(runtime, namespace, spec)
    if isinstance(resolved_or_error, RegistryError):
        error = resolved_or_error
        runtime.failures[(namespace, name)] = failures + 1
        was = _condition_status(previous, "RegistryReachable")
        status.conditions = set_condition(
            status.conditions, "RegistryReachable", False, error.reason, str(error), generation
        )
        if was != "False":
            notify("Warning", error.reason, f"registry {spec.registry.tracking_uri}: {error}")
        await _write_status(kube, namespace, name, previous, status)
        delay = min(runtime.settings.retry_backoff_seconds * 2**failures, runtime.settings.retry_backoff_max_seconds)
        return Outcome(delay, "retry")
    resolved = resolved_or_error
    runtime.failures.pop((namespace, name), None)
    status.conditions = set_condition(
        status.conditions, "RegistryReachable", True, "RegistryRead", f"read {spec.model.name}", generation
    )

    if resolved.stable is None:
        pointer = spec.model.alias or spec.model.stage
        status.phase = "Pending"
        message = f"model {spec.model.name} has no version at {pointer}"
        status.conditions = set_condition(status.conditions, "Ready", False, "NoStableVersion", message, generation)
        await _write_status(kube, namespace, name, previous, status)
        return Outcome(runtime.poll_seconds(spec))

    stable_version = resolved.stable
    await _serve_stable_only(kube, owner, spec, stable_version)
    observation = await observe_track(kube, namespace, track_name(name, "stable"), name, "stable", stable_version)
    _record_stable(status, generation, stable_version, observation, notify)
    await _write_status(kube, namespace, name, previous, status)
    requeue = runtime.poll_seconds(spec) if observation.ready else NOT_READY_REQUEUE_SECONDS
    return Outcome(min(requeue, runtime.poll_seconds(spec)))


async def _resolve(runtime: Runtime, namespace: str, spec: ModelDeploymentSpec) -> ResolvedVersions | RegistryError:
    credentials = Credentials()
    secret_name = spec.registry.credentials_secret
    if secret_name:
        data = await runtime.kube.read_secret(namespace, secret_name)
        if data is None:
            error = RegistryError(
                f"Secret {namespace}/{secret_name} named in spec.registry.credentialsSecret is missing"
            )
            error.reason = "CredentialsSecretMissing"
            return error
        credentials = Credentials.from_secret_data(data)
    try:
        return await runtime.registry(spec.registry.tracking_uri, credentials).resolve(spec.model)
    except RegistryError as error:
        return error


def _stable_plan(spec: ModelDeploymentSpec, version: str) -> TrackPlan:
    autoscaling = spec.serving.autoscaling
    return TrackPlan(
        track="stable",
        version=version,
        model_uri=f"models:/{spec.model.name}/{version}",
        replicas=spec.serving.replicas,
        min_replicas=autoscaling.min_replicas if autoscaling else None,
    )


async def apply_all(kube: KubeApi, objects: list[dict[str, Any]]) -> None:
    """Server-side apply each object, in order (ServiceAccount before the Deployment that uses it)."""
    for obj in objects:
        await kube.apply(obj)


async def delete_all(kube: KubeApi, namespace: str, keys: list[tuple[str, str, str]]) -> None:
    """Delete objects by (apiVersion, kind, name), tolerating those already gone."""
    for api_version, kind, name in keys:
        await kube.delete(api_version, kind, namespace, name)


async def _serve_stable_only(kube: KubeApi, owner: Owner, spec: ModelDeploymentSpec, version: str) -> None:
    await apply_all(kube, build_track(owner, spec, _stable_plan(spec, version)))
    router = build_router(owner, spec, RouterPlan(canary_weight=0, canary_present=False))
    await apply_all(kube, router.apply)
    await delete_all(kube, owner.namespace, router.delete)
    await delete_all(kube, owner.namespace, track_object_keys(owner.name, "canary"))


def _record_stable(
    status: ModelDeploymentStatus,
    generation: int,
    version: str,
    observation: TrackObservation,
    notify: Callable[..., None],
) -> None:
    before = status.stable.version if status.stable else None
    status.stable = TrackStatus(
        version=version, ready_replicas=observation.ready_with_version, replicas=observation.desired
    )
    if before != version:
        notify(
            "Normal",
            "StableVersionChanged",
            f"stable track rolls to version {version} (was {before})",
            version,
        )
    if observation.ready:
        status.phase = "Ready"
        message = f"version {version} serves on {observation.ready_with_version} ready pod(s)"
        status.conditions = set_condition(status.conditions, "Ready", True, "Serving", message, generation)
        status.conditions = set_condition(status.conditions, "Progressing", False, "Stable", "", generation)
    else:
        status.phase = "Progressing"
        message = (
            f"{observation.ready_with_version}/{max(observation.desired, 1)} pod(s) ready with version {version}"
            + (
                f", {observation.ready_with_other_version} with another version"
                if observation.ready_with_other_version
                else ""
            )
        )
        status.conditions = set_condition(status.conditions, "Ready", False, "PodsNotReady", message, generation)
        status.conditions = set_condition(status.conditions, "Progressing", True, "RollingOut", message, generation)
    status.conditions = set_condition(status.conditions, "Degraded", False, "AsExpected", "", generation)


def _mark_invalid(status: ModelDeploymentStatus, generation: int, message: str, notify: Callable[..., None]) -> None:
    was = next((c for c in status.conditions if c.type == "Ready"), None)
    status.phase = "Invalid"
    status.conditions = set_condition(status.conditions, "Ready", False, "InvalidSpec", message, generation)
    status.conditions = set_condition(status.conditions, "Degraded", True, "InvalidSpec", message, generation)
    if was is None or was.reason != "InvalidSpec" or was.message != message:
        notify("Warning", "InvalidSpec", message)


def _condition_status(status: ModelDeploymentStatus, type_: str) -> str | None:
    return next((c.status for c in status.conditions if c.type == type_), None)


def _comparable(status: ModelDeploymentStatus) -> dict[str, Any]:
    dumped = status.dump()
    for condition in dumped.get("conditions", []):
        condition.pop("lastTransitionTime", None)
    return dumped


async def _write_status(
    kube: KubeApi, namespace: str, name: str, previous: ModelDeploymentStatus, status: ModelDeploymentStatus
) -> None:
    if _comparable(previous) == _comparable(status):
        return
    body = status.dump()
    # A merge patch keeps keys it does not mention: clear the sections that went away explicitly.
    for key in previous.dump().keys() - body.keys():
        body[key] = None
    await kube.patch_status(namespace, name, body)

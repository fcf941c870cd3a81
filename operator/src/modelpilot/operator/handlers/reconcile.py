"""One reconciliation of a ModelDeployment: registry → training → serving objects → honest status.

Every run starts from a fresh read of the resource, so it never acts on a stale status, and ends
with one status write (only when something changed). Nothing that already serves is deleted or
changed when the registry cannot be read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelpilot.operator.builders.common import Owner, track_name
from modelpilot.operator.builders.routing import RouterPlan, build_router
from modelpilot.operator.builders.serving import (
    TrackPlan,
    build_track,
    replica_split,
    track_object_keys,
    unbuilt_track_keys,
)
from modelpilot.operator.handlers.rollout import drive_rollout, promote
from modelpilot.operator.handlers.training import reconcile_training
from modelpilot.operator.kubeapi import KubeApi
from modelpilot.operator.observe import FAILING_WAITING_REASONS, TrackObservation, observe_track
from modelpilot.operator.registry import (
    Credentials,
    ModelNotFoundError,
    Registry,
    RegistryError,
    ResolvedVersions,
)
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


class CredentialsSecretMissingError(RegistryError):
    """The Secret named in spec.registry.credentialsSecret does not exist."""

    reason = "CredentialsSecretMissing"


async def reconcile(runtime: Runtime, namespace: str, name: str, emit: EmitEvent) -> Outcome | None:
    """Reconcile one ModelDeployment; None when it is gone or being deleted."""
    obj = await runtime.kube.get(f"{GROUP}/{VERSION}", "ModelDeployment", namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    return await Reconciliation(runtime, obj, emit).run()


class Reconciliation:
    """The state of one reconciliation run; each step is a method."""

    def __init__(self, runtime: Runtime, obj: dict[str, Any], emit: EmitEvent) -> None:
        self.runtime = runtime
        self.kube: KubeApi = runtime.kube
        self.obj = obj
        self.emit = emit
        meta = obj["metadata"]
        self.owner = Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
        self.generation = int(meta.get("generation", 0))
        self.annotations: dict[str, str] = meta.get("annotations") or {}
        self.previous = ModelDeploymentStatus.model_validate(obj.get("status") or {})
        self.status = self.previous.model_copy(deep=True)
        self.status.observed_generation = self.generation

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name) of the resource."""
        return (self.owner.namespace, self.owner.name)

    def notify(self, kind: str, reason: str, message: str, version: str | None = None) -> None:
        """Record a transition: an Event and a status history entry."""
        self.status.history = append_history(
            self.status.history, HistoryEntry(event=reason, version=version, message=message)
        )
        self.emit(kind, reason, message)

    def condition(self, type_: Any, value: bool | None, reason: str, message: str = "") -> None:
        """Set a condition for this generation."""
        self.status.conditions = set_condition(self.status.conditions, type_, value, reason, message, self.generation)

    async def run(self) -> Outcome:
        """All steps, in order; each may end the run early."""
        try:
            spec = parse_spec(self.obj.get("spec") or {})
        except InvalidSpecError as error:
            self._mark_invalid(str(error))
            await self.write_status()
            return Outcome(INVALID_SPEC_REQUEUE_SECONDS, "invalid")
        self.status.model_name = spec.model.name
        self.runtime.serves(*self.key, spec.model.name)

        resolved = await self._read_registry(spec)
        if isinstance(resolved, RegistryError):
            return await self._registry_failed(spec, resolved)
        await reconcile_training(
            self.kube,
            self.owner,
            spec,
            self.status,
            self.annotations,
            has_any_version=resolved.stable is not None or resolved.candidate is not None,
            notify=self.notify,
        )
        if resolved.stable is None and resolved.candidate is not None:
            resolved = await self._promote_first_version(spec, resolved.candidate)
        if resolved.stable is None:
            return await self._nothing_to_serve(spec)

        poll = self.runtime.poll_seconds(spec)
        if spec.rollout is not None and (resolved.candidate not in (None, resolved.stable) or self._rollout_open()):
            registry = await self.registry(spec)
            requeue = await drive_rollout(self, spec, resolved, registry)
            await self.write_status()
            return Outcome(min(requeue, poll))

        observation = await self._serve_stable_only(spec, resolved.stable)
        await self.write_status()
        return Outcome(poll if observation.ready else min(NOT_READY_REQUEUE_SECONDS, poll))

    # -- registry -------------------------------------------------------------------------------

    async def registry(self, spec: ModelDeploymentSpec) -> Registry:
        """The registry client for the spec's tracking server and credentials Secret."""
        credentials = Credentials()
        secret_name = spec.registry.credentials_secret
        if secret_name:
            data = await self.kube.read_secret(self.owner.namespace, secret_name)
            if data is None:
                raise CredentialsSecretMissingError(
                    f"Secret {self.owner.namespace}/{secret_name} named in spec.registry.credentialsSecret is missing"
                )
            credentials = Credentials.from_secret_data(data)
        return self.runtime.registry(spec.registry.tracking_uri, credentials)

    async def _read_registry(self, spec: ModelDeploymentSpec) -> ResolvedVersions | RegistryError:
        try:
            resolved = await (await self.registry(spec)).resolve(spec.model)
        except ModelNotFoundError as error:
            if spec.training is None:
                return error
            # Nothing registered yet, and the spec says how to train it: the first training's job.
            resolved = ResolvedVersions(stable=None, candidate=None)
        except RegistryError as error:
            return error
        self.runtime.failures.pop(self.key, None)
        self.condition("RegistryReachable", True, "RegistryRead", f"read {spec.model.name}")
        return resolved

    async def _registry_failed(self, spec: ModelDeploymentSpec, error: RegistryError) -> Outcome:
        failures = self.runtime.failures.get(self.key, 0)
        self.runtime.failures[self.key] = failures + 1
        was = next((c.status for c in self.previous.conditions if c.type == "RegistryReachable"), None)
        self.condition("RegistryReachable", False, error.reason, str(error))
        if was != "False":
            self.notify("Warning", error.reason, f"registry {spec.registry.tracking_uri}: {error}")
        await self.write_status()
        settings = self.runtime.settings
        return Outcome(min(settings.retry_backoff_seconds * 2**failures, settings.retry_backoff_max_seconds), "retry")

    async def _promote_first_version(self, spec: ModelDeploymentSpec, candidate: str) -> ResolvedVersions:
        # The first version that passed the quality gate has nothing to be compared with: it becomes stable.
        await promote(await self.registry(spec), spec, candidate, previous=None)
        self.notify("Normal", "InitialPromotion", f"version {candidate} is the first stable version", candidate)
        return ResolvedVersions(stable=candidate, candidate=None)

    async def _nothing_to_serve(self, spec: ModelDeploymentSpec) -> Outcome:
        pointer = spec.model.alias or spec.model.stage
        training_running = self.status.training is not None and self.status.training.result == "Running"
        self.status.phase = "Training" if training_running else "Pending"
        self.condition("Ready", False, "NoStableVersion", f"model {spec.model.name} has no version at {pointer}")
        await self.write_status()
        return Outcome(NOT_READY_REQUEUE_SECONDS if training_running else self.runtime.poll_seconds(spec))

    # -- serving --------------------------------------------------------------------------------

    def _rollout_open(self) -> bool:
        canary = self.status.canary
        return canary is not None and canary.state not in ("Idle", "Succeeded", "RolledBack", "Aborted")

    def track_plan(
        self, spec: ModelDeploymentSpec, track: Any, version: str, replicas: int, min_replicas: int | None
    ) -> TrackPlan:
        """The plan of one track at `version`."""
        return TrackPlan(
            track=track,
            version=version,
            model_uri=f"models:/{spec.model.name}/{version}",
            replicas=replicas,
            min_replicas=min_replicas,
        )

    async def apply_track(self, spec: ModelDeploymentSpec, plan: TrackPlan) -> None:
        """Apply a track's objects and delete the ones the spec no longer asks for (e.g. the HPA)."""
        await self.apply_all(build_track(self.owner, spec, plan))
        await self.delete_all(unbuilt_track_keys(self.owner.name, spec, plan.track))

    async def apply_stable(self, spec: ModelDeploymentSpec, version: str, canary_weight: int = 0) -> None:
        """Apply the stable track at `version`; with the replica router its size leaves the canary's share."""
        autoscaling = spec.serving.autoscaling
        replicas = spec.serving.replicas
        if spec.traffic.router == "replicas":
            replicas = replica_split(spec.serving.replicas, canary_weight)[0]
        plan = self.track_plan(spec, "stable", version, replicas, autoscaling.min_replicas if autoscaling else None)
        await self.apply_track(spec, plan)

    async def apply_router(self, spec: ModelDeploymentSpec, canary_weight: int, canary_present: bool) -> None:
        """Set the traffic split."""
        router = build_router(self.owner, spec, RouterPlan(canary_weight=canary_weight, canary_present=canary_present))
        await self.apply_all(router.apply)
        await self.delete_all(router.delete)

    async def remove_canary(self) -> None:
        """Delete every canary object."""
        await self.delete_all(track_object_keys(self.owner.name, "canary"))

    async def observe(self, track: Any, version: str) -> TrackObservation:
        """Pods of a track, counted for `version`."""
        return await observe_track(
            self.kube, self.owner.namespace, track_name(self.owner.name, track), self.owner.name, track, version
        )

    async def apply_all(self, objects: list[dict[str, Any]]) -> None:
        """Server-side apply each object, in order."""
        absent = self.runtime.absent_objects(*self.key)
        for obj in objects:
            await self.kube.apply(obj)
            absent.discard((obj["apiVersion"], obj["kind"], obj["metadata"]["name"]))

    async def delete_all(self, keys: list[tuple[str, str, str]]) -> None:
        """Delete objects by (apiVersion, kind, name), tolerating those already gone.

        Only this operator creates them, so one this process has deleted (or found gone) stays gone
        until it applies it again: such deletes are skipped instead of asking the API server each run.
        """
        absent = self.runtime.absent_objects(*self.key)
        for key in keys:
            if key in absent:
                continue
            api_version, kind, name = key
            await self.kube.delete(api_version, kind, self.owner.namespace, name)
            absent.add(key)

    async def _serve_stable_only(self, spec: ModelDeploymentSpec, version: str) -> TrackObservation:
        await self.apply_stable(spec, version)
        await self.apply_router(spec, canary_weight=0, canary_present=False)
        await self.remove_canary()
        observation = await self.observe("stable", version)
        self.record_stable(version, observation)
        self.set_serving_conditions(version, observation)
        return observation

    def record_stable(self, version: str, observation: TrackObservation) -> None:
        """status.stable from an observation; a version change is a transition."""
        before = self.status.stable.version if self.status.stable else None
        self.status.stable = TrackStatus(
            version=version, ready_replicas=observation.ready_with_version, replicas=observation.desired
        )
        if before != version:
            self.notify(
                "Normal", "StableVersionChanged", f"stable track serves version {version} (was {before})", version
            )

    def set_serving_conditions(self, version: str, observation: TrackObservation) -> None:
        """Ready, Progressing and Degraded from what the stable track's pods show."""
        if observation.ready:
            self.status.phase = "Ready"
            self.condition(
                "Ready", True, "Serving", f"version {version} serves on {observation.ready_with_version} ready pod(s)"
            )
            self.condition("Progressing", False, "Stable")
        else:
            self.status.phase = "Progressing"
            message = (
                f"{observation.ready_with_version}/{max(observation.desired, 1)} pod(s) ready with version {version}"
            )
            if observation.ready_with_other_version:
                message += f", {observation.ready_with_other_version} ready with another version"
            self.condition("Ready", False, "PodsNotReady", message)
            self.condition("Progressing", True, "RollingOut", message)
        self.set_pod_failure_condition(observation)

    def set_pod_failure_condition(self, observation: TrackObservation) -> None:
        """Degraded while serving pods cannot start (image, entrypoint, crash loop), with one Event per cause."""
        if not observation.failures:
            self.condition("Degraded", False, "AsExpected")
            return
        message = "; ".join(observation.failures[:3])
        if len(observation.failures) > 3:
            message += f" (and {len(observation.failures) - 3} more pod(s))"
        was = next((c for c in self.previous.conditions if c.type == "Degraded"), None)
        self.condition("Degraded", True, "PodsFailing", message)
        # The kubelet's reasons and messages change with every retry; the Event repeats only when what the
        # failures mean changes.
        if was is None or was.reason != "PodsFailing" or _failure_causes(was.message) != _failure_causes(message):
            self.notify("Warning", "PodsFailing", message)

    # -- status ---------------------------------------------------------------------------------

    def _mark_invalid(self, message: str) -> None:
        was = next((c for c in self.previous.conditions if c.type == "Ready"), None)
        self.status.phase = "Invalid"
        self.condition("Ready", False, "InvalidSpec", message)
        self.condition("Degraded", True, "InvalidSpec", message)
        if was is None or was.reason != "InvalidSpec" or was.message != message:
            self.notify("Warning", "InvalidSpec", message)

    async def write_status(self) -> None:
        """Write the status when it differs from what was read (ignoring condition timestamps)."""
        if _comparable(self.previous) == _comparable(self.status):
            return
        body = self.status.dump()
        # A merge patch keeps keys it does not mention: clear the sections that went away explicitly.
        for key in self.previous.dump().keys() - body.keys():
            body[key] = None
        await self.kube.patch_status(self.owner.namespace, self.owner.name, body)
        self.previous = self.status.model_copy(deep=True)


def _failure_causes(message: str) -> set[str]:
    """What the container failures named in a PodsFailing message mean, without pods, retries and details."""
    reasons = (part.split(": ")[2] for part in message.split("; ") if part.count(": ") >= 2)
    return {FAILING_WAITING_REASONS.get(reason, reason) for reason in reasons}


def _comparable(status: ModelDeploymentStatus) -> dict[str, Any]:
    dumped = status.dump()
    for condition in dumped.get("conditions", []):
        condition.pop("lastTransitionTime", None)
    return dumped

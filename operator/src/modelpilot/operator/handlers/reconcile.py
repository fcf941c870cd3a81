"""One reconciliation of a ModelDeployment: registry → training → serving objects → honest status.

Every run starts from the resource as the API server last answered it (the watch's copy when that is
the version this process last read or wrote, a fresh read otherwise), so it never acts on a stale
status, and ends with one status write (only when something changed). Nothing that already serves is
deleted or changed when the registry cannot be read. Each object is read at most once per run and
applied only when what the operator would apply changed (`owned.OwnedObjects`): a run that finds
nothing new reads the stable Deployment and the registry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from modelpilot.operator.analysis import analyse
from modelpilot.operator.builders.common import Owner, track_name
from modelpilot.operator.builders.serving import PredictionLogPlan
from modelpilot.operator.builders.traffic import plan_traffic
from modelpilot.operator.handlers.autoscaling import report_request_rate_scaling
from modelpilot.operator.handlers.canary_header import read_canary_header
from modelpilot.operator.handlers.drift import watch_drift
from modelpilot.operator.handlers.journal import EmitEvent, Journal
from modelpilot.operator.handlers.registry_outcome import promote
from modelpilot.operator.handlers.requests import answer_request, record_request
from modelpilot.operator.handlers.rollout import RolloutExecutor
from modelpilot.operator.handlers.training import prefetch_training, reconcile_training
from modelpilot.operator.kubeapi import KubeError
from modelpilot.operator.observe import TrackObservation
from modelpilot.operator.owned import DerivedObjectRefusedError, OwnedElsewhereError, OwnedObjects
from modelpilot.operator.registry import Credentials, ModelNotFoundError, Registry, RegistryError, ResolvedVersions
from modelpilot.operator.rollout import ABORT_ANNOTATION, PromoteInRegistry, is_active
from modelpilot.operator.rollout.requests import pending_request
from modelpilot.operator.runtime import Runtime
from modelpilot.operator.settings import OperatorSettings
from modelpilot.operator.spec import GROUP, VERSION, InvalidSpecError, ModelDeploymentSpec, SecretKeyRef

logger = logging.getLogger(__name__)

# While the stable track is not Ready, the run looks again after 2 s, then twice as long each time up to 10 s (its
# pods' failures, their count): the watch of the Deployment wakes it as soon as the Deployment is Ready.
NOT_READY_REQUEUE_SECONDS = 2.0
NOT_READY_REQUEUE_MAX_SECONDS = 10.0
INVALID_SPEC_REQUEUE_SECONDS = 600.0
# A name conflict ends when the other owner goes, which wakes nothing here: look again sooner than for a bad spec.
NAME_CONFLICT_REQUEUE_SECONDS = 60.0


def not_ready_requeue(runs_before: int, poll: float) -> float:
    """How long a run that finds the stable track not Ready waits, after `runs_before` such runs in a row."""
    return min(NOT_READY_REQUEUE_SECONDS * float(2 ** min(runs_before, 8)), NOT_READY_REQUEUE_MAX_SECONDS, poll)


@dataclass
class Outcome:
    """What a reconciliation decided about its next run."""

    requeue_after: float
    result: str = "ok"


class CredentialsSecretMissingError(RegistryError):
    """The Secret named in spec.registry.credentialsSecret does not exist."""

    reason = "CredentialsSecretMissing"


class CredentialsSecretForbiddenError(RegistryError):
    """The operator may not read the Secret named in spec.registry.credentialsSecret (RBAC)."""

    reason = "CredentialsSecretForbidden"


def prediction_log_plan(settings: OperatorSettings) -> PredictionLogPlan | None:
    """The prediction log the operator's settings give every serving pod; None when none is configured."""
    if not settings.prediction_log_secret:
        return None
    secret = SecretKeyRef(name=settings.prediction_log_secret, key=settings.prediction_log_secret_key)
    return PredictionLogPlan(secret=secret, port=settings.prediction_log_port)


async def reconcile(
    runtime: Runtime, namespace: str, name: str, emit: EmitEvent, seen: Mapping[str, Any] | None = None
) -> Outcome | None:
    """Reconcile one ModelDeployment; None when it is gone or being deleted.

    `seen` is the watch's latest copy of the resource: used when it is the version the API server last
    answered this process (`Runtime.is_current`) or a new resource nobody acted on yet (`Runtime.is_untouched`),
    read anew otherwise — after a status write the watch may not have delivered it yet, and a run must never
    act on a status older than its own last write."""
    if seen is not None and (runtime.is_current(namespace, name, seen) or runtime.is_untouched(namespace, name, seen)):
        # A copy of its own (a JSON round trip: a tenth of the CPU of a deep copy), as a fresh read would be.
        # A new resource's first run starts from the watch's copy too: it creates the Deployment one request sooner.
        obj: dict[str, Any] | None = orjson.loads(orjson.dumps(dict(seen)))
    else:
        obj = await runtime.kube.get(f"{GROUP}/{VERSION}", "ModelDeployment", namespace, name)
        if obj is not None:
            runtime.remember_answer(obj)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    return await Reconciliation(runtime, obj, emit).run()


class Reconciliation:
    """The state of one reconciliation run; each step is a method."""

    def __init__(self, runtime: Runtime, obj: dict[str, Any], emit: EmitEvent) -> None:
        self.runtime = runtime
        self.obj = obj
        meta = obj["metadata"]
        self.owner = Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
        self.annotations: dict[str, str] = meta.get("annotations") or {}

        async def write_status(body: dict[str, Any]) -> Any:
            runtime.writing_status(self.owner.namespace, self.owner.name)
            written = await runtime.kube.patch_status(self.owner.namespace, self.owner.name, body)
            runtime.remember_answer(written)
            return written

        # The spec as the API server sent it: what it parses to, and the plans built from it, are kept by it.
        self.spec_text = orjson.dumps(obj.get("spec") or {})
        self.journal = Journal(obj.get("status"), int(meta.get("generation", 0)), emit, write_status)
        self.request = pending_request(self.annotations, self.journal.status.last_request)
        # No status and the first spec: no run has acted on the resource (every run ends by writing its status),
        # so none applied an object for it — nor for another spec (a run cut short before its write made the same
        # plan from the same spec). Its objects exist only once this run applies them.
        self.new_owner = not obj.get("status") and int(meta.get("generation", 0)) == 1
        self.waits_for_ready = False

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name) of the resource."""
        return (self.owner.namespace, self.owner.name)

    async def run(self) -> Outcome:
        """All steps (`_steps`); afterwards the resource waits for its stable track to become Ready only when this
        run found it serving only that track, not Ready yet."""
        try:
            return await self._steps()
        finally:
            if not self.waits_for_ready:
                self.runtime.not_waiting(*self.key)

    async def _steps(self) -> Outcome:
        """All steps, in order; each may end the run early. A spec that cannot be acted on — one the
        schema lets through but that fails to parse, or from which the API server refuses an object — is
        phase Invalid with the reason, and one Event; it is tried again when the spec changes. A registry that
        fails mid-run is condition RegistryReachable False, and the run is retried with backoff."""
        try:
            spec = self.runtime.parsed_spec(*self.key, self.spec_text)
        except InvalidSpecError as error:
            return await self._invalid(str(error))
        try:
            return await self._run(spec)
        except OwnedElsewhereError as error:
            return await self._invalid(error.describe(), "NameConflict", NAME_CONFLICT_REQUEUE_SECONDS)
        except DerivedObjectRefusedError as error:
            return await self._invalid(error.describe())
        except RegistryError as error:
            # A write (promotion, rejection, first version) or its confirming read failed: the intent is in
            # the status already, so the next run repeats what is not done yet.
            return await self._registry_failed(spec, error)

    async def _invalid(
        self, message: str, reason: str = "InvalidSpec", requeue: float = INVALID_SPEC_REQUEUE_SECONDS
    ) -> Outcome:
        self.journal.mark_invalid(message, reason)
        await self.journal.write()
        return Outcome(requeue, "invalid")

    async def _run(self, spec: ModelDeploymentSpec) -> Outcome:
        journal = self.journal
        journal.status.model_name = spec.model.name
        self.runtime.serves(*self.key, spec.model.name)
        report_request_rate_scaling(spec, self.runtime.settings.autoscaler, journal)
        objects = OwnedObjects(
            self.runtime.kube,
            self.runtime.applied,
            self.owner,
            spec,
            self.runtime.deployments,
            new_owner=self.new_owner,
        )
        # Every path that serves reads the stable Deployment: overlap that read with the registry's. So are the
        # reads a new resource's first applies make before the Deployment's: its ServiceAccount, the schedule.
        stable = track_name(self.owner.name, "stable")
        objects.prefetch("apps/v1", "Deployment", stable)
        objects.prefetch_first_touch("v1", "ServiceAccount", stable)
        prefetch_training(objects, self.owner)

        registry = await self._registry(spec, objects)
        resolved = registry if isinstance(registry, RegistryError) else await self._read_registry(spec, registry)
        if isinstance(resolved, RegistryError):
            return await self._registry_failed(spec, resolved)
        assert not isinstance(registry, RegistryError)
        if resolved.stable is not None:
            # Before the training: a drift episode it records can start a retraining in this run.
            await watch_drift(spec, self.owner.namespace, self.owner.name, resolved.stable, journal)
        await reconcile_training(
            objects,
            self.owner,
            spec,
            journal.status,
            self.annotations,
            has_any_version=resolved.stable is not None or resolved.candidate is not None,
            notify=journal.notify,
        )
        if resolved.stable is None and resolved.candidate is not None:
            resolved = await self._promote_first_version(spec, registry, resolved.candidate)
        if resolved.stable is None:
            await self._settle_request(spec, registry, None)
            return await self._nothing_to_serve(spec)

        poll = self.runtime.poll_seconds(spec)
        header_value = await read_canary_header(spec, objects.read_object_secret, journal)
        # A rollout in flight is also driven once spec.rollout is gone: the machine ends it.
        if is_active(journal.status.canary) or (
            spec.rollout is not None and resolved.candidate not in (None, resolved.stable)
        ):
            executor = RolloutExecutor(
                spec=spec,
                owner=self.owner,
                registry=registry,
                cluster=objects,
                journal=journal,
                analyse=analyse,
                abort_requested=ABORT_ANNOTATION in self.annotations,
                router_proxies=self.runtime.settings.router_proxies,
                canary_header_value=header_value,
                autoscaler=self.runtime.settings.autoscaler,
                prediction_log=prediction_log_plan(self.runtime.settings),
                request=self.request,
            )
            requeue = await executor.drive(resolved)
            await self._settle_request(spec, registry, resolved.stable)
            await journal.write()
            return Outcome(min(requeue, poll))

        observation = await self._serve_stable_only(spec, objects, resolved.stable)
        await self._settle_request(spec, registry, resolved.stable)
        await journal.write()
        if observation.ready:
            return Outcome(poll)
        self.waits_for_ready = True
        return Outcome(not_ready_requeue(self.runtime.still_not_ready(*self.key), poll))

    async def _settle_request(self, spec: ModelDeploymentSpec, registry: Registry, stable: str | None) -> None:
        """Answer a request the rollout did not, and keep an applied one in the registry's tags."""
        answer_request(self.request, spec, self.journal, self.annotations, stable)
        await record_request(registry, spec.model.name, self.journal)

    # -- registry -------------------------------------------------------------------------------

    async def _registry(self, spec: ModelDeploymentSpec, objects: OwnedObjects) -> Registry | RegistryError:
        """The registry client for the spec's tracking server and credentials Secret (read once)."""
        credentials = Credentials()
        secret_name = spec.registry.credentials_secret
        if secret_name:
            try:
                data = await objects.read_secret(secret_name)
            except KubeError as error:
                if error.status != 403:
                    raise
                return CredentialsSecretForbiddenError(
                    f"the operator may not read Secret {self.owner.namespace}/{secret_name} named in "
                    "spec.registry.credentialsSecret: grant it (chart value rbac.secretNamespaces)"
                )
            if data is None:
                return CredentialsSecretMissingError(
                    f"Secret {self.owner.namespace}/{secret_name} named in spec.registry.credentialsSecret is missing"
                )
            credentials = Credentials.from_secret_data(data)
        return self.runtime.registry(spec.registry.tracking_uri, credentials)

    async def _read_registry(self, spec: ModelDeploymentSpec, registry: Registry) -> ResolvedVersions | RegistryError:
        try:
            resolved = await registry.resolve(spec.model, max_age=self.runtime.registry_share_seconds(spec))
        except ModelNotFoundError as error:
            if spec.training is None:
                return error
            # Nothing registered yet, and the spec says how to train it: the first training's job.
            resolved = ResolvedVersions(stable=None, candidate=None)
        except RegistryError as error:
            return error
        self.runtime.failures.pop(self.key, None)
        self.journal.condition("RegistryReachable", True, "RegistryRead", f"read {spec.model.name}")
        return resolved

    async def _registry_failed(self, spec: ModelDeploymentSpec, error: RegistryError) -> Outcome:
        failures = self.runtime.failures.get(self.key, 0)
        self.runtime.failures[self.key] = failures + 1
        was, _, _ = self.journal.was("RegistryReachable")
        self.journal.condition("RegistryReachable", False, error.reason, str(error))
        # One Event per outage: the status says whether it was announced, and the failure count covers a
        # reconcile that read the resource before the previous one's status write reached it.
        if was != "False" and failures == 0:
            self.journal.notify("Warning", error.reason, f"registry {spec.registry.tracking_uri}: {error}")
        await self.journal.write()
        settings = self.runtime.settings
        return Outcome(min(settings.retry_backoff_seconds * 2**failures, settings.retry_backoff_max_seconds), "retry")

    async def _promote_first_version(
        self, spec: ModelDeploymentSpec, registry: Registry, candidate: str
    ) -> ResolvedVersions:
        # The first version that passed the quality gate has nothing to be compared with: it becomes stable.
        await promote(registry, spec, PromoteInRegistry(candidate, previous=None))
        self.journal.notify("Normal", "InitialPromotion", f"version {candidate} is the first stable version", candidate)
        return ResolvedVersions(stable=candidate, candidate=None)

    async def _nothing_to_serve(self, spec: ModelDeploymentSpec) -> Outcome:
        status = self.journal.status
        pointer = spec.model.alias or spec.model.stage
        training_running = status.training is not None and status.training.result == "Running"
        status.phase = "Training" if training_running else "Pending"
        self.journal.condition(
            "Ready", False, "NoStableVersion", f"model {spec.model.name} has no version at {pointer}"
        )
        await self.journal.write()
        return Outcome(NOT_READY_REQUEUE_SECONDS if training_running else self.runtime.poll_seconds(spec))

    # -- serving --------------------------------------------------------------------------------

    async def _serve_stable_only(
        self, spec: ModelDeploymentSpec, objects: OwnedObjects, version: str
    ) -> TrackObservation:
        settings = self.runtime.settings
        prediction_log = prediction_log_plan(settings)
        # Everything the plan is built from; the spec as the API server sent it (the parsed spec follows from it).
        inputs = (self.owner, self.spec_text, version, settings.router_proxies, settings.autoscaler)
        await objects.apply_planned(
            (*inputs, prediction_log),
            lambda: plan_traffic(
                self.owner,
                spec,
                stable=version,
                canary=None,
                weight=0,
                router_proxies=settings.router_proxies,
                autoscaler=settings.autoscaler,
                prediction_log=prediction_log,
            ),
        )
        observation = await objects.observe("stable", version)
        self.journal.record_stable(version, observation)
        self.journal.set_serving_conditions(version, observation)
        return observation

"""Process-wide state of the operator: the API clients and the wake-up events of each resource."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelpilot.operator.builders.common import track_name
from modelpilot.operator.kubeapi import KubeApi
from modelpilot.operator.observe import is_settled
from modelpilot.operator.owned import AppliedMemory
from modelpilot.operator.registry import Credentials, MlflowRegistry
from modelpilot.operator.settings import OperatorSettings
from modelpilot.operator.spec import KIND, ModelDeploymentSpec, parse_duration, parse_spec
from modelpilot.operator.watched import WatchedDeployments


@dataclass
class Runtime:
    """Shared by every handler of one operator process."""

    settings: OperatorSettings
    kube: KubeApi
    registries: dict[tuple[str, Credentials], MlflowRegistry] = field(default_factory=dict)
    wakeups: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    models: dict[tuple[str, str], str] = field(default_factory=dict)
    # The resourceVersion of each resource as the API server last answered it to this process (a read or a
    # status write): a copy from the watch with that version is as fresh as a new read.
    answered_versions: dict[tuple[str, str], str] = field(default_factory=dict)
    # The spec each resource last had, as the API server sent it (JSON), and what it parsed to.
    specs: dict[tuple[str, str], tuple[bytes, ModelDeploymentSpec]] = field(default_factory=dict)
    deployments: WatchedDeployments = field(default_factory=WatchedDeployments)
    applied: AppliedMemory = field(default_factory=AppliedMemory)
    # Resources whose stable track was not Ready at their last run, with how many runs in a row found it so.
    not_ready: dict[tuple[str, str], int] = field(default_factory=dict)
    # Resources of namespaces being deleted whose finalizer the operator dropped itself (handlers/terminating):
    # Kopf no longer watches them, so their reconcile loop learns of it here, and ends.
    released: set[tuple[str, str]] = field(default_factory=set)

    def poll_seconds(self, spec: ModelDeploymentSpec) -> float:
        """How long a resource may wait for its next registry read when nothing wakes it."""
        return max(parse_duration(spec.registry.poll_interval), self.settings.poll_floor_seconds)

    def registry(self, tracking_uri: str, credentials: Credentials) -> MlflowRegistry:
        """One pooled registry client per tracking server and credentials."""
        key = (tracking_uri, credentials)
        if key not in self.registries:
            self.registries[key] = MlflowRegistry(
                tracking_uri, credentials, timeout=self.settings.registry_timeout_seconds
            )
        return self.registries[key]

    def parsed_spec(self, namespace: str, name: str, text: bytes) -> ModelDeploymentSpec:
        """The resource's spec parsed from its JSON `text` (InvalidSpecError when it cannot be); parsed once for
        as long as the text stays the same (the parsed spec is immutable)."""
        last = self.specs.get((namespace, name))
        if last is not None and last[0] == text:
            return last[1]
        spec = parse_spec(orjson.loads(text))
        self.specs[(namespace, name)] = (text, spec)
        return spec

    def wakeup(self, namespace: str, name: str) -> asyncio.Event:
        """The event that cuts short the wait of a resource's reconcile loop."""
        return self.wakeups.setdefault((namespace, name), asyncio.Event())

    def wake(self, namespace: str, name: str) -> None:
        """Reconcile a resource now instead of at its next poll."""
        self.wakeup(namespace, name).set()

    def still_not_ready(self, namespace: str, name: str) -> int:
        """Record a run that found the resource's stable track not Ready; how many runs before it in a row did."""
        runs = self.not_ready.get((namespace, name), 0)
        self.not_ready[(namespace, name)] = runs + 1
        return runs

    def not_waiting(self, namespace: str, name: str) -> None:
        """Record a run after which the resource does not wait for its stable track to become Ready."""
        self.not_ready.pop((namespace, name), None)

    def deployment_seen(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """Record a watch event of one of the operator's Deployments, and wake the resource that owns it when it
        waits for the Deployment to become Ready and it now is: its run then sees it at once, from the watched
        copy, instead of at its next look."""
        self.deployments.seen(event_type, obj)
        meta = obj.get("metadata") or {}
        owner = next((ref for ref in meta.get("ownerReferences") or [] if ref.get("controller")), None)
        if event_type == "DELETED" or owner is None or owner.get("kind") != KIND:
            return
        key = (str(meta.get("namespace", "")), str(owner.get("name", "")))
        if key in self.not_ready and meta.get("name") == track_name(key[1], "stable") and is_settled(obj):
            # Once: the controller's next writes of the settled status (its conditions) wake nothing more.
            del self.not_ready[key]
            self.wake(*key)

    def release(self, namespace: str, name: str) -> None:
        """End the reconcile loop of a resource whose finalizer the operator dropped (its namespace is being
        deleted and Kopf no longer watches it) and drop its state."""
        self.released.add((namespace, name))
        self.wake(namespace, name)  # the loop holds this event: it wakes even once its entry is gone
        self.forget(namespace, name)

    def is_released(self, namespace: str, name: str) -> bool:
        """Whether the resource was released (`release`): its loop ends."""
        return (namespace, name) in self.released

    def forget(self, namespace: str, name: str) -> None:
        """Drop the state of a deleted resource."""
        self.wakeups.pop((namespace, name), None)
        self.not_ready.pop((namespace, name), None)
        self.failures.pop((namespace, name), None)
        self.models.pop((namespace, name), None)
        self.answered_versions.pop((namespace, name), None)
        self.specs.pop((namespace, name), None)
        self.applied.forget(namespace, name)

    def remember_answer(self, obj: dict[str, Any]) -> None:
        """Record the resourceVersion of a ModelDeployment as the API server just answered it."""
        meta = obj.get("metadata") or {}
        if meta.get("resourceVersion"):
            self.answered_versions[(meta.get("namespace", ""), meta.get("name", ""))] = meta["resourceVersion"]

    def is_current(self, namespace: str, name: str, seen: Mapping[str, Any]) -> bool:
        """Whether `seen` (the watch's latest copy) is the version the API server last answered: then nothing
        changed since, neither this process's status write nor anyone else's (their change would have come
        with another version, through the watch too)."""
        version = (seen.get("metadata") or {}).get("resourceVersion")
        return version is not None and self.answered_versions.get((namespace, name)) == version

    def is_untouched(self, namespace: str, name: str, seen: Mapping[str, Any]) -> bool:
        """Whether `seen` is a resource with no status that this process never read nor wrote the status of (a
        new resource): nobody has acted on it yet, so there is no newer state a read could show that matters
        (another change of the spec or annotations comes through the watch, and wakes the run again)."""
        return not seen.get("status") and (namespace, name) not in self.answered_versions

    def writing_status(self, namespace: str, name: str) -> None:
        """Record that a status write of the resource is under way: until it is answered, no copy is current
        (had the answer been lost, the watch's copy could still show no status while the API server has one)."""
        self.answered_versions.setdefault((namespace, name), "")

    def serves(self, namespace: str, name: str, model_name: str) -> None:
        """Remember which registered model a resource serves, so registry webhooks can wake it."""
        self.models[(namespace, name)] = model_name

    def registry_share_seconds(self, spec: ModelDeploymentSpec) -> float:
        """How old another resource's read of the same model may be for a poll to take its answer."""
        return min(self.settings.registry_share_seconds, self.poll_seconds(spec))

    async def wake_model(self, model_name: str, event: str) -> None:
        """Wake every resource that serves `model_name` (a registry webhook arrived); their reads of it ask the
        registry anew (the first one asks, the others woken with it share its answer)."""
        for registry in self.registries.values():
            registry.forget(model_name)
        for (namespace, name), served in list(self.models.items()):
            if served == model_name:
                self.wake(namespace, name)

    async def aclose(self) -> None:
        """Close every pooled client."""
        for registry in self.registries.values():
            await registry.aclose()
        self.registries.clear()


_current: Runtime | None = None


def install_runtime(runtime: Runtime | None) -> None:
    """Make `runtime` the one the handlers of this process use."""
    global _current  # noqa: PLW0603 - one operator per process, set at startup
    _current = runtime


def current_runtime() -> Runtime:
    """The runtime installed at startup."""
    if _current is None:
        raise RuntimeError("the operator runtime is not configured; the startup handler did not run")
    return _current

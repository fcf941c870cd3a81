"""The objects one ModelDeployment owns, as the handlers see them: applied when their content changed,
deleted when not known gone, read at most once per reconciliation.

`AppliedMemory` (one per operator process) remembers a digest of what was last applied to each object
and the generation the API server gave it, and which objects this process deleted (or found gone).
Only this operator writes these objects, so an object whose applied content is unchanged needs no
apply, and one known gone needs no delete. An object this process has not applied yet is read first:
when another object controls it (another ModelDeployment whose derived name is the same, KEDA's HPA), it
is neither applied nor deleted, and the reconciliation shows the conflict instead of taking it over.
Two things make the memory let go of an object, so a change made by someone else is repaired: a read
that shows another generation (or no object), and age — every object is applied again at least every
`resync_seconds`. A failed request forgets the
whole resource. A restarted operator starts with an empty memory and so applies everything once.

`OwnedObjects` is one reconciliation's view: it serves each read from the API once and afterwards
from what it read or applied: lists (pods) are as they were at their first read, and an object just
applied is the API's answer to the apply (a Deployment's new generation not yet observed by its
controller, so not rolled out).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from modelpilot.operator.builders.common import (
    DEPLOYMENT_LABEL,
    TRACK_LABEL,
    ObjectKey,
    Owner,
    Track,
    label_value,
    track_name,
)
from modelpilot.operator.builders.routing import (
    GATEWAY_API_VERSION,
    MIRROR_FEATURE,
    canary_ingress_name,
    lacks_request_mirror,
    router_weight,
)
from modelpilot.operator.builders.traffic import TrafficPlan
from modelpilot.operator.kubeapi import KubeApi, KubeError
from modelpilot.operator.observe import TrackObservation, deployed_version, observe_pods, observe_settled
from modelpilot.operator.spec import GROUP, KIND, ModelDeploymentSpec
from modelpilot.operator.watched import WatchedDeployments

T = TypeVar("T")
DEFAULT_RESYNC_SECONDS = 3600.0
# What the API server answers for an object it will not accept as it is (a field value, a name): retrying
# the same content cannot succeed, only a change of the spec it was built from.
REFUSED_STATUSES = frozenset({400, 422})


class DerivedObjectRefusedError(KubeError):
    """The API server refused an object built from the spec: the spec must change before it can be acted on."""

    def __init__(self, kind: str, name: str, status: int, message: str) -> None:
        super().__init__(status, message)
        self.kind = kind
        self.name = name
        self.detail = message

    def describe(self) -> str:
        """One line for the InvalidSpec condition: which object, and the API server's reason (bounded)."""
        return f"the API server refused {self.kind} {self.name} built from the spec: {self.detail[:400]}"


class OwnedElsewhereError(DerivedObjectRefusedError):
    """An object with a name this ModelDeployment derives is controlled by another object: applying it would
    take it over (and the other owner would take it back), so it is left alone."""

    def __init__(self, kind: str, name: str, controller: dict[str, Any]) -> None:
        self.controller = controller
        described = f"{controller.get('kind', 'an object')} {controller.get('name', '')}".strip()
        super().__init__(kind, name, 409, f"it belongs to {described}")

    def describe(self) -> str:
        """One line for the NameConflict condition: which object, and who controls it."""
        return (
            f"{self.kind} {self.name} that this ModelDeployment derives {self.detail}: the names collide; "
            "rename one of the two (it is neither changed nor deleted here)"
        )


def foreign_controller(obj: dict[str, Any], owner: Owner) -> dict[str, Any] | None:
    """The controller ownerReference of `obj` when it is not the owner. A ModelDeployment of the owner's name
    counts as the owner: names are unique in a namespace, so it is the owner or a deleted one it replaces."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        ours = ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")
        return None if ours and ref.get("name") == owner.name else dict(ref)
    return None


def digest(obj: dict[str, Any]) -> str:
    """A digest of an object's content as it is applied (key order does not matter)."""
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class _Applied:
    digest: str
    generation: int | None
    at: float


@dataclass(frozen=True)
class _Planned:
    """A plan this process applied for a resource: what it was built from, the digest of each object, the deletes."""

    inputs: Hashable
    digests: tuple[tuple[ObjectKey, str], ...]
    delete: tuple[ObjectKey, ...]


@dataclass
class AppliedMemory:
    """What this process last applied to, or deleted from, each object (keyed by namespace and object), and the
    last plan applied for each resource (keyed by namespace and resource name)."""

    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    clock: Callable[[], float] = time.monotonic
    applied: dict[tuple[str, ObjectKey], _Applied] = field(default_factory=dict)
    absent: set[tuple[str, ObjectKey]] = field(default_factory=set)
    planned: dict[tuple[str, str], _Planned] = field(default_factory=dict)

    def needs_apply(self, namespace: str, key: ObjectKey, content: str) -> bool:
        """Whether `content` differs from what was last applied, or that was too long ago."""
        last = self.applied.get((namespace, key))
        return last is None or last.digest != content or self.clock() - last.at >= self.resync_seconds

    def remember_applied(self, namespace: str, key: ObjectKey, content: str, generation: int | None) -> None:
        """Record an apply and the generation the API server answered with."""
        self.applied[(namespace, key)] = _Applied(content, generation, self.clock())
        self.absent.discard((namespace, key))

    def has_applied(self, namespace: str, key: ObjectKey) -> bool:
        """Whether this process applied the object (and has not forgotten it since)."""
        return (namespace, key) in self.applied

    def applied_generation(self, namespace: str, key: ObjectKey) -> int | None:
        """The generation the API server answered this process's last apply of the object with, if any."""
        last = self.applied.get((namespace, key))
        return None if last is None else last.generation

    def is_absent(self, namespace: str, key: ObjectKey) -> bool:
        """Whether this process deleted the object (or found it gone) and has not applied it since."""
        return (namespace, key) in self.absent

    def remember_absent(self, namespace: str, key: ObjectKey) -> None:
        """Record that the object does not exist."""
        self.applied.pop((namespace, key), None)
        self.absent.add((namespace, key))

    def check(self, namespace: str, key: ObjectKey, obj: dict[str, Any] | None) -> None:
        """Forget what was applied when a read shows the object changed by someone else, or gone."""
        last = self.applied.get((namespace, key))
        if last is None:
            return
        generation = None if obj is None else obj["metadata"].get("generation")
        if obj is None or (last.generation is not None and generation != last.generation):
            del self.applied[(namespace, key)]

    def forget(self, namespace: str, owner_name: str, keys: list[ObjectKey] | None = None) -> None:
        """Forget `keys` (default: every object named after the owner), so they are applied and deleted anew."""

        def owned(key: ObjectKey) -> bool:
            return key in keys if keys is not None else key[2] == owner_name or key[2].startswith(f"{owner_name}-")

        self.applied = {k: v for k, v in self.applied.items() if not (k[0] == namespace and owned(k[1]))}
        self.absent = {k for k in self.absent if not (k[0] == namespace and owned(k[1]))}
        self.planned.pop((namespace, owner_name), None)


class OwnedObjects:
    """One reconciliation's access to the objects of one ModelDeployment."""

    def __init__(
        self,
        kube: KubeApi,
        memory: AppliedMemory,
        owner: Owner,
        spec: ModelDeploymentSpec,
        watched: WatchedDeployments | None = None,
        *,
        new_owner: bool = False,
    ) -> None:
        self.kube = kube
        self.memory = memory
        self.watched = watched
        # Nothing has acted on the owner yet (`Reconciliation.new_owner`): an object it would delete without this
        # process having applied it is not its own, so it is known gone without a read (see `delete`).
        self.new_owner = new_owner
        self.owner = owner
        self.spec = spec
        self._reads: dict[ObjectKey, asyncio.Future[dict[str, Any] | None]] = {}
        self._lists: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self.requests = 0  # API requests made through this view, for tests and benchmarks

    @property
    def namespace(self) -> str:
        """The owner's namespace."""
        return self.owner.namespace

    async def read(self, api_version: str, kind: str, name: str, *, owned: bool = True) -> dict[str, Any] | None:
        """The object (None when it does not exist), from the API the first time in this reconciliation.

        Concurrent reads of one object share one request. An owned object found gone is remembered
        gone until this process applies it (only the operator creates those); `owned=False` (a Secret)
        is always asked for.
        """
        key = (api_version, kind, name)
        if key not in self._reads:
            if owned and self.memory.is_absent(self.namespace, key):
                return None
            self._reads[key] = asyncio.ensure_future(self._fetch(key, owned=owned))
        return await self._reads[key]

    def prefetch(self, api_version: str, kind: str, name: str) -> None:
        """Start reading an object now, to overlap the request with other work; `read` gets the result."""
        key = (api_version, kind, name)
        if key not in self._reads and not self.memory.is_absent(self.namespace, key):
            task = asyncio.ensure_future(self._fetch(key, owned=True))
            # A prefetch nobody reads (the run ended early) must not leave its error unretrieved.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._reads[key] = task

    def prefetch_first_touch(self, api_version: str, kind: str, name: str) -> None:
        """Start now the read that the first apply or delete of an object makes (to see whether another object
        controls it), when this process has neither applied it nor found it gone: a new resource's first run
        then waits for those reads together, not one after the other. An object already applied is not read."""
        key = (api_version, kind, name)
        if key not in self._reads and not self.memory.has_applied(self.namespace, key):
            self.prefetch(api_version, kind, name)

    async def _fetch(self, key: ObjectKey, *, owned: bool) -> dict[str, Any] | None:
        api_version, kind, name = key
        if owned and kind == "Deployment" and self.watched is not None:
            generation = self.memory.applied_generation(self.namespace, key)
            watched = self.watched.at_generation(self.namespace, name, generation)
            if watched is not None:
                return watched
        found = await self._call(self.kube.get(api_version, kind, self.namespace, name))
        if owned:
            self.memory.check(self.namespace, key, found)
            if found is None:
                self.memory.remember_absent(self.namespace, key)
        return found

    async def list_of(self, api_version: str, kind: str, label_selector: str) -> list[dict[str, Any]]:
        """Objects of a kind with the labels, from the API the first time in this reconciliation."""
        key = (api_version, kind, label_selector)
        if key not in self._lists:
            self._lists[key] = await self._call(
                self.kube.list_objects(api_version, kind, self.namespace, label_selector)
            )
        return self._lists[key]

    async def read_secret(self, name: str) -> dict[str, str] | None:
        """Decoded data of a Secret in the owner's namespace; None when it does not exist."""
        secret = await self.read("v1", "Secret", name, owned=False)
        return None if secret is None else KubeApi.decode_secret(secret)

    async def read_object_secret(self, name: str) -> dict[str, Any] | None:
        """A Secret object in the owner's namespace, undecoded; None when it does not exist."""
        return await self.read("v1", "Secret", name, owned=False)

    async def apply(self, objects: list[dict[str, Any]]) -> list[tuple[ObjectKey, str]]:
        """Server-side apply each object whose content changed since this process last applied it, in order; the
        key and digest of each object. A ServiceAccount goes out together with the object after it (the
        Deployment whose pods use it), once neither is found controlled by another owner: the Deployment's
        controllers create the pods well after the account (and try again if not), and a new resource's
        Deployment is created one round trip sooner."""
        digests: list[tuple[ObjectKey, str]] = []
        due: list[tuple[dict[str, Any], ObjectKey, str]] = []
        for obj in objects:
            key: ObjectKey = (obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
            content = digest(obj)
            digests.append((key, content))
            if self.memory.needs_apply(self.namespace, key, content):
                due.append((obj, key, content))
        while due:
            together = 2 if due[0][1][:2] == ("v1", "ServiceAccount") else 1
            step, due = due[:together], due[together:]
            await _all(self._refuse_foreign(obj, key) for obj, key, _ in step)
            await _all(self._apply_one(*each) for each in step)
        return digests

    async def _refuse_foreign(self, obj: dict[str, Any], key: ObjectKey) -> None:
        """Raise OwnedElsewhereError when another object controls the one about to be applied the first time."""
        if not self.memory.has_applied(self.namespace, key):
            existing = await self.read(*key, owned=False)
            controller = None if existing is None else foreign_controller(existing, self.owner)
            if controller is not None:
                raise OwnedElsewhereError(obj["kind"], key[2], controller)

    async def _apply_one(self, obj: dict[str, Any], key: ObjectKey, content: str) -> None:
        try:
            applied = await self._call(self.kube.apply(obj))
        except KubeError as error:
            if error.status not in REFUSED_STATUSES:
                raise
            message = str(error).split(": ", 1)[-1]
            raise DerivedObjectRefusedError(obj["kind"], obj["metadata"]["name"], error.status, message) from error
        self.memory.remember_applied(self.namespace, key, content, applied.get("metadata", {}).get("generation"))
        self._reads[key] = _done(applied)

    async def delete(self, keys: list[ObjectKey]) -> None:
        """Delete each object not known to be gone; one already gone counts as deleted, and one another object
        controls is not this ModelDeployment's to delete.

        For a new owner, an object this process has not applied is remembered gone without a read: no run has
        acted on the owner, so none applied it; one another object controls is not its to delete, and one a
        deleted namesake left carries that namesake's reference and goes with it."""
        for key in keys:
            if self.memory.is_absent(self.namespace, key):
                continue
            if self.new_owner and not self.memory.has_applied(self.namespace, key):
                self.memory.remember_absent(self.namespace, key)
                continue
            if not self.memory.has_applied(self.namespace, key):
                existing = await self.read(*key)
                if existing is None or foreign_controller(existing, self.owner) is not None:
                    continue
            api_version, kind, name = key
            await self._call(self.kube.delete(api_version, kind, self.namespace, name))
            self.memory.remember_absent(self.namespace, key)
            self._reads[key] = _done(None)

    async def apply_plan(self, plan: TrafficPlan) -> None:
        """Apply a traffic plan: its objects in order, then its deletes in order."""
        await self.apply(plan.apply)
        await self.delete(plan.delete)

    async def apply_planned(self, inputs: Hashable, build: Callable[[], TrafficPlan]) -> None:
        """Apply the plan `build` makes, `inputs` being everything it is built from. When they are the inputs
        of the last plan applied for this resource and none of its objects needs applying (none changed by
        someone else, none due for its resync), the plan is not built again: building and digesting it is most
        of an idle run's own work. Its deletes are made again (each is nothing once the object is known gone)."""
        key = (self.namespace, self.owner.name)
        last = self.memory.planned.get(key)
        if (
            last is not None
            and last.inputs == inputs
            and not any(self.memory.needs_apply(self.namespace, *done) for done in last.digests)
        ):
            await self.delete(list(last.delete))
            return
        self.memory.planned.pop(key, None)
        plan = build()
        digests = await self.apply(plan.apply)
        await self.delete(plan.delete)
        self.memory.planned[key] = _Planned(inputs, tuple(digests), tuple(plan.delete))

    async def deployed_version(self, track: Track) -> str | None:
        """The model version a track's Deployment runs (its pod template), None without a Deployment."""
        return deployed_version(await self.read("apps/v1", "Deployment", track_name(self.owner.name, track)))

    async def deployed_replicas(self, track: Track) -> int | None:
        """The replicas a track's Deployment asks for now (its HPA's choice under autoscaling)."""
        deployment = await self.read("apps/v1", "Deployment", track_name(self.owner.name, track))
        replicas = None if deployment is None else (deployment.get("spec") or {}).get("replicas")
        return None if replicas is None else int(replicas)

    async def observe(self, track: Track, version: str) -> TrackObservation:
        """The track's pods counted for `version`; the Deployment's status alone when it settles the count."""
        deployment = await self.read("apps/v1", "Deployment", track_name(self.owner.name, track))
        settled = observe_settled(deployment, version)
        if settled is not None:
            return settled
        pods = await self.list_of(
            "v1", "Pod", f"{DEPLOYMENT_LABEL}={label_value(self.owner.name)},{TRACK_LABEL}={track}"
        )
        return observe_pods(deployment, pods, version)

    async def router_weight(self) -> int | None:
        """The canary weight the router carries now; None for the replica router (pods carry it)."""
        router = self.spec.traffic.router
        if router == "gateway":
            route = await self.read("gateway.networking.k8s.io/v1", "HTTPRoute", self.owner.name)
        elif router == "ingress":
            route = await self.read("networking.k8s.io/v1", "Ingress", canary_ingress_name(self.owner.name))
        else:
            return None
        return 0 if route is None else router_weight(route)

    async def mirror_refusal(self) -> str | None:
        """Why the router cannot mirror requests to the canary, when the cluster says so: a parent Gateway's
        GatewayClass lists its supported features without RequestMirror. None when it can, or when that
        cannot be told (another router, a class that lists nothing, Gateways the operator may not read)."""
        gateway = self.spec.traffic.gateway
        if self.spec.traffic.router != "gateway" or gateway is None:
            return None
        for ref in gateway.parent_refs:
            namespace = ref.namespace or self.namespace
            try:
                parent = await self.kube.get(GATEWAY_API_VERSION, "Gateway", namespace, ref.name)
                class_name = ((parent or {}).get("spec") or {}).get("gatewayClassName")
                found = await self.kube.get(GATEWAY_API_VERSION, "GatewayClass", "", class_name) if class_name else None
            except (KubeError, OSError):
                continue  # not allowed to read it (a namespaced install), or not there: nothing to tell
            if found is not None and lacks_request_mirror(found):
                return (
                    f"GatewayClass {class_name} (of Gateway {namespace}/{ref.name}) does not list "
                    f"{MIRROR_FEATURE} in status.supportedFeatures"
                )
        return None

    async def _call(self, request: Awaitable[T]) -> T:
        self.requests += 1
        try:
            return await request
        except (KubeError, OSError):
            # Whatever this resource's objects look like now, the next reconciliation asks the API again.
            self.memory.forget(self.namespace, self.owner.name)
            raise


async def _all(steps: Iterable[Awaitable[None]]) -> None:
    """Await the steps together; the first error in their order is raised once all are done."""
    for outcome in await asyncio.gather(*steps, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


def _done(value: dict[str, Any] | None) -> asyncio.Future[dict[str, Any] | None]:
    future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future

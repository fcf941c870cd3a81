"""The one module that talks to the Kubernetes API (besides Kopf's own watching).

Writes are server-side apply with one field manager, so the operator owns exactly the fields it
sets and other controllers (the HPA's `replicas`, for one) keep theirs. 404 on delete and read is
tolerated here, in one place. The synchronous `kubernetes` client runs in worker threads.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config

from modelpilot.operator import metrics
from modelpilot.operator.spec import GROUP, PLURAL, VERSION

# The API server allocates a Service's cluster IP one Service at a time: 40 Services applied at once took it
# 1.3 s in all with each request waiting 0.66 s, 4 at a time 0.65 s in all and 0.06 s each; a Deployment
# applied meanwhile is not held up. So a few Service applies at a time keep the same pace and leave the worker
# threads to the requests that do not wait for one another (a new resource's Deployment among them).
SERVICE_APPLIES = 4


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str, name: str | None = None) -> str:
        """The collection path, or the object path when `name` is given (cluster-scoped kinds ignore `namespace`)."""
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        path = f"{prefix}/namespaces/{namespace}/{self.plural}" if self.namespaced else f"{prefix}/{self.plural}"
        return f"{path}/{name}" if name else path


KINDS = {
    (kind.api_version, kind.kind): kind
    for kind in [
        Kind("v1", "ServiceAccount", "serviceaccounts"),
        Kind("v1", "Service", "services"),
        Kind("v1", "Secret", "secrets"),
        Kind("v1", "Pod", "pods"),
        Kind("apps/v1", "Deployment", "deployments"),
        Kind("apps/v1", "ReplicaSet", "replicasets"),
        Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        Kind("keda.sh/v1alpha1", "ScaledObject", "scaledobjects"),
        Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
        Kind("networking.k8s.io/v1", "Ingress", "ingresses"),
        Kind("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes"),
        Kind("gateway.networking.k8s.io/v1", "GRPCRoute", "grpcroutes"),
        # Read only: whether the Gateways a route attaches to can mirror requests (the shadow phase).
        Kind("gateway.networking.k8s.io/v1", "Gateway", "gateways"),
        Kind("gateway.networking.k8s.io/v1", "GatewayClass", "gatewayclasses", namespaced=False),
        Kind("batch/v1", "Job", "jobs"),
        Kind("batch/v1", "CronJob", "cronjobs"),
        Kind("trainer.kubeflow.org/v1alpha1", "TrainJob", "trainjobs"),
        Kind(f"{GROUP}/{VERSION}", "ModelDeployment", PLURAL),
        # Read only: which namespaces are being deleted (finalizers Kopf will not release, handlers/terminating).
        Kind("v1", "Namespace", "namespaces", namespaced=False),
    ]
}


class KubeError(Exception):
    """The API server refused a request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def kind_of(api_version: str, kind: str) -> Kind:
    """The REST location of a kind the operator manages."""
    try:
        return KINDS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"the operator does not manage {kind} in {api_version}") from None


def load_api_client(kubeconfig: str | None = None, *, connections: int | None = None) -> client.ApiClient:
    """An ApiClient from a kubeconfig file, or the in-cluster service account. `connections`: how many
    connections it keeps open, one per worker thread (the client's default, five per core, makes the threads
    beyond it open a new TLS connection for each request and drop it after)."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    if connections is not None:
        configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


class KubeApi:
    """Apply, read and delete the objects a ModelDeployment owns."""

    def __init__(self, api_client: client.ApiClient, field_manager: str = "modelpilot") -> None:
        self._api = api_client
        self.field_manager = field_manager
        self._service_applies: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def _service_slots(self) -> asyncio.Semaphore:
        """The semaphore that bounds Service applies in flight, one per event loop (a test may run several)."""
        loop = asyncio.get_running_loop()
        if self._service_applies is None or self._service_applies[0] is not loop:
            self._service_applies = (loop, asyncio.Semaphore(SERVICE_APPLIES))
        return self._service_applies[1]

    async def apply(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply `obj`, forcing ownership of the fields it sets. At most `SERVICE_APPLIES` Services
        are applied at a time; the others wait without holding a worker thread."""
        kind = kind_of(obj["apiVersion"], obj["kind"])
        metadata = obj["metadata"]
        query = [("fieldManager", self.field_manager), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        metrics.KUBE_REQUESTS.labels(verb="apply", kind=kind.kind).inc()
        path = kind.path(metadata["namespace"], metadata["name"])
        content_type = "application/apply-patch+yaml"
        if kind.kind != "Service":
            return await self._request("PATCH", path, query=query, body=obj, content_type=content_type)
        async with self._service_slots():
            return await self._request("PATCH", path, query=query, body=obj, content_type=content_type)

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        metrics.KUBE_REQUESTS.labels(verb="get", kind=kind).inc()
        try:
            return await self._request("GET", kind_of(api_version, kind).path(namespace, name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    async def list_objects(
        self, api_version: str, kind: str, namespace: str, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace, filtered by a label selector."""
        query = [("labelSelector", label_selector)] if label_selector else []
        metrics.KUBE_REQUESTS.labels(verb="list", kind=kind).inc()
        body = await self._request("GET", kind_of(api_version, kind).path(namespace), query=query)
        items: list[dict[str, Any]] = body.get("items", [])
        return items

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete in the background (dependents go too); False when it was already gone."""
        metrics.KUBE_REQUESTS.labels(verb="delete", kind=kind).inc()
        try:
            await self._request(
                "DELETE",
                kind_of(api_version, kind).path(namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def remove_finalizer(self, api_version: str, kind: str, namespace: str, name: str, finalizer: str) -> bool:
        """Drop `finalizer` from the object's finalizers, only that entry (a JSON patch that first tests it is
        where it was read: another writer's change in between makes the patch fail, and it is read again).
        False when the object or the finalizer is gone already."""
        location = kind_of(api_version, kind)
        for _ in range(3):
            obj = await self.get(api_version, kind, namespace, name)
            finalizers = [] if obj is None else list(obj["metadata"].get("finalizers") or [])
            if finalizer not in finalizers:
                return False
            at = f"/metadata/finalizers/{finalizers.index(finalizer)}"
            metrics.KUBE_REQUESTS.labels(verb="patch", kind=kind).inc()
            try:
                await self._request(
                    "PATCH",
                    location.path(namespace, name),
                    body=[{"op": "test", "path": at, "value": finalizer}, {"op": "remove", "path": at}],
                    content_type="application/json-patch+json",
                )
            except KubeError as error:
                if error.status == 404:
                    return False
                if error.status != 422:  # 422: the test failed, the list changed since it was read
                    raise
            else:
                return True
        raise KubeError(409, f"the finalizers of {kind} {namespace}/{name} kept changing while {finalizer} was dropped")

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the ModelDeployment's status subresource."""
        kind = kind_of(f"{GROUP}/{VERSION}", "ModelDeployment")
        metrics.KUBE_REQUESTS.labels(verb="patch_status", kind=kind.kind).inc()
        return await self._request(
            "PATCH",
            kind.path(namespace, name) + "/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """Decoded data of a Secret, or None when it does not exist."""
        secret = await self.get("v1", "Secret", namespace, name)
        return None if secret is None else self.decode_secret(secret)

    @staticmethod
    def decode_secret(secret: dict[str, Any]) -> dict[str, str]:
        """The decoded `data` of a Secret object."""
        return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        return await asyncio.to_thread(self._request_sync, method, path, query or [], body, content_type)

    def _request_sync(
        self, method: str, path: str, query: list[tuple[str, str]], body: Any, content_type: str
    ) -> dict[str, Any]:
        serialized = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*serialized)
        data = response.read()  # type: ignore[no-untyped-call]
        if response.status >= 400:
            try:
                message = json.loads(data).get("message", data.decode(errors="replace"))
            except ValueError:
                message = data.decode(errors="replace")
            raise KubeError(response.status, message)
        parsed: dict[str, Any] = json.loads(data) if data else {}
        return parsed

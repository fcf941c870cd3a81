"""Reads and waits on the objects of one test namespace: shared by the operator and rollout cluster tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client

from modelpilot.operator.spec import GROUP, PLURAL, VERSION
from tests.support.cluster import Cluster, apply_manifest, get_object, list_objects, wait_until


class Resources:
    """Reads and waits on the objects of one namespace."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.api = cluster.api_client
        self.namespace = namespace

    def apply(self, manifest: dict[str, Any]) -> None:
        apply_manifest(self.api, manifest, namespace=self.namespace, field_manager="test")

    def apply_with_this_crd(self, manifest: dict[str, Any]) -> None:
        """Apply a ModelDeployment right after this tree's CRD: the cluster is shared by checkouts whose CRDs
        differ (and `helm install` never upgrades a CRD), so the installed one may lack the fields it uses."""
        from tests.support.cluster import install_this_crd

        install_this_crd(self.api)
        self.apply(manifest)

    def get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        return get_object(self.api, api_version, kind, name, self.namespace)

    def mdep(self, name: str) -> dict[str, Any]:
        found = self.get(f"{GROUP}/{VERSION}", "ModelDeployment", name)
        assert found is not None
        return found

    def wait_mdep(
        self,
        name: str,
        check: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 60,
        interval: float = 0.2,
    ) -> dict[str, Any]:
        """Wait until the ModelDeployment passes `check`; return it as it was then."""

        def reached() -> dict[str, Any] | None:
            found = self.get(f"{GROUP}/{VERSION}", "ModelDeployment", name)
            return found if found is not None and check(found) else None

        return wait_until(reached, timeout=timeout, description=f"{name}: {what}", interval=interval)

    def wait_gone(self, api_version: str, kind: str, name: str, timeout: float = 30) -> None:
        """Wait until the object no longer exists (deletion is in the background)."""
        wait_until(
            lambda: self.get(api_version, kind, name) is None, timeout=timeout, description=f"{kind} {name} gone"
        )

    def list_of(self, api_version: str, kind: str, label_selector: str) -> list[dict[str, Any]]:
        return list_objects(self.api, api_version, kind, self.namespace, label_selector)

    def names(self, api_version: str, kind: str, label_selector: str) -> list[str]:
        return sorted(item["metadata"]["name"] for item in self.list_of(api_version, kind, label_selector))

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.get("apps/v1", "Deployment", name)

    def events(self, name: str) -> list[dict[str, Any]]:
        listed = client.CoreV1Api(self.api).list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        return [{"reason": event.reason, "type": event.type, "message": event.message} for event in listed.items]

    def wait_event(self, name: str, reason: str, timeout: float = 30) -> dict[str, Any]:
        """The first Event of `reason` about `name`, once there is one: Kopf posts the operator's Events from a
        queue, so one may come after the status written with it."""
        return wait_until(
            lambda: next((event for event in self.events(name) if event["reason"] == reason), None),
            timeout=timeout,
            description=f"a {reason} Event about {name}",
        )

    def delete_mdep(self, name: str) -> None:
        client.CustomObjectsApi(self.api).delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

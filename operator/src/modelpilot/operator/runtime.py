"""Process-wide state of the operator: the API clients and the wake-up events of each resource."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from modelpilot.operator.analysis import Prometheus
from modelpilot.operator.kubeapi import KubeApi
from modelpilot.operator.owned import AppliedMemory
from modelpilot.operator.registry import Credentials, MlflowRegistry
from modelpilot.operator.settings import OperatorSettings
from modelpilot.operator.spec import ModelDeploymentSpec, parse_duration


@dataclass
class Runtime:
    """Shared by every handler of one operator process."""

    settings: OperatorSettings
    kube: KubeApi
    registries: dict[tuple[str, Credentials], MlflowRegistry] = field(default_factory=dict)
    wakeups: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    models: dict[tuple[str, str], str] = field(default_factory=dict)
    applied: AppliedMemory = field(default_factory=AppliedMemory)
    prometheus: Prometheus = field(default_factory=Prometheus)

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

    def wakeup(self, namespace: str, name: str) -> asyncio.Event:
        """The event that cuts short the wait of a resource's reconcile loop."""
        return self.wakeups.setdefault((namespace, name), asyncio.Event())

    def wake(self, namespace: str, name: str) -> None:
        """Reconcile a resource now instead of at its next poll."""
        self.wakeup(namespace, name).set()

    def forget(self, namespace: str, name: str) -> None:
        """Drop the state of a deleted resource."""
        self.wakeups.pop((namespace, name), None)
        self.failures.pop((namespace, name), None)
        self.models.pop((namespace, name), None)
        self.applied.forget(namespace, name)

    def serves(self, namespace: str, name: str, model_name: str) -> None:
        """Remember which registered model a resource serves, so registry webhooks can wake it."""
        self.models[(namespace, name)] = model_name

    async def wake_model(self, model_name: str, event: str) -> None:
        """Wake every resource that serves `model_name` (a registry webhook arrived)."""
        for (namespace, name), served in list(self.models.items()):
            if served == model_name:
                self.wake(namespace, name)

    async def aclose(self) -> None:
        """Close every pooled client."""
        for registry in self.registries.values():
            await registry.aclose()
        self.registries.clear()
        await self.prometheus.aclose()


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

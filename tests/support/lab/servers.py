"""One real inference server per serving Deployment, following the Deployment's version.

Pods are simulated (kwok), so the lab serves each Deployment beside the cluster: a `modelpilot-serve`
process on 127.0.0.1 with the environment of the Deployment's container, its prediction and metrics
ports chosen free (a pod's fixed ports would collide on loopback). A new version gets a new process;
the old one keeps serving until the new one is ready (as a rolling update keeps old pods), and a
Deployment that goes takes its server with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.lab.pool import WarmServerPool
from tests.support.processes import free_port, stop

logger = logging.getLogger(__name__)

TRACK_LABEL = "modelpilot.io/track"
VERSION_LABEL = "modelpilot.io/version"
# What the lab sets regardless of the Deployment: loopback, a light footprint, quick shutdown, and the
# system temp dir for bulk-upload spools (the pod's spool volume is not mounted here).
LAB_SERVER_ENV = {
    "MODELPILOT_HOST": "127.0.0.1",
    "MODELPILOT_SPOOL_DIR": "",
    "MODELPILOT_TORCH_THREADS": "1",
    "MODELPILOT_ACCESS_LOG": "false",
    "MODELPILOT_GRACEFUL_SHUTDOWN_SECONDS": "1",
    "MODELPILOT_LOAD_RETRY_SECONDS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}


@dataclass(frozen=True)
class DeploymentView:
    """What the lab needs of a serving Deployment."""

    name: str
    track: str
    version: str
    env: dict[str, str]
    ready_replicas: int


def deployment_view(obj: Mapping[str, Any]) -> DeploymentView | None:
    """The view of a Deployment built by the operator; None for one without track and version labels."""
    template = obj["spec"]["template"]
    labels = template["metadata"].get("labels") or {}
    if TRACK_LABEL not in labels or VERSION_LABEL not in labels:
        return None
    containers = template["spec"]["containers"]
    items = containers[0].get("env") or []
    env = {item["name"]: str(item.get("value", "")) for item in items if "valueFrom" not in item}
    return DeploymentView(
        name=obj["metadata"]["name"],
        track=labels[TRACK_LABEL],
        version=labels[VERSION_LABEL],
        env=env,
        ready_replicas=int((obj.get("status") or {}).get("readyReplicas") or 0),
    )


@dataclass
class InferenceServer:
    """A server process serving one Deployment at one version."""

    deployment: str
    track: str
    version: str
    port: int
    metrics_port: int
    process: Any  # subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)
    ready_at: float | None = None

    @property
    def url(self) -> str:
        """Base URL on loopback."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """host:port of the prediction port."""
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_address(self) -> str:
        """host:port of the metrics port, as Prometheus targets are written."""
        return f"127.0.0.1:{self.metrics_port}"

    @property
    def alive(self) -> bool:
        """The process has not exited."""
        return bool(self.process.poll() is None)


@dataclass(frozen=True)
class ServerEvent:
    """Something that happened to a server: started, ready, exited, retired."""

    at: float
    what: str
    deployment: str
    version: str


class ServerSupervisor:
    """Starts, swaps and retires servers so that each Deployment has one ready server of its version.

    `active` holds the ready server answering for each Deployment; `pending` the one being started
    for a Deployment's new version. `sync` is called once per poll; servers it retires are returned
    so the caller can stop them after the router no longer sends them anything.
    """

    def __init__(
        self,
        pool: WarmServerPool,
        mlflow_url: str,
        faults: MutableMapping[str, dict[str, str]],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.pool = pool
        self.mlflow_url = mlflow_url
        self.faults = faults
        self.env: Mapping[str, str] = env if env is not None else {}  # extra env of every server
        self.active: dict[str, InferenceServer] = {}
        self.pending: dict[str, InferenceServer] = {}
        self.events: list[ServerEvent] = []

    def _record(self, what: str, server: InferenceServer) -> None:
        self.events.append(ServerEvent(time.monotonic(), what, server.deployment, server.version))
        logger.info("server %s: %s version %s on %s", what, server.deployment, server.version, server.address)

    def _start(self, view: DeploymentView) -> InferenceServer:
        port, metrics_port = free_port(), free_port()
        env = {
            **view.env,
            **LAB_SERVER_ENV,
            "MODELPILOT_PORT": str(port),
            "MODELPILOT_METRICS_PORT": str(metrics_port),
            "MODELPILOT_GRPC_PORT": str(free_port()),
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            **self.env,
            **self.faults.get(view.version, {}),
        }
        started = self.pool.take(env)
        server = InferenceServer(view.name, view.track, view.version, port, metrics_port, started.process, started.log)
        self._record("started", server)
        return server

    async def sync(self, deployments: Sequence[DeploymentView], http: httpx.AsyncClient) -> list[InferenceServer]:
        """Bring servers in line with `deployments`; return the servers to stop once traffic has moved."""
        retired: list[InferenceServer] = []
        wanted = {view.name: view for view in deployments}
        for name in list(self.active) + list(self.pending):
            if name not in wanted:
                for table in (self.active, self.pending):
                    if name in table:
                        retired.append(table.pop(name))
        for view in deployments:
            retired += await self._sync_one(view, http)
        for server in retired:
            self._record("retired", server)
        return retired

    async def _sync_one(self, view: DeploymentView, http: httpx.AsyncClient) -> list[InferenceServer]:
        retired: list[InferenceServer] = []
        active = self.active.get(view.name)
        if active is not None and not active.alive:
            self._record("exited", active)
            del self.active[view.name]
            active = None
        if active is not None and active.version == view.version:
            stale = self.pending.pop(view.name, None)
            return [stale] if stale is not None else []
        pending = self.pending.get(view.name)
        if pending is not None and (pending.version != view.version or not pending.alive):
            retired.append(self.pending.pop(view.name))
            pending = None
        if pending is None:
            self.pending[view.name] = self._start(view)
            return retired
        if await _is_ready(http, pending):
            pending.ready_at = time.monotonic()
            self._record("ready", pending)
            if active is not None:
                retired.append(active)
            self.active[view.name] = self.pending.pop(view.name)
        return retired

    def running(self) -> list[InferenceServer]:
        """Every live server, active or still starting."""
        return [server for server in [*self.active.values(), *self.pending.values()] if server.alive]

    def serving(self, deployment: str) -> InferenceServer | None:
        """The ready server answering for `deployment`, if any."""
        server = self.active.get(deployment)
        return server if server is not None and server.alive else None

    def stop_all(self) -> None:
        """Stop every server (at the end of the lab)."""
        for server in [*self.active.values(), *self.pending.values()]:
            stop(server.process, grace=3.0)
        self.active.clear()
        self.pending.clear()


async def _is_ready(http: httpx.AsyncClient, server: InferenceServer) -> bool:
    if not server.alive:
        return False
    try:
        response = await http.get(f"{server.url}/readyz", timeout=0.5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200

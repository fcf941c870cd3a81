"""The lab: real serving, routing, load and metrics beside a kwok cluster, for one ModelDeployment.

    with running_lab(LabSettings(kubeconfig, namespace, "fraud", mlflow_url, root)) as lab:
        lab.faults["2"] = {"MODELPILOT_FAULT_ERROR_RATE": "0.2"}     # before version 2 is served
        lab.server_env["MODELPILOT_PREDLOG_DSN"] = dsn               # every server, e.g. the prediction log
        ... apply the ModelDeployment with analysis.prometheus = lab.prometheus_url ...
        load = lab.start_load(rate=20, seconds=120)                  # /invocations to lab.url
        ... set the candidate alias, wait for the outcome ...
        load.stop(); lab.observations                                # every split the splitter applied

Every `poll_seconds` the lab reads the resource's serving Deployments and its router (HTTPRoute, or
the ready replicas of both tracks), brings the real servers in line (`servers.ServerSupervisor`),
hands the split to the splitter, points Prometheus at the live servers' metrics ports and releases the
pods whose server is ready (`admission`). All of it runs on one asyncio loop in a background thread,
so the caller's thread stays free to drive the scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
from aiohttp import web
from kubernetes import client

from modelpilot.operator.builders.common import label_value
from tests.support.cluster import apply_manifest, get_object, list_objects, new_api_client, wait_until
from tests.support.lab import admission
from tests.support.lab.load import LabelledTraffic, LoadReport, generate_load
from tests.support.lab.model import invocation_body
from tests.support.lab.pool import WarmServerPool
from tests.support.lab.routes import RouteTable, table_from_httproute, table_from_ready_replicas
from tests.support.lab.servers import DeploymentView, InferenceServer, ServerSupervisor, deployment_view
from tests.support.lab.splitter import SplitObservation, TrafficSplitter
from tests.support.processes import free_port, stop
from tests.support.prometheus import PrometheusServer, prometheus_server

logger = logging.getLogger(__name__)
T = TypeVar("T")

HTTPROUTE_API = "gateway.networking.k8s.io/v1"


@dataclass(frozen=True)
class LabSettings:
    """Where the lab runs and what it serves."""

    kubeconfig: Path
    namespace: str
    resource: str  # the ModelDeployment's name
    mlflow_url: str  # what the servers load models from (loopback)
    root: Path  # logs and Prometheus data
    router: Literal["gateway", "replicas"] = "gateway"
    seed: int = 0
    poll_seconds: float = 0.5
    # A serving pod turns Ready no sooner than this after it was created, as a real container takes its
    # time to start even when its model server is already up.
    pod_start_seconds: float = 0.0


class LoadRun:
    """A load generator running in the lab's loop."""

    def __init__(self, lab: Lab, future: Future[LoadReport], stop_event: asyncio.Event, report: LoadReport) -> None:
        self._lab = lab
        self._future = future
        self._stop = stop_event
        self.report = report  # live: counts grow while it runs

    def stop(self, timeout: float = 40.0) -> LoadReport:
        """Stop sending, wait for the requests in flight, return the report."""
        self._lab.loop.call_soon_threadsafe(self._stop.set)
        return self._future.result(timeout)


class Lab:
    """A running lab; create it with `running_lab`."""

    def __init__(self, settings: LabSettings, pool: WarmServerPool) -> None:
        self.settings = settings
        self.faults: dict[str, dict[str, str]] = {}  # model version → extra server env (fault knobs)
        # Extra env of every server started from now on: what the pod would get from a Secret (valueFrom
        # entries are not read), e.g. MODELPILOT_PREDLOG_DSN. `faults` wins over it.
        self.server_env: dict[str, str] = {}
        self.api_client = new_api_client(settings.kubeconfig)
        self.resource_label = label_value(settings.resource)
        self.stable_backend = f"{settings.resource}-stable"
        self.canary_backend = f"{settings.resource}-canary"
        self.supervisor = ServerSupervisor(pool, settings.mlflow_url, self.faults, self.server_env)
        self.splitter = TrafficSplitter(self.stable_backend, self.canary_backend, lambda name: None, seed=settings.seed)
        self.url = f"http://127.0.0.1:{free_port()}"
        self.prometheus_port = free_port()
        self.prometheus_url = f"http://127.0.0.1:{self.prometheus_port}"
        self.poll_errors = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="modelpilot-lab", daemon=True)
        self._prometheus: PrometheusServer | None = None
        self._prometheus_stack = ExitStack()
        self._targets: list[str] = []
        self._runners: list[web.AppRunner] = []
        self._stopping: set[asyncio.Task[Any]] = set()
        self._poll_task: asyncio.Task[None] | None = None
        self._loads: list[LoadRun] = []
        self._http: httpx.AsyncClient | None = None
        self._webhook_name = f"modelpilot-lab-{settings.namespace}-{self.resource_label}"[:253]

    # -- what tests use -------------------------------------------------------------------------

    @property
    def observations(self) -> list[SplitObservation]:
        """Every split the splitter applied, in order."""
        return list(self.splitter.observations)

    def serving(self, track: str) -> InferenceServer | None:
        """The ready server of a track, if any."""
        return self.supervisor.serving(f"{self.settings.resource}-{track}")

    def start_load(
        self,
        rate: float,
        seconds: float,
        headers: dict[str, str] | None = None,
        labelled: LabelledTraffic | None = None,
    ) -> LoadRun:
        """Send `rate` /invocations requests a second to the splitter for at most `seconds` (with `labelled`:
        its rows, request ids and, later, their labels — see `load.LabelledTraffic`)."""
        report = LoadReport()
        stop_event = asyncio.Event()
        coroutine = generate_load(
            f"{self.url}/invocations",
            invocation_body(),
            rate=rate,
            seconds=seconds,
            stop=stop_event,
            report=report,
            headers=headers,
            labelled=labelled,
        )
        run = LoadRun(self, asyncio.run_coroutine_threadsafe(coroutine, self.loop), stop_event, report)
        self._loads.append(run)
        return run

    def start_prometheus(self) -> None:
        """Start (or restart, same port and data) the lab's Prometheus, scraping the live servers."""
        if self._prometheus is not None:
            return
        self._prometheus = self._prometheus_stack.enter_context(
            prometheus_server(
                self.settings.root / "prometheus",
                self._targets,
                port=self.prometheus_port,
                labels={"namespace": self.settings.namespace},  # as pod discovery labels the pods
            )
        )

    def stop_prometheus(self) -> None:
        """Stop Prometheus (an outage, as far as the operator can tell)."""
        self._prometheus = None
        self._prometheus_stack.close()

    def wait_serving(self, track: str, version: str, timeout: float = 90.0) -> InferenceServer:
        """Wait until a ready server of `version` answers for the track."""

        def found() -> InferenceServer | None:
            server = self.serving(track)
            return server if server is not None and server.version == version else None

        return wait_until(found, timeout=timeout, description=f"lab server of {track} at version {version}")

    def wait_for_split(
        self, check: Callable[[SplitObservation], bool], description: str, timeout: float = 30.0
    ) -> SplitObservation:
        """Wait until the split the splitter applies passes `check`; return it."""

        def current() -> SplitObservation | None:
            observations = self.splitter.observations
            return observations[-1] if observations and check(observations[-1]) else None

        return wait_until(current, timeout=timeout, description=f"lab split: {description}")

    # -- the loop -------------------------------------------------------------------------------

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run a coroutine on the lab's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def _read_deployments(self) -> list[DeploymentView]:
        selector = f"modelpilot.io/deployment={self.resource_label},modelpilot.io/track"
        listed = list_objects(self.api_client, "apps/v1", "Deployment", self.settings.namespace, selector)
        views = [deployment_view(item) for item in listed if not item["metadata"].get("deletionTimestamp")]
        return [view for view in views if view is not None]

    def _read_table(self, deployments: list[DeploymentView]) -> RouteTable:
        if self.settings.router == "replicas":
            # The shared Service selects one track (weight 0 or 100) or both: only its pods get traffic.
            service = get_object(self.api_client, "v1", "Service", self.settings.resource, self.settings.namespace)
            selected = ((service or {}).get("spec") or {}).get("selector") or {}
            track = selected.get("modelpilot.io/track")
            ready = {view.name: view.ready_replicas for view in deployments if track in (None, view.track)}
            return table_from_ready_replicas(ready)
        route = get_object(self.api_client, HTTPROUTE_API, "HTTPRoute", self.settings.resource, self.settings.namespace)
        return table_from_httproute(route)

    def _release_pods(self) -> None:
        selector = f"modelpilot.io/deployment={self.resource_label}"
        core = client.CoreV1Api(self.api_client)
        for pod in list_objects(self.api_client, "v1", "Pod", self.settings.namespace, selector):
            metadata = pod["metadata"]
            annotations, labels = metadata.get("annotations") or {}, metadata.get("labels") or {}
            if annotations.get(admission.UNREADY_ANNOTATION) != "true" or metadata.get("deletionTimestamp"):
                continue
            if self._starting(metadata.get("creationTimestamp")):
                continue
            server = self.serving(labels.get("modelpilot.io/track", ""))
            if server is not None and label_value(server.version) == labels.get("modelpilot.io/version"):
                with contextlib.suppress(client.ApiException):  # the pod may be gone already
                    core.patch_namespaced_pod(metadata["name"], self.settings.namespace, admission.release_patch())

    def _starting(self, created: str | None) -> bool:
        if not self.settings.pod_start_seconds or not created:
            return False
        age = datetime.datetime.now(datetime.UTC) - datetime.datetime.fromisoformat(created)
        return age.total_seconds() < self.settings.pod_start_seconds

    def _point_prometheus(self) -> None:
        targets = sorted(server.metrics_address for server in self.supervisor.running())
        if targets != self._targets:
            self._targets = targets
            prometheus = self._prometheus
            if prometheus is not None:
                prometheus.set_targets(targets)

    async def _poll_once(self) -> None:
        assert self._http is not None
        # Deployments before the route: the operator sets weight 0 before it deletes a canary, so a
        # canary Deployment seen gone means the route read after it already has no weight on it.
        deployments = await asyncio.to_thread(self._read_deployments)
        table = await asyncio.to_thread(self._read_table, deployments)
        retired = await self.supervisor.sync(deployments, self._http)
        self.splitter.serving = dict(self.supervisor.active).get
        self.splitter.update(table)
        for server in retired:  # only now does no new request go to them
            task = asyncio.create_task(self._retire(server))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        self._point_prometheus()
        await asyncio.to_thread(self._release_pods)

    async def _retire(self, server: InferenceServer) -> None:
        # Requests already placed on it are answered first: a draining server answers new ones 503.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self.splitter.drained(server)
        await asyncio.to_thread(stop, server.process, 3.0)

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self._poll_once()
            except Exception:  # an API hiccup must not end the lab; the next poll retries
                self.poll_errors += 1
                logger.exception("lab poll failed")
            await asyncio.sleep(self.settings.poll_seconds)

    async def _start_servers(self) -> int:
        self._http = httpx.AsyncClient()
        splitter = await self.splitter.start()
        await web.TCPSite(splitter, "127.0.0.1", int(self.url.rsplit(":", 1)[1])).start()
        gate = web.AppRunner(admission.webhook_app(), access_log=None)
        await gate.setup()
        gate_port = free_port()
        certificate = admission.self_signed_for_loopback()
        self._certificate = certificate
        ssl_context = admission.server_ssl_context(certificate)
        await web.TCPSite(gate, "127.0.0.1", gate_port, ssl_context=ssl_context).start()
        self._runners = [splitter, gate]
        self._poll_task = asyncio.create_task(self._poll_forever())
        return gate_port

    async def _stop_servers(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
        for runner in self._runners:
            await runner.cleanup()
        await self.splitter.close()
        if self._stopping:
            await asyncio.wait(self._stopping, timeout=15)
        if self._http is not None:
            await self._http.aclose()

    def _install_gate(self, port: int) -> None:
        namespace = get_object(self.api_client, "v1", "Namespace", self.settings.namespace)
        assert namespace is not None, f"namespace {self.settings.namespace} does not exist"
        body = admission.webhook_configuration(
            self._webhook_name,
            self.settings.namespace,
            namespace["metadata"]["uid"],
            self.resource_label,
            port,
            self._certificate.cert_pem,
        )
        apply_manifest(self.api_client, body, field_manager="modelpilot-lab")
        core = client.CoreV1Api(self.api_client)
        wait_until(
            lambda: admission.webhook_in_force(core, self.settings.namespace, self.resource_label),
            timeout=30,
            interval=0.2,
            description="the lab's pod admission webhook in force",
        )

    def _remove_gate(self) -> None:
        with contextlib.suppress(client.ApiException):
            client.AdmissionregistrationV1Api(self.api_client).delete_mutating_webhook_configuration(self._webhook_name)

    def open(self) -> None:
        """Start everything; `close` undoes it."""
        self._thread.start()
        gate_port = self.call(self._start_servers())
        self._install_gate(gate_port)
        self.start_prometheus()

    def close(self) -> None:
        """Stop load, polling, servers, Prometheus; remove the admission webhook."""
        for run in self._loads:
            with contextlib.suppress(Exception):
                run.stop(timeout=40)
        self._remove_gate()
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.call(self._stop_servers(), timeout=60)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        self.supervisor.stop_all()
        self.stop_prometheus()
        self.api_client.close()  # type: ignore[no-untyped-call]


@contextmanager
def running_lab(settings: LabSettings, pool: WarmServerPool | None = None) -> Iterator[Lab]:
    """A running lab for `settings`; with no `pool`, the lab keeps its own warm servers."""
    with ExitStack() as stack:
        if pool is None:
            pool = WarmServerPool(settings.root / "servers")
            stack.callback(pool.close)
        lab = Lab(settings, pool)
        stack.callback(lab.close)
        lab.open()
        yield lab

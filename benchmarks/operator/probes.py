"""The operator benchmark's instruments: Prometheus counters, a Deployment watch (processes: `benchmarks.processes`)."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from kubernetes import client, watch

from benchmarks.processes import process_tree, rss_bytes

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def load_average() -> tuple[float, float, float]:
    """The machine's 1, 5 and 15 minute load averages."""
    return os.getloadavg()


@dataclass
class RssSampler:
    """Samples the RSS of named process trees once a second in a thread and keeps each one's peak."""

    roots: Mapping[str, int]
    interval: float = 1.0
    peaks: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> dict[str, int]:
        """RSS of each tree now, in bytes; peaks are updated too."""
        now = {name: rss_bytes(process_tree(pid)) for name, pid in self.roots.items()}
        for name, value in now.items():
            self.peaks[name] = max(self.peaks.get(name, 0), value)
        return now

    def start(self) -> None:
        """Sample in the background until `stop`."""
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the background sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


# -- Prometheus text ------------------------------------------------------------------------------


def parse_samples(text: str, prefixes: tuple[str, ...]) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample whose name starts with one of `prefixes`."""
    samples = []
    for line in text.splitlines():
        if not line.startswith(prefixes):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match.group("labels") or ""))
        samples.append((match.group("name"), labels, float(match.group("value"))))
    return samples


@dataclass(frozen=True)
class OperatorCounters:
    """Cumulative counters of the operator process at one moment."""

    reconciles: float
    reconcile_seconds: float
    registry_reads: float
    kube_requests: dict[str, float] = field(default_factory=dict)  # "verb Kind" → requests of the operator's client
    shared_reads: float = 0.0  # resolves answered by another resource's read of the same model

    @property
    def resolves(self) -> float:
        """Registry model reads asked for: one near the start of each reconciliation, shared or not."""
        return self.registry_reads + self.shared_reads

    def minus(self, earlier: OperatorCounters) -> OperatorCounters:
        """What happened between `earlier` and this reading."""
        return OperatorCounters(
            self.reconciles - earlier.reconciles,
            self.reconcile_seconds - earlier.reconcile_seconds,
            self.registry_reads - earlier.registry_reads,
            {
                key: value - earlier.kube_requests.get(key, 0.0)
                for key, value in self.kube_requests.items()
                if value > earlier.kube_requests.get(key, 0.0)
            },
            self.shared_reads - earlier.shared_reads,
        )


def read_operator_counters(metrics_url: str) -> OperatorCounters:
    """Reconciliations (all results), their total wall time, registry model reads (those made and those
    shared) and the operator's own Kubernetes requests, from /metrics."""
    text = httpx.get(metrics_url, timeout=10).text
    reconciles = seconds = reads = shared = 0.0
    requests: dict[str, float] = {}
    for name, labels, value in parse_samples(text, ("modelpilot_operator_",)):
        if name == "modelpilot_operator_reconciles_total":
            reconciles += value
        elif name == "modelpilot_operator_reconcile_duration_seconds_sum":
            seconds += value
        elif name == "modelpilot_operator_registry_request_duration_seconds_count" and labels.get("operation") == "get":
            reads += value
        elif name == "modelpilot_operator_registry_shared_reads_total":
            shared += value
        elif name == "modelpilot_operator_kube_requests_total":
            key = f"{labels.get('verb', '?')} {labels.get('kind', '?')}"
            requests[key] = requests.get(key, 0.0) + value
    return OperatorCounters(reconciles, seconds, reads, requests, shared)


def read_apiserver_requests(api_client: client.ApiClient) -> dict[str, float]:
    """`apiserver_request_total` summed by "VERB resource" (every client of the API server counts)."""
    serialized = api_client.param_serialize(
        method="GET", resource_path="/metrics", header_params={"Accept": "text/plain"}, auth_settings=["BearerToken"]
    )
    response = api_client.call_api(*serialized)
    text = response.read().decode()  # type: ignore[no-untyped-call]
    totals: dict[str, float] = {}
    for _, labels, value in parse_samples(text, ("apiserver_request_total{",)):
        subresource = f"/{labels['subresource']}" if labels.get("subresource") else ""
        key = f"{labels.get('verb', '?')} {labels.get('resource', '?')}{subresource}"
        totals[key] = totals.get(key, 0.0) + value
    return totals


# -- Deployments ----------------------------------------------------------------------------------


class DeploymentWatcher:
    """Records when each Deployment of a namespace is first seen, from a watch (list, then watch from there)."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self._apps = client.AppsV1Api(api_client)
        self._namespace = namespace
        self._seen: dict[str, float] = {}
        self._changed = threading.Condition()
        self._stopped = threading.Event()

    def start(self) -> None:
        """Start watching; returns once the first list is in, so nothing created later is missed."""
        resource_version = self._list()
        threading.Thread(target=self._run, args=(resource_version,), name="deployment-watch", daemon=True).start()

    def stop(self) -> None:
        """Stop at the next event or watch timeout (the thread is a daemon and never blocks exit)."""
        self._stopped.set()

    def seen_at(self, name: str) -> float | None:
        """`time.monotonic()` when Deployment `name` was first seen."""
        with self._changed:
            return self._seen.get(name)

    def wait_for(self, names: Iterable[str], timeout: float) -> set[str]:
        """Wait until every Deployment in `names` was seen; return those still missing after `timeout`."""
        wanted = set(names)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                missing = wanted - self._seen.keys()
                remaining = deadline - time.monotonic()
                if not missing or remaining <= 0:
                    return missing
                self._changed.wait(remaining)

    def _record(self, names: Iterable[str], at: float) -> None:
        with self._changed:
            for name in names:
                self._seen.setdefault(name, at)
            self._changed.notify_all()

    def _list(self) -> str:
        response: Any = self._apps.list_namespaced_deployment(self._namespace, _preload_content=False)
        body = json.loads(response.data)
        self._record((item["metadata"]["name"] for item in body["items"]), time.monotonic())
        return str(body["metadata"]["resourceVersion"])

    def _run(self, resource_version: str) -> None:
        while not self._stopped.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self._apps.list_namespaced_deployment,
                    self._namespace,
                    resource_version=resource_version,
                    timeout_seconds=30,
                    deserialize=False,
                ):
                    arrived = time.monotonic()
                    obj = event.get("object") or {}
                    if event.get("type") == "ADDED":
                        self._record([obj["metadata"]["name"]], arrived)
                    resource_version = obj.get("metadata", {}).get("resourceVersion", resource_version)
                    if self._stopped.is_set():
                        stream.stop()  # type: ignore[no-untyped-call]
            except Exception:  # any failure of the stream is recovered the same way
                # Expired resource version (410) or a dropped connection: list again and watch from there.
                if not self._stopped.is_set():
                    time.sleep(0.5)
                    resource_version = self._list()

"""A metrics exporter with the inference server's metric names and traffic the tests choose, scraped
by a real Prometheus once per second."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from tests.support.processes import free_port
from tests.support.prometheus import PrometheusServer, prometheus_server

MODEL = "fraud"
WINDOW = "5s"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TICK_SECONDS = 0.1


@dataclass(frozen=True)
class Traffic:
    """Steady traffic of one track and version: requests per second, 5xx share, latency, route."""

    track: str
    version: str
    per_second: float
    error_share: float = 0.0
    latency_seconds: float = 0.02
    route: str = "/v1/models/{name}/predict"


# One version per scenario, all served at once so one Prometheus answers every test.
PROFILES = {
    "healthy": Traffic("canary", "2", 40),
    "errors": Traffic("canary", "3", 40, error_share=0.2),
    "slow": Traffic("canary", "4", 40, latency_seconds=0.4),
    # Only kubelet probes reach this canary: that is no traffic.
    "probes-only": Traffic("canary", "5", 40, route="/readyz"),
    "stable": Traffic("stable", "1", 40, error_share=0.005),
}


class Exporter:
    """prometheus_client metrics on loopback, fed by a thread that replays the profiles."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "modelpilot_http_requests",
            "HTTP requests",
            ["route", "code", "model", "version", "track"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelpilot_http_request_duration_seconds",
            "HTTP latency",
            ["route", "model", "version", "track"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.port = free_port()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._replay, daemon=True)

    def start(self) -> None:
        server, _ = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self._server = server
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._server.shutdown()

    def _replay(self) -> None:
        # Counts follow the wall clock, not the number of ticks, so a busy machine keeps the rates exact.
        carry = dict.fromkeys(PROFILES, 0.0)
        last = time.monotonic()
        while not self._stopped.wait(TICK_SECONDS):
            now = time.monotonic()
            elapsed, last = now - last, now
            for name, traffic in PROFILES.items():
                count = traffic.per_second * elapsed
                labels = {"route": traffic.route, "model": MODEL, "version": traffic.version, "track": traffic.track}
                self.requests.labels(code="200", **labels).inc(count * (1 - traffic.error_share))
                self.requests.labels(code="500", **labels).inc(count * traffic.error_share)
                carry[name] += count
                whole = int(carry[name])
                carry[name] -= whole
                for _ in range(whole):
                    self.latency.labels(**labels).observe(traffic.latency_seconds)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Prometheus scraping the exporter, returned once the window holds data for every profile."""
    exporter = Exporter()
    exporter.start()
    try:
        with prometheus_server(
            Path(tmp_path_factory.mktemp("prometheus")), [f"127.0.0.1:{exporter.port}"], labels={"namespace": "ml"}
        ) as server:
            server.wait_for_targets(1)
            deadline = time.monotonic() + 60
            # A full window of scrapes, so increase() over it is not a partial extrapolation.
            query = f"count_over_time(up[{WINDOW}])"
            while time.monotonic() < deadline:
                result = server.query(query)
                if result and float(result[0]["value"][1]) >= 5:  # type: ignore[index]
                    break
                time.sleep(0.25)
            else:
                raise TimeoutError(f"no full {WINDOW} window of scrapes after 60s")
            yield server
    finally:
        exporter.stop()

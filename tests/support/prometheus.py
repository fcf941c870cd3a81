"""A real Prometheus (Debian's `prometheus` binary) on loopback, scraping targets the test chooses.

    with prometheus_server(tmp_path, targets=["127.0.0.1:9101"]) as prometheus:
        prometheus.wait_for_targets(1)
        ... httpx.get(f"{prometheus.url}/api/v1/query", params={"query": "up"}) ...
        prometheus.set_targets(["127.0.0.1:9101", "127.0.0.1:9102"])   # file-based discovery, no restart
        prometheus.stop()                                              # e.g. to test an outage

Targets come from a file_sd file, so servers started after Prometheus can be added. The scrape interval
is short (1 s by default) so rate() windows of a few seconds have data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.processes import free_port, running, stop

DEBIAN_BINARY = Path("/usr/bin/prometheus")


def prometheus_binary() -> str:
    """The prometheus executable on PATH or at /usr/bin; a clear error when it is not installed."""
    found = shutil.which("prometheus") or (str(DEBIAN_BINARY) if DEBIAN_BINARY.exists() else None)
    if found is None:
        raise RuntimeError(
            "prometheus is not installed: run `apt-get update && apt-get install -y prometheus` "
            "(the tests start the binary themselves; the packaged service is not needed)"
        )
    return found


@dataclass
class PrometheusServer:
    """A running Prometheus: where it listens and how to change what it scrapes."""

    url: str
    port: int
    root: Path
    targets_file: Path
    process: subprocess.Popen[bytes]
    labels: dict[str, str] = field(default_factory=dict)

    def set_targets(self, targets: Sequence[str], labels: Mapping[str, str] | None = None) -> None:
        """Scrape exactly `targets` (host:port) from now on, each with `labels` added (default: the labels
        the server was started with)."""
        _write_targets(self.targets_file, targets, self.labels if labels is None else labels)

    def query(self, promql: str) -> list[dict[str, object]]:
        """The result list of an instant query."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        response.raise_for_status()
        result: list[dict[str, object]] = response.json()["data"]["result"]
        return result

    def wait_for_targets(self, count: int, timeout: float = 30.0) -> None:
        """Block until `count` targets are up (scraped successfully at least once)."""
        deadline = time.monotonic() + timeout
        up = 0
        while time.monotonic() < deadline:
            up = len(self.query("up == 1"))
            if up >= count:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{up} of {count} targets up after {timeout}s; see {self.root / 'prometheus.log'}")

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        stop(self.process)


def _write_targets(path: Path, targets: Sequence[str], labels: Mapping[str, str] | None = None) -> None:
    group = [{"targets": list(targets), "labels": dict(labels or {})}] if targets else []
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(group))
    os.replace(partial, path)  # atomic: Prometheus never reads a half-written file


@contextmanager
def prometheus_server(
    root: Path,
    targets: Sequence[str] = (),
    *,
    scrape_interval: str = "1s",
    rule_files: Sequence[Path] = (),
    port: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> Iterator[PrometheusServer]:
    """Start Prometheus with its config and data under `root`; stop it on exit. `labels` go on every
    target, as service discovery labels a pod (e.g. its `namespace`)."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    targets_file = root / "targets.json"
    _write_targets(targets_file, targets, labels)
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": "modelpilot",
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}],
            }
        ],
    }
    # JSON is YAML: no YAML writer needed.
    (root / "prometheus.yml").write_text(json.dumps(config, indent=2))
    args = [
        prometheus_binary(),
        f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1d",
    ]
    url = f"http://127.0.0.1:{port}"
    with running(args, log=root / "prometheus.log", ready_url=f"{url}/-/ready", timeout=60) as process:
        yield PrometheusServer(
            url=url, port=port, root=root, targets_file=targets_file, process=process, labels=dict(labels or {})
        )

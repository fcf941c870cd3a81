"""Benchmark: how soon a rollout starts after the candidate alias is set (registry webhook vs poll), and
how long whole rollouts take against their configured steps x interval.

Runs the real operator (with its webhook receiver), a real `mlflow server`, and the rollout lab (real
inference servers, splitter, 20 requests/s of load, Prometheus) beside the local control plane
(`hack/cluster up`), all on 127.0.0.1. Stops by itself and removes what it created. From the
repository root:

    python -m benchmarks.rollout.run --samples 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import secrets
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from benchmarks.rollout.route_watch import RouteWatcher
from modelpilot.operator.crd import build_crd
from modelpilot.operator.spec import GROUP, VERSION
from modelpilot.operator.webhooks import DEFAULT_PATH
from tests.support.cluster import (
    Cluster,
    apply_manifest,
    create_namespace,
    delete_namespace,
    get_object,
    start_cluster,
    wait_for_condition,
    wait_until,
)
from tests.support.lab import (
    Lab,
    LabSettings,
    LoggedClassifier,
    install_gateway_api_crds,
    log_classifier,
    register_versions,
    running_lab,
)
from tests.support.mlflow_server import MLFLOW_ENV, mlflow_server
from tests.support.operator_process import operator_process
from tests.support.processes import free_port

RESOURCE = "bench"
CANDIDATE = "challenger"
# (steps, interval) of the whole-rollout runs.
ROLLOUTS: list[tuple[tuple[int, ...], str]] = [((50, 100), "2s"), ((25, 50, 100), "3s"), ((10, 25, 50, 100), "4s")]


@dataclass(frozen=True)
class RolloutTiming:
    """One promoted rollout."""

    steps: tuple[int, ...]
    interval_seconds: float
    configured_seconds: float  # steps x interval
    total_seconds: float  # alias set → status Succeeded
    operator_seconds: float  # RolloutStarted → Promoted, as the operator measured it
    first_weight_seconds: float  # alias set → the splitter first sends the canary traffic
    step_seconds: list[float]  # how long each step below 100 % carried its weight (the splitter's view)
    last_step_seconds: float  # 100 % on the canary → all traffic on the promoted stable track
    analyses_per_step: list[int]  # analyses each step below 100 % took (Inconclusive ones hold it again)
    wake_seconds: list[float]  # operator's clock: a hold's due time → its analysis started
    decide_seconds: list[float]  # operator's clock: the step's last analysis started → the next step decided
    overhead_seconds: list[float]  # per step below 100 %: (carried - analyses x interval) / analyses
    route_overhead_seconds: list[float]  # the same from a watch on the HTTPRoute (the router's own timing)


@dataclass
class Scene:
    """What the measurements act on."""

    cluster: Cluster
    namespace: str
    lab: Lab
    model: str
    registry: MlflowClient
    logged: LoggedClassifier
    tracking_uri: str
    poll_interval: str
    routes: RouteWatcher

    def mdep(self) -> dict[str, Any]:
        found = get_object(self.cluster.api_client, f"{GROUP}/{VERSION}", "ModelDeployment", RESOURCE, self.namespace)
        assert found is not None
        return found

    def canary(self) -> dict[str, Any]:
        return dict((self.mdep().get("status") or {}).get("canary") or {})

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
        wait_until(lambda: check() or None, timeout=timeout, description=what, interval=0.05)

    def apply(self, steps: tuple[int, ...], interval: str) -> None:
        spec = {
            "model": {"name": self.model, "alias": "champion", "candidateAlias": CANDIDATE},
            "registry": {"trackingUri": self.tracking_uri, "pollInterval": self.poll_interval},
            "serving": {"image": "ghcr.io/modelpilot/inference:bench", "replicas": 2},
            "traffic": {"router": "gateway", "gateway": {"parentRefs": [{"name": "public"}]}},
            "rollout": {
                "steps": list(steps),
                "interval": interval,
                "analysis": {
                    "prometheus": self.lab.prometheus_url,
                    "window": "8s",
                    "minRequests": 10,
                    "maxErrorRate": 0.05,
                    # Generous: this measures timing, and a loaded machine's p99 should not roll a version back.
                    "maxP99Latency": "2s",
                },
            },
        }
        manifest = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": RESOURCE},
            "spec": spec,
        }
        apply_manifest(self.cluster.api_client, manifest, namespace=self.namespace, field_manager="bench")


def measure_start(scene: Scene, candidate: str, samples: int, poll_seconds: float) -> list[float]:
    """Seconds from setting the candidate alias to status.canary naming it Progressing, `samples` times."""
    found = []
    for _ in range(samples):
        time.sleep(random.uniform(0.0, poll_seconds))  # start at a random phase of the operator's poll
        scene.registry.set_registered_model_alias(scene.model, CANDIDATE, candidate)
        began = time.monotonic()
        scene.wait(
            lambda: scene.canary().get("version") == candidate and scene.canary().get("state") == "Progressing",
            "rollout started",
        )
        found.append(time.monotonic() - began)
        scene.registry.delete_registered_model_alias(scene.model, CANDIDATE)
        scene.wait(lambda: scene.canary().get("state") == "Idle", "rollout cancelled")
        scene.wait(lambda: scene.lab.serving("canary") is None, "canary server gone")
    return found


def measure_rollout(scene: Scene, steps: tuple[int, ...], interval: str) -> RolloutTiming:
    """Promote a fresh version with `steps` and `interval`; how long it took."""
    (candidate,) = register_versions(scene.logged, scene.model, 1)
    scene.apply(steps, interval)
    time.sleep(1.0)  # the spec edit is seen before the alias moves
    scene.registry.set_registered_model_alias(scene.model, CANDIDATE, candidate)
    began = time.monotonic()
    scene.wait(
        lambda: (
            scene.canary().get("version") == candidate and scene.canary().get("state") in ("Succeeded", "RolledBack")
        ),
        "rollout ended",
        timeout=300,
    )
    total = time.monotonic() - began
    canary = scene.canary()
    if canary["state"] != "Succeeded":
        raise RuntimeError(f"rollout of version {candidate} did not succeed: {canary.get('reason')}")
    history = (scene.mdep().get("status") or {}).get("history") or []
    promoted = next(entry for entry in reversed(history) if entry["event"] == "Promoted")
    operator_seconds = float(promoted["message"].split(" after ")[1].rstrip("s"))
    interval_seconds = float(interval.rstrip("s"))
    scene.lab.wait_for_split(lambda split: split.canary_weight == 0 and split.stable_version == candidate, "on stable")
    # When each weight started to apply, from the splitter's (monotonic, sub-second) record.
    changes: list[tuple[float, int]] = []
    for split in scene.lab.observations:
        if split.at >= began and (not changes or changes[-1][1] != split.canary_weight):
            changes.append((split.at, split.canary_weight))
    ramp = [(at, weight) for at, weight in changes if weight > 0]
    ended = next(at for at, weight in changes if weight == 0 and at > ramp[-1][0])
    held = [later[0] - earlier[0] for earlier, later in itertools.pairwise(ramp)]
    # Each analysis that does not advance holds the step another interval: the overhead is what is left.
    analyses = canary.get("analyses") or []
    per_step = [sum(1 for result in analyses if result["step"] == index) for index in range(len(steps) - 1)]
    overhead = [
        (carried - count * interval_seconds) / count for carried, count in zip(held, per_step, strict=False) if count
    ]
    wake, decide = operator_delays(history, analyses, interval_seconds, len(steps))
    routed = [(at, weight) for at, weight in scene.routes.changes if at >= began and weight > 0]
    route_overhead = [
        (later[0] - earlier[0] - count * interval_seconds) / count
        for (earlier, later), count in zip(itertools.pairwise(routed), per_step, strict=False)
        if count
    ]
    return RolloutTiming(
        steps,
        interval_seconds,
        len(steps) * interval_seconds,
        total,
        operator_seconds,
        first_weight_seconds=ramp[0][0] - began,
        step_seconds=held,
        last_step_seconds=ended - ramp[-1][0],
        analyses_per_step=per_step,
        wake_seconds=wake,
        decide_seconds=decide,
        overhead_seconds=overhead,
        route_overhead_seconds=route_overhead,
    )


def operator_delays(
    history: list[dict[str, Any]], analyses: list[dict[str, Any]], interval: float, steps: int
) -> tuple[list[float], list[float]]:
    """From the status (the operator's clock, ms): hold due → analysis started, for every hold; and a
    step's last analysis → the next step decided, for every step below 100 %."""

    def at(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    started = [at(entry["time"]) for entry in history if entry["event"] == "StepStarted"][-steps:]
    wake: list[float] = []
    decide: list[float] = []
    for index in range(min(steps - 1, len(started) - 1)):
        times = sorted(at(result["time"]) for result in analyses if result["step"] == index)
        if not times:
            continue
        holds = [started[index], *times[:-1]]
        wake += [taken - (held + interval) for held, taken in zip(holds, times, strict=True)]
        decide.append(started[index + 1] - times[-1])
    return wake, decide


@contextmanager
def webhook(registry: MlflowClient, port: int, secret: str) -> Iterator[None]:
    """The operator's receiver registered on the MLflow server for alias events."""
    created = registry.create_webhook(
        name=f"modelpilot-{uuid.uuid4().hex[:6]}",
        url=f"http://127.0.0.1:{port}{DEFAULT_PATH}",
        events=["model_version_alias.created", "model_version_alias.deleted"],
        secret=secret,
    )
    time.sleep(2.0)  # the server caches its webhook list for MLFLOW_WEBHOOK_CACHE_TTL (1 s here)
    try:
        yield
    finally:
        registry.delete_webhook(created.webhook_id)
        time.sleep(2.0)


def summary(values: list[float]) -> str:
    """median (min-max) in seconds."""
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def run(samples: int, poll_interval: str, root: Path, repeat: int = 1) -> dict[str, Any]:
    """Set the scene, take the measurements, tear the scene down."""
    cluster = start_cluster()
    apply_manifest(cluster.api_client, build_crd())
    crd_name = build_crd()["metadata"]["name"]
    wait_for_condition(
        cluster.api_client, "apiextensions.k8s.io/v1", "CustomResourceDefinition", crd_name, condition="Established"
    )
    install_gateway_api_crds(cluster.api_client)
    namespace = create_namespace(cluster.api_client, prefix="bench")
    secret = secrets.token_hex(16)
    webhook_port = free_port()
    with ExitStack() as stack:
        stack.callback(delete_namespace, cluster.api_client, namespace)
        server = stack.enter_context(mlflow_server(root / "mlflow"))
        registry = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        logged = log_classifier(server.url)
        model = f"bench-{uuid.uuid4().hex[:6]}"
        stable, candidate = register_versions(logged, model, 2)
        registry.set_registered_model_alias(model, "champion", stable)
        settings = LabSettings(cluster.kubeconfig, namespace, RESOURCE, server.url, root / "lab")
        lab = stack.enter_context(running_lab(settings))
        stack.enter_context(
            operator_process(
                cluster.kubeconfig,
                namespace,
                root / "operator.log",
                webhook_port=str(webhook_port),
                webhook_secret=secret,
                webhook_host="127.0.0.1",
            )
        )
        routes = RouteWatcher(cluster.api_client, namespace, RESOURCE)
        routes.start()
        stack.callback(routes.stop)
        scene = Scene(cluster, namespace, lab, model, registry, logged, server.url, poll_interval, routes)
        scene.apply(ROLLOUTS[0][0], ROLLOUTS[0][1])
        lab.wait_serving("stable", stable, timeout=120)
        load = lab.start_load(rate=20, seconds=3600)
        poll_seconds = float(poll_interval.rstrip("s"))
        by_poll = measure_start(scene, candidate, samples, poll_seconds)
        with webhook(registry, webhook_port, secret):
            by_webhook = measure_start(scene, candidate, samples, poll_seconds)
            rollouts = [measure_rollout(scene, steps, interval) for _ in range(repeat) for steps, interval in ROLLOUTS]
        report = load.stop()
    return {
        "poll_interval": poll_interval,
        "start_by_poll_seconds": by_poll,
        "start_by_webhook_seconds": by_webhook,
        "rollouts": [asdict(timing) for timing in rollouts],
        "load": {"sent": report.sent, "statuses": dict(report.statuses)},
    }


def render(result: dict[str, Any]) -> str:
    """The figures as Markdown."""
    lines = [
        f"Alias set → rollout started (registry.pollInterval {result['poll_interval']}):",
        "",
        "| wake-up | median (min-max) | samples |",
        "|---|---|---|",
        f"| poll only | {summary(result['start_by_poll_seconds'])} | {len(result['start_by_poll_seconds'])} |",
        f"| webhook | {summary(result['start_by_webhook_seconds'])} | {len(result['start_by_webhook_seconds'])} |",
        "",
        "| steps | interval | steps x interval | alias set → Succeeded | operator's duration "
        "| → first weight | each step < 100 % (analyses) | overhead per hold | 100 % → all on stable |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for timing in result["rollouts"]:
        held = ", ".join(
            f"{seconds:.1f} ({count})"
            for seconds, count in zip(timing["step_seconds"], timing["analyses_per_step"], strict=False)
        )
        overhead = ", ".join(f"{seconds:.2f}" for seconds in timing["overhead_seconds"])
        lines.append(
            f"| {list(timing['steps'])} | {timing['interval_seconds']:g} s | {timing['configured_seconds']:g} s "
            f"| {timing['total_seconds']:.1f} s | {timing['operator_seconds']:g} s "
            f"| {timing['first_weight_seconds']:.1f} s | {held} s | {overhead} s "
            f"| {timing['last_step_seconds']:.1f} s |"
        )
    overheads = [seconds for timing in result["rollouts"] for seconds in timing["overhead_seconds"]]
    wakes = [seconds for timing in result["rollouts"] for seconds in timing["wake_seconds"]]
    decides = [seconds for timing in result["rollouts"] for seconds in timing["decide_seconds"]]
    if overheads:
        lines += [
            "",
            f"Overhead per hold beyond interval, all steps below 100 % (the splitter's view): "
            f"{summary(overheads)}, n={len(overheads)}",
        ]
    routed = [seconds for timing in result["rollouts"] for seconds in timing["route_overhead_seconds"]]
    if routed:
        lines.append(f"The same from a watch on the HTTPRoute: {summary(routed)}, n={len(routed)}")
    if wakes and decides:
        lines += [
            f"Operator's clock: hold due → analysis started {summary(wakes)}, n={len(wakes)}; "
            f"analysis started → next step decided {summary(decides)}, n={len(decides)}",
        ]
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run, print the tables (and the raw numbers as JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=5, help="alias sets per wake-up kind")
    parser.add_argument("--repeat", type=int, default=1, help="times the three whole rollouts are run")
    parser.add_argument("--poll-interval", default="10s", help="registry.pollInterval of the resource")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    # SIGTERM unwinds like an error, so the servers, the lab and the namespace are cleaned up.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    for key, value in MLFLOW_ENV.items():
        os.environ.setdefault(key, value)
    with tempfile.TemporaryDirectory(prefix="rollout-bench-") as folder:
        result = run(args.samples, args.poll_interval, Path(folder), args.repeat)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(render(result))


if __name__ == "__main__":
    main()

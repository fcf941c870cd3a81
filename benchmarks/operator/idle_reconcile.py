"""Benchmark: the CPU of one idle reconcile — a ModelDeployment whose registry alias, spec and objects did
not change — and the API requests it makes, in this process, against the local control plane and a real
`mlflow server` on 127.0.0.1.

The real `reconcile()` runs `--runs` times back to back once the stable track is Ready, given the
resource and its stable Deployment as the operator's watches would (the versions last answered), or,
with `--no-watch`, without them (every run reads both). The figure is CPU time of this process per run:
the registry read, the Kubernetes client (its thread included), parsing, planning, digests and the
status comparison. It asserts nothing. At a poll of `P` seconds, `n` resources cost n / P times that CPU.
Run from the repository root; to compare two commits, run it from a checkout of each, one after the other:

    python -m benchmarks.operator.idle_reconcile --runs 300
    python -m benchmarks.operator.idle_reconcile --runs 400 --profile /tmp/idle.prof   # then python -m pstats
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import inspect
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.operator import scene
from modelpilot.operator.crd import build_crd
from modelpilot.operator.handlers.reconcile import reconcile
from modelpilot.operator.kubeapi import KubeApi, load_api_client
from modelpilot.operator.runtime import Runtime
from modelpilot.operator.settings import OperatorSettings
from modelpilot.operator.spec import GROUP, VERSION
from tests.support.cluster import Cluster, apply_manifest, create_namespace, start_cluster
from tests.support.counting_kube import CountingKube
from tests.support.mlflow_server import mlflow_server

NAME = "idle"


async def measure(cluster: Cluster, namespace: str, runs: int, *, watch: bool, profile: Path | None = None) -> str:
    """Settle the resource, then time `runs` idle reconciles; one line of figures. With `profile`, the timed
    runs are also profiled (CPU time, not wall: waiting for the registry's answer is not this process's cost)
    into that file, for `python -m pstats`."""
    kube = CountingKube(cluster)
    runtime = Runtime(settings=OperatorSettings(), kube=kube)
    reader = KubeApi(load_api_client(str(cluster.kubeconfig)))
    # A checkout from before the watches existed takes no copies: it reads both objects every run.
    params = inspect.signature(reconcile).parameters
    watched = watch and "seen" in params and hasattr(runtime, "deployments")
    try:
        for _ in range(240):
            outcome = await reconcile(runtime, namespace, NAME, lambda *_: None)
            if outcome is not None and outcome.requeue_after >= 60:
                break
            await asyncio.sleep(0.5)
        else:
            return "the resource never became Ready"
        extra: dict[str, Any] = {}
        if watched:
            extra["seen"] = await reader.get(f"{GROUP}/{VERSION}", "ModelDeployment", namespace, NAME)
            deployment = await reader.get("apps/v1", "Deployment", namespace, f"{NAME}-stable")
            runtime.deployments.seen("MODIFIED", deployment or {})
        await reconcile(runtime, namespace, NAME, lambda *_: None, **extra)
        kube.requests.clear()
        profiler = cProfile.Profile(time.process_time)
        cpu, wall = time.process_time(), time.perf_counter()
        if profile is not None:
            profiler.enable()
        for _ in range(runs):
            await reconcile(runtime, namespace, NAME, lambda *_: None, **extra)
        if profile is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        for registry in runtime.registries.values():
            await registry.aclose()
    counted = Counter(f"{method} {resource}" for method, resource in kube.requests)
    requests = ", ".join(f"{key} {count / runs:.2f}" for key, count in sorted(counted.items())) or "none"
    return (
        f"idle reconcile ({'watched copies' if watched else 'reads'}): {1000 * cpu / runs:.2f} ms CPU, "
        f"{1000 * wall / runs:.1f} ms wall per run; API requests per run: {requests}"
    )


def main() -> None:
    """Set up, measure, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="idle reconciles timed")
    parser.add_argument("--no-watch", action="store_true", help="read the resource and Deployment every run")
    parser.add_argument("--profile", type=Path, help="also profile the timed runs (CPU time) into this file")
    args = parser.parse_args()
    cluster = start_cluster()
    api = cluster.api_client
    apply_manifest(api, build_crd())
    with mlflow_server(Path(tempfile.mkdtemp(prefix="idle-reconcile-"))) as server:
        model = scene.register_champion(server.url)
        namespace = create_namespace(api, prefix="bench-idle")
        node = scene.create_benchmark_node(api, pods=10)
        try:
            scene.apply_model_deployment(api, namespace, scene.model_deployment(NAME, model, server.url, node, "60s"))
            print(
                asyncio.run(measure(cluster, namespace, args.runs, watch=not args.no_watch, profile=args.profile)),
                flush=True,
            )
        finally:
            scene.delete_model_deployments(api, namespace, timeout=60)
            scene.delete_namespace_and_wait(api, namespace, 300)
            scene.delete_node(api, node)


if __name__ == "__main__":
    main()

"""Benchmark: time from applying a ModelDeployment to its `<name>-stable` Deployment existing, and the
operator's memory and steady-state work at 100 and 1000 ModelDeployments.

Runs the real operator process against the local control plane (`hack/cluster up`) and a real
`mlflow server` on 127.0.0.1. The ModelDeployments go in three phases: the first `--first` one after
another (apply, wait for the Deployment, next), the bulk in batches of `--batch` (apply the batch
back to back, wait for all its Deployments, next batch), and the last `--probe` one after another
again, once everything before them is Ready, to see the latency with ~1000 resources in place.
Stops by itself (`--deadline`) and removes what it created. Run from the repository root:

    python -m benchmarks.operator.apply_latency
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.operator import probes, scene
from benchmarks.operator.report import Checkpoint, Phase, Report, render
from benchmarks.processes import cpu_seconds, process_tree, rss_bytes
from modelpilot.operator.crd import build_crd
from tests.support.cluster import Cluster, apply_manifest, create_namespace, start_cluster, wait_for_condition
from tests.support.mlflow_server import mlflow_server
from tests.support.operator_process import operator_process
from tests.support.processes import free_port

MIB = 1024 * 1024
SERIES_INTERVAL = 10.0


@dataclass
class Bench:
    """The running scene: cluster, namespace, model, operator, and the probes on them."""

    cluster: Cluster
    namespace: str
    node: str
    model_name: str
    tracking_uri: str
    metrics_url: str
    operator_pid: int
    watcher: probes.DeploymentWatcher
    sampler: probes.RssSampler
    poll_interval: str
    deadline: float

    def remaining(self) -> float:
        """Seconds left before the whole run must stop."""
        return max(self.deadline - time.monotonic(), 0.0)

    def apply(self, name: str) -> float:
        """Apply ModelDeployment `name`; the monotonic time the apply call returned."""
        manifest = scene.model_deployment(name, self.model_name, self.tracking_uri, self.node, self.poll_interval)
        scene.apply_model_deployment(self.cluster.api_client, self.namespace, manifest)
        return time.monotonic()

    def latencies(self, applied: dict[str, float], phase: Phase, timeout: float) -> None:
        """Wait for the stable Deployments of `applied` and record each one's latency in `phase`."""
        deployments = {f"{name}-stable": at for name, at in applied.items()}
        missing = self.watcher.wait_for(deployments, min(timeout, self.remaining()))
        phase.missing += len(missing)
        for deployment, applied_at in deployments.items():
            seen = self.watcher.seen_at(deployment)
            if seen is not None:
                phase.latencies.append(seen - applied_at)


def cr_name(index: int) -> str:
    """Name of the index-th ModelDeployment (1-based)."""
    return f"bench-{index:04d}"


def apply_one_by_one(bench: Bench, label: str, indexes: range, timeout: float) -> Phase:
    """Apply each ModelDeployment only once the previous one's Deployment exists."""
    phase, started = Phase(label), time.monotonic()
    for index in indexes:
        if bench.remaining() <= 0:
            break
        name = cr_name(index)
        bench.latencies({name: bench.apply(name)}, phase, timeout)
    phase.wall_seconds = time.monotonic() - started
    return phase


def apply_in_batches(bench: Bench, label: str, indexes: range, batch: int, timeout: float) -> Phase:
    """Apply `batch` ModelDeployments back to back, wait for all their Deployments, then the next batch."""
    phase, started = Phase(label), time.monotonic()
    for first in range(indexes.start, indexes.stop, batch):
        if bench.remaining() <= 0:
            break
        applied = {cr_name(i): 0.0 for i in range(first, min(first + batch, indexes.stop))}
        for name in applied:
            applied[name] = bench.apply(name)
        bench.latencies(applied, phase, timeout)
    phase.wall_seconds = time.monotonic() - started
    return phase


def checkpoint(bench: Bench, crs: int, window: float, apiserver_pid: int, etcd_pid: int) -> Checkpoint:
    """Wait until `crs` resources are Ready, then count the operator's work over `window` quiet seconds."""
    api = bench.cluster.api_client
    ready, waited = scene.wait_all_ready(api, bench.namespace, crs, min(600.0, bench.remaining()))
    window = min(window, bench.remaining())
    operator_pids = process_tree(bench.operator_pid)
    counters, requests = probes.read_operator_counters(bench.metrics_url), probes.read_apiserver_requests(api)
    cpu, started = cpu_seconds(operator_pids), time.monotonic()
    in_flight = [counters.resolves - counters.reconciles]
    while (left := window - (time.monotonic() - started)) > 0:
        time.sleep(min(SERIES_INTERVAL, left))
        now = probes.read_operator_counters(bench.metrics_url)
        # Each reconciliation reads the registry (or shares a read) near its start and counts itself at its end.
        in_flight.append(now.resolves - now.reconciles)
    elapsed = time.monotonic() - started
    done = probes.read_operator_counters(bench.metrics_url).minus(counters)
    after = probes.read_apiserver_requests(api)
    changed = {key: after[key] - requests.get(key, 0.0) for key in after if after[key] > requests.get(key, 0.0)}
    rss = bench.sampler.sample()
    rss["apiserver"] = rss_bytes([apiserver_pid])
    rss["etcd"] = rss_bytes([etcd_pid])
    return Checkpoint(
        crs=crs,
        ready=ready,
        ready_wait_seconds=round(waited, 1),
        window_seconds=round(elapsed, 1),
        reconciles=done.reconciles,
        registry_reads=done.registry_reads,
        registry_shared_reads=done.shared_reads,
        reconcile_seconds=round(done.reconcile_seconds, 2),
        in_flight=in_flight,
        reconciles_since_start=counters.reconciles,
        registry_reads_since_start=counters.registry_reads,
        operator_cpu_seconds=round(cpu_seconds(process_tree(bench.operator_pid)) - cpu, 2),
        api_requests=dict(sorted(changed.items(), key=lambda item: -item[1])),
        operator_requests=done.kube_requests,
        rss_mib={name: round(value / MIB, 1) for name, value in rss.items()},
        peak_rss_mib={name: round(value / MIB, 1) for name, value in bench.sampler.peaks.items()},
        load=probes.load_average(),
    )


def count_log_levels(log: Path) -> dict[str, int]:
    """Lines per log level in the operator's text log (`time level logger: message`)."""
    levels: dict[str, int] = {}
    if not log.exists():
        return levels
    with log.open(errors="replace") as lines:
        for line in lines:
            words = line.split(" ", 3)
            if len(words) >= 3 and words[2] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
                levels[words[2]] = levels.get(words[2], 0) + 1
    return levels


def run(args: argparse.Namespace, workdir: Path) -> Report:
    """Set up, measure, tear down; the report holds whatever was measured before the deadline."""
    report = Report(args=vars(args), started_load=probes.load_average())
    deadline = time.monotonic() + args.deadline
    cluster = start_cluster()
    api = cluster.api_client
    state_dir = cluster.kubeconfig.parent
    apiserver_pid = int((state_dir / "run" / "kube-apiserver.pid").read_text())
    etcd_pid = int((state_dir / "run" / "etcd.pid").read_text())
    crd = build_crd()
    apply_manifest(api, crd)
    wait_for_condition(
        api, "apiextensions.k8s.io/v1", "CustomResourceDefinition", crd["metadata"]["name"], condition="Established"
    )
    log = workdir / "operator.log"
    with ExitStack() as stack:
        server = stack.enter_context(mlflow_server(workdir / "mlflow"))
        model_name = scene.register_champion(server.url)
        node = scene.create_benchmark_node(api, pods=args.total + 100)
        stack.callback(scene.delete_node, api, node)
        namespace = create_namespace(api, prefix="bench-operator")
        stack.callback(lambda: report.cleanup.update(namespace_s=scene.delete_namespace_and_wait(api, namespace, 900)))
        watcher = probes.DeploymentWatcher(api, namespace)
        watcher.start()
        stack.callback(watcher.stop)
        metrics_port = free_port()
        operator = stack.enter_context(
            operator_process(cluster.kubeconfig, namespace, log, metrics_port=str(metrics_port))
        )

        def delete_resources() -> None:
            stuck, seconds = scene.delete_model_deployments(api, namespace, timeout=600)
            report.cleanup.update(model_deployments_s=round(seconds, 1), stuck=stuck)

        # Runs first on the way out, while the operator still runs and can release its finalizers.
        stack.callback(delete_resources)
        sampler = probes.RssSampler({"operator": operator.pid})
        sampler.start()
        stack.callback(sampler.stop)
        bench = Bench(
            cluster=cluster,
            namespace=namespace,
            node=node,
            model_name=model_name,
            tracking_uri=server.url,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            operator_pid=operator.pid,
            watcher=watcher,
            sampler=sampler,
            poll_interval=args.poll_interval,
            deadline=deadline,
        )
        sampler.sample()
        report.notes.append(f"operator RSS after start, no resources: {sampler.peaks['operator'] / MIB:.1f} MiB")
        try:
            measure(bench, args, report, apiserver_pid, etcd_pid)
        except Exception as error:  # report what was measured, then clean up
            report.notes.append(f"aborted: {error!r}")
    report.log_levels = count_log_levels(log)
    return report


def measure(bench: Bench, args: argparse.Namespace, report: Report, apiserver_pid: int, etcd_pid: int) -> None:
    """The three phases and the two checkpoints."""
    first, total, probe = args.first, args.total, args.probe
    report.phases.append(apply_one_by_one(bench, f"1-{first} one by one", range(1, first + 1), args.timeout))
    report.checkpoints.append(checkpoint(bench, first, args.window, apiserver_pid, etcd_pid))
    bulk_end = total - probe
    label = f"{first + 1}-{bulk_end} in batches of {args.batch}"
    report.phases.append(apply_in_batches(bench, label, range(first + 1, bulk_end + 1), args.batch, args.timeout))
    ready, waited = scene.wait_all_ready(
        bench.cluster.api_client, bench.namespace, bulk_end, min(900.0, bench.remaining())
    )
    report.notes.append(f"{ready}/{bulk_end} Ready {waited:.0f} s after the last batch's Deployments existed")
    report.phases.append(
        apply_one_by_one(bench, f"{bulk_end + 1}-{total} one by one", range(bulk_end + 1, total + 1), args.timeout)
    )
    report.checkpoints.append(checkpoint(bench, total, args.window, apiserver_pid, etcd_pid))
    if bench.remaining() <= 0:
        report.notes.append(f"stopped at the deadline of {args.deadline:.0f} s; later figures are missing")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--first", type=int, default=100, help="resources applied one by one first (latency figures)")
    parser.add_argument("--total", type=int, default=1000, help="resources in the end")
    parser.add_argument("--probe", type=int, default=20, help="last resources, applied one by one at the full count")
    parser.add_argument("--batch", type=int, default=20, help="batch size of the bulk phase")
    parser.add_argument("--poll-interval", default="60s", help="spec.registry.pollInterval of every resource")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of steady state counted at each checkpoint")
    parser.add_argument("--timeout", type=float, default=120.0, help="longest wait for one batch's Deployments")
    parser.add_argument("--deadline", type=float, default=3000.0, help="the whole run stops after this many seconds")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (operator and MLflow logs)")
    args = parser.parse_args(argv)
    if not 0 < args.first <= args.total - args.probe or args.probe < 0 or args.batch < 1:
        parser.error("need 0 < --first <= --total - --probe, --probe >= 0 and --batch >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its report."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    try:
        report = run(args, workdir)
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2, default=str))


if __name__ == "__main__":
    main()

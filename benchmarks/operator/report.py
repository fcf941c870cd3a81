"""The operator benchmark's results and how they are printed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from modelpilot.operator.spec import parse_duration


@dataclass
class Phase:
    """Apply-to-Deployment latencies of one group of ModelDeployments."""

    name: str
    latencies: list[float] = field(default_factory=list)
    missing: int = 0
    wall_seconds: float = 0.0

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile of the latencies, in seconds (NaN when there are none)."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


@dataclass
class Checkpoint:
    """The operator once `crs` ModelDeployments are all Ready, over a quiet window of `window_seconds`."""

    crs: int
    ready: int
    ready_wait_seconds: float
    window_seconds: float
    reconciles: float
    registry_reads: float
    reconcile_seconds: float
    in_flight: list[float]
    reconciles_since_start: float
    registry_reads_since_start: float
    operator_cpu_seconds: float
    api_requests: dict[str, float]
    rss_mib: dict[str, float]
    peak_rss_mib: dict[str, float]
    load: tuple[float, float, float]
    operator_requests: dict[str, float] = field(default_factory=dict)  # the operator's own client, "verb Kind"
    registry_shared_reads: float = 0.0  # model reads answered by another resource's read (not in registry_reads)

    @property
    def requests_per_reconcile(self) -> float:
        """The operator's own Kubernetes requests per finished reconciliation in the window."""
        return sum(self.operator_requests.values()) / self.reconciles if self.reconciles else math.nan


@dataclass
class Report:
    """Everything one run measured."""

    args: dict[str, object]
    started_load: tuple[float, float, float]
    phases: list[Phase] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    cleanup: dict[str, float] = field(default_factory=dict)
    log_levels: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def render(report: Report) -> str:
    """The report as plain text tables."""
    args = report.args
    poll = parse_duration(str(args["poll_interval"]))
    lines = [
        f"Operator benchmark: {args['total']} ModelDeployments, pollInterval {args['poll_interval']}, "
        f"load average at start {_load(report.started_load)}",
        "",
        "Apply returned -> <name>-stable Deployment seen by a watch (seconds)",
        f"{'phase':<34}{'n':>6}{'missing':>9}{'p50':>8}{'p95':>8}{'max':>8}{'wall':>8}",
    ]
    for phase in report.phases:
        worst = max(phase.latencies) if phase.latencies else math.nan
        lines.append(
            f"{phase.name:<34}{len(phase.latencies):>6}{phase.missing:>9}{phase.percentile(0.5):>8.3f}"
            f"{phase.percentile(0.95):>8.3f}{worst:>8.3f}{phase.wall_seconds:>8.0f}"
        )
        if len(phase.latencies) >= 40:
            head, tail = Phase("", phase.latencies[:20]), Phase("", phase.latencies[-20:])
            lines.append(
                f"{'  first 20 / last 20 p50':<34}{'':>23}{head.percentile(0.5):>8.3f}{tail.percentile(0.5):>8.3f}"
            )
    lines += [
        "",
        "Once all are Ready, over a window without applies (per second; expect = CRs / pollInterval;"
        " API requests from every client)",
        f"{'CRs':>6}{'Ready':>7}{'wait s':>8}{'window':>8}{'reconc/s':>10}{'reads/s':>9}{'expect':>8}"
        f"{'mean rec s':>11}{'op CPU %':>10}{'op req/rec':>11}{'API req/s':>11}  load",
    ]
    for point in report.checkpoints:
        window = point.window_seconds or math.nan
        mean = point.reconcile_seconds / point.reconciles if point.reconciles else math.nan
        lines.append(
            f"{point.crs:>6}{point.ready:>7}{point.ready_wait_seconds:>8.0f}{window:>8.0f}"
            f"{point.reconciles / window:>10.2f}{point.registry_reads / window:>9.2f}{point.crs / poll:>8.2f}"
            f"{mean:>11.3f}{100 * point.operator_cpu_seconds / window:>10.1f}{point.requests_per_reconcile:>11.2f}"
            f"{sum(point.api_requests.values()) / window:>11.1f}  {_load(point.load)}"
        )
    for point in report.checkpoints:
        lines.append(
            f"  before the {point.crs}-CR window: {point.reconciles_since_start:.0f} reconciliations and "
            f"{point.registry_reads_since_start:.0f} registry reads since the operator started"
        )
        if point.registry_shared_reads:
            shared = point.registry_shared_reads / (point.window_seconds or math.nan)
            lines.append(f"    in the window, {shared:.2f} model reads/s shared another one's read (not in reads/s)")
        series = " ".join(f"{value:.0f}" for value in point.in_flight)
        lines.append(f"    reconciliations in flight every 10 s of the window: {series}")
    lines += ["", "RSS (MiB) at the end of each window, and the operator's peak so far"]
    for point in report.checkpoints:
        rss, peak = point.rss_mib, point.peak_rss_mib
        lines.append(
            f"  {point.crs:>5} CRs: operator {rss.get('operator', 0):.1f} (peak {peak.get('operator', 0):.1f}), "
            f"kube-apiserver {rss.get('apiserver', 0):.1f}, etcd {rss.get('etcd', 0):.1f}"
        )
    for point in report.checkpoints:
        window = point.window_seconds or math.nan
        top = ", ".join(f"{key} {value / window:.1f}" for key, value in list(point.api_requests.items())[:10])
        lines.append(f"  API requests/s at {point.crs} CRs, busiest: {top}")
        own = ", ".join(f"{key} {value:.0f}" for key, value in sorted(point.operator_requests.items()))
        lines.append(f"  the operator's own requests in that window: {own or 'none'}")
    lines += ["", *report.notes]
    if report.cleanup:
        lines.append("cleanup: " + ", ".join(f"{key} {value}" for key, value in report.cleanup.items()))
    if report.log_levels:
        lines.append("operator log lines: " + ", ".join(f"{key} {value}" for key, value in report.log_levels.items()))
    return "\n".join(lines)


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{value:.2f}" for value in load)

"""Benchmark: what the prediction log costs a request, and how many rows per second it writes.

Two `modelpilot-serve` processes on the same registered model (the inference benchmark's MoE, pt2) run side
by side, both pinned to CPU 0 with their defaults: **off** (no log) and **on** (`MODELPILOT_PREDLOG_DSN` set,
inputs hashed). A real PostgreSQL (Debian's binaries, the tests' fixture) runs on loopback, pinned with wrk
to CPU 1. Load alternates between the two servers in rounds (each round visits every cell of both), and each
figure is the median over the rounds. Then the sustained write rate: with the database stopped, the logging
server's queue fills under load; the database comes back and the runner times how fast the backlog drains
(rows written per second by the one writer thread, while the server is idle). Run from the repository root:
    python -m benchmarks.prediction_log --duration 5 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.inference.run import BIN, LOAD_CPU, SERVER_CPU, Cell, _median, bodies, register_model, run_wrk
from modelpilot.inference.predlog.migrate import migrate
from tests.support.mlflow_server import MLFLOW_ENV, mlflow_server
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.processes import free_port, stop

CONNECTIONS = (1, 8)
ROW_COUNTS = (1, 256)


@contextmanager
def serving(uri: str, log: Path, env: dict[str, str]) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """A pinned modelpilot-serve; yields (prediction URL, metrics URL, process)."""
    port, metrics_port = free_port(), free_port()
    env = {
        **env,
        "MODELPILOT_MODEL_URI": uri,
        "MODELPILOT_HOST": "127.0.0.1",
        "MODELPILOT_PORT": str(port),
        "MODELPILOT_METRICS_PORT": str(metrics_port),
        "MODELPILOT_GRPC_PORT": str(free_port()),
    }
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, str(BIN / "modelpilot-serve")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited early; see {log}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("server not ready in 300 s")
            time.sleep(0.05)
        yield url, f"http://127.0.0.1:{metrics_port}/metrics", process
    finally:
        stop(process)


def scraped(metrics_url: str, name: str) -> float:
    """The sum of a metric's samples."""
    text = httpx.get(metrics_url, timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples if s.name == name)


def pin_tree(pid: int, cpu: int) -> None:
    """Pin `pid` (postgres' postmaster: its later backends inherit it) to one CPU."""
    os.sched_setaffinity(pid, {cpu})


def settle(metrics_url: str, timeout: float = 300.0) -> None:
    """Wait until the logging server has written its backlog, so it does not load the CPU of the next run."""
    deadline = time.monotonic() + timeout
    while scraped(metrics_url, "modelpilot_prediction_log_backlog_rows") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)


def drain_rate(
    url: str, metrics_url: str, body: Path, database: PostgresServer, seconds: int, pid: int
) -> tuple[int, float]:
    """Rows queued while the database is away, and the rows per second written once it is back."""
    database.stop()
    run_wrk(url, body, 8, seconds, pid)
    backlog = int(scraped(metrics_url, "modelpilot_prediction_log_backlog_rows"))
    written_before = scraped(metrics_url, "modelpilot_prediction_log_written_total")
    database.start()
    began = time.monotonic()
    while scraped(metrics_url, "modelpilot_prediction_log_backlog_rows") > 0:
        time.sleep(0.05)
    elapsed = time.monotonic() - began
    written = scraped(metrics_url, "modelpilot_prediction_log_written_total") - written_before
    return backlog, written / elapsed


def main() -> None:
    """Start the database and both servers, load them in rounds, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every cell per server (medians reported)")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("needs wrk and taskset (apt-get install -y wrk util-linux)")
    workdir = Path(tempfile.mkdtemp(prefix="modelpilot-bench-predlog-"))
    files = bodies(workdir)
    base_env = {**os.environ, **MLFLOW_ENV, "PATH": f"{BIN}:{os.environ['PATH']}", "MODELPILOT_ACCESS_LOG": "false"}
    runs: dict[tuple[str, int, int], list[Cell]] = {}
    with mlflow_server(workdir / "mlflow") as registry, postgres_server() as database, ExitStack() as stack:
        assert database.process is not None
        pin_tree(database.process.pid, int(LOAD_CPU))
        migrate(database.dsn)
        uri, _ = register_model(registry.url, workdir)
        base_env["MLFLOW_TRACKING_URI"] = registry.url
        logged_env = {**base_env, "MODELPILOT_PREDLOG_DSN": database.dsn, "MODELPILOT_PREDLOG_QUEUE_ROWS": "2000000"}
        servers = {
            "off": stack.enter_context(serving(uri, workdir / "off.log", base_env)),
            "on": stack.enter_context(serving(uri, workdir / "on.log", logged_env)),
        }
        for url, _, process in servers.values():
            run_wrk(url, files[1], 8, 2, process.pid)  # warm-up
        for round_index in range(args.rounds):
            for rows, path in files.items():
                for connections in CONNECTIONS:
                    for name, (url, metrics_url, process) in servers.items():
                        cell = run_wrk(url, path, connections, args.duration, process.pid)
                        runs.setdefault((name, rows, connections), []).append(cell)
                        if name == "on":
                            settle(metrics_url)
            print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)
        url, metrics_url, process = servers["on"]
        lost = scraped(metrics_url, "modelpilot_prediction_log_dropped_total")
        backlog, rate = drain_rate(url, metrics_url, files[256], database, args.duration, process.pid)
    print(report(runs, args.duration, args.rounds, lost, backlog, rate))


def report(
    runs: dict[tuple[str, int, int], list[Cell]], duration: int, rounds: int, lost: float, backlog: int, rate: float
) -> str:
    """Markdown: both servers side by side per cell, the ratios per round, and the write rate."""
    lines = [
        f"{rounds} rounds x {duration} s per cell and server, medians; servers on CPU {SERVER_CPU}, "
        f"wrk and PostgreSQL on CPU {LOAD_CPU}.",
        "",
        "| rows | conns | req/s off | req/s on | p50 ms off | p50 ms on | p99 ms off | p99 ms on | "
        "p99 on/off per round | CPU-s/1k off | CPU-s/1k on |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for rows in ROW_COUNTS:
        for connections in CONNECTIONS:
            off, on = (_median(runs[(name, rows, connections)]) for name in ("off", "on"))
            per_round = " ".join(
                f"{b.p99_ms / a.p99_ms:.2f}"
                for a, b in zip(runs[("off", rows, connections)], runs[("on", rows, connections)], strict=True)
            )
            lines.append(
                f"| {rows} | {connections} | {off.rps:,.0f} | {on.rps:,.0f} | {off.p50_ms:.2f} | {on.p50_ms:.2f} | "
                f"{off.p99_ms:.2f} | {on.p99_ms:.2f} | {per_round} | {off.cpu_per_1k:.3f} | {on.cpu_per_1k:.3f} |"
            )
    lines += [
        "",
        f"Rows dropped during the rounds: {lost:.0f}.",
        f"Write rate: a backlog of {backlog:,} rows (queued while the database was stopped) drained at "
        f"{rate:,.0f} rows/s (one writer thread, inputs hashed, server otherwise idle).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Benchmark: modelpilot-serve vs `mlflow models serve` vs a bare Starlette floor on one registered MoE model.

The servers are started one after the other (cold start measured for each), each pinned to CPU 0 with
one worker; wrk runs pinned to CPU 1 against 127.0.0.1. Load is applied to one server at a time, in
rounds that visit every cell of every server, so slow drifts of a shared machine hit all servers alike;
each figure is the median over the rounds. Run from the repository root:
    python -m benchmarks.inference.run --duration 5 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from benchmarks.processes import cpu_seconds, process_tree, pss_bytes, rss_bytes
from tests.api.inference.models import N_FEATURES, sample_rows
from tests.support.mlflow_server import MLFLOW_ENV, mlflow_server
from tests.support.processes import free_port, stop

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
SERVER_CPU, LOAD_CPU = "0", "1"
MODEL_NAME = "bench-moe"
CONNECTIONS = (1, 8, 32)
ROW_COUNTS = (1, 256)
# modelpilot-serve again, on a version whose run logged the training reference: it counts drift bins.
DRIFT_BINS = "modelpilot-bins"
DRIFT_BINS_URI = f"models:/{MODEL_NAME}/2"
# modelpilot-serve loading the pt2 archive in its own process (MODELPILOT_PT2_LOADER=server), as it did before
# the child process took that over.
IN_SERVER = "modelpilot-inserver"


@dataclass
class Cell:
    """One wrk run."""

    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    cpu_per_1k: float
    failures: int


@dataclass
class ServerResult:
    """Everything measured for one server: every round of every cell."""

    name: str
    cold_start_s: float = 0.0
    rss_ready_mb: float = 0.0
    rss_mb: float = 0.0
    # The largest sums seen from spawn to ready (the server and any child it starts while it loads).
    rss_load_peak_mb: float = 0.0
    pss_load_peak_mb: float = 0.0
    runs: dict[tuple[int, int], list[Cell]] = field(default_factory=dict)

    @property
    def cells(self) -> dict[tuple[int, int], Cell]:
        """The median of each figure over the rounds."""
        return {key: _median(runs) for key, runs in self.runs.items()}


def _median(runs: list[Cell]) -> Cell:
    def mid(values: list[float]) -> float:
        return float(statistics.median(values))

    return Cell(
        rps=mid([r.rps for r in runs]),
        p50_ms=mid([r.p50_ms for r in runs]),
        p99_ms=mid([r.p99_ms for r in runs]),
        p999_ms=mid([r.p999_ms for r in runs]),
        cpu_per_1k=mid([r.cpu_per_1k for r in runs]),
        failures=sum(r.failures for r in runs),
    )


def register_model(tracking_uri: str, workdir: Path) -> tuple[str, Path]:
    """Log the product's MoE (pt2, tensor signature), register it, save its state dict for the floor.

    Version 1's run logs the model alone; version 2's run (the same weights) also logs the training
    reference a training run writes, so a server of version 2 (`DRIFT_BINS_URI`) counts every input into
    its drift bins. Returns version 1's models:/ URI and the state dict's path.
    """
    import mlflow
    import mlflow.pytorch
    import pandas as pd
    import torch

    from modelpilot.training.model import MixtureOfExperts
    from modelpilot.training.reference import REFERENCE_ARTIFACT, reference_statistics

    torch.manual_seed(0)
    training_rows = sample_rows(512, seed=3)
    model = MixtureOfExperts(N_FEATURES)
    model.fit_normalisation(torch.from_numpy(training_rows))
    model.eval()
    state_dict = workdir / "state_dict.pt"
    torch.save(model.state_dict(), state_dict)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("benchmark")
    frame = pd.DataFrame(training_rows, columns=[f"f{index}" for index in range(N_FEATURES)])
    for with_reference in (False, True):
        with mlflow.start_run():
            mlflow.pytorch.log_model(
                model,
                name="moe",
                input_example=sample_rows(4),
                registered_model_name=MODEL_NAME,
                pip_requirements=["torch"],
            )
            if with_reference:
                mlflow.log_dict(reference_statistics(frame, list(frame.columns)), REFERENCE_ARTIFACT)
    return f"models:/{MODEL_NAME}/1", state_dict


def server_commands(name: str, uri: str, port: int, state_dict: Path) -> tuple[list[str], dict[str, str], str]:
    """(argv, extra env, readiness path) of each contender."""
    pin = ["taskset", "-c", SERVER_CPU]
    if name in ("modelpilot", DRIFT_BINS, IN_SERVER):
        env = {
            "MODELPILOT_MODEL_URI": uri,
            "MODELPILOT_HOST": "127.0.0.1",
            "MODELPILOT_PORT": str(port),
            "MODELPILOT_METRICS_PORT": str(free_port()),  # the default 9090 may be taken on this machine
            "MODELPILOT_GRPC_PORT": str(free_port()),  # served as by default, on a port that is free
        }
        if name == IN_SERVER:
            env["MODELPILOT_PT2_LOADER"] = "server"
        return [*pin, str(BIN / "modelpilot-serve")], env, "/readyz"
    if name == "mlflow":
        argv = [str(BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local", "-h", "127.0.0.1"]
        return [*pin, *argv, "-p", str(port), "-w", "1"], {}, "/ping"
    floor_env = {"FLOOR_STATE_DICT": str(state_dict), "FLOOR_PORT": str(port)}
    return [*pin, sys.executable, str(HERE / "floor.py")], floor_env, "/ping"


@contextmanager
def started(
    name: str, uri: str, state_dict: Path, log: Path, env: dict[str, str], result: ServerResult
) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    """Start a server, yield (url, process, seconds from spawn to ready), stop it; the memory peaks of the
    start go into `result`."""
    port = free_port()
    argv, extra, ready_path = server_commands(name, uri, port, state_dict)
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        begin = time.perf_counter()
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**env, **extra}, start_new_session=True
        )
    try:
        while True:
            tree = process_tree(process.pid)
            result.rss_load_peak_mb = max(result.rss_load_peak_mb, rss_bytes(tree) / 2**20)
            result.pss_load_peak_mb = max(result.pss_load_peak_mb, pss_bytes(tree) / 2**20)
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited early; see {log}")
            try:
                if httpx.get(url + ready_path, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - begin > 300:
                raise TimeoutError(f"{name} not ready in 300 s")
            time.sleep(0.02)
        yield url, process, time.perf_counter() - begin
    finally:
        stop(process)


def check_counts_drift_bins(process: subprocess.Popen[bytes], url: str) -> None:
    """The server on the version with a training reference exports its bins (else it would measure nothing)."""
    environ = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
    port = next(e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"MODELPILOT_METRICS_PORT="))
    predictions(url, orjson.dumps({"inputs": sample_rows(8).tolist()}))
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    if "modelpilot_feature_reference_share{" not in metrics:
        sys.exit(f"{DRIFT_BINS}: the server has no drift bins: its version's training reference was not loaded")


def run_wrk(url: str, body_file: Path, connections: int, duration: int, pid: int) -> Cell:
    """One pinned wrk run; CPU is measured on the server's process tree."""
    before = cpu_seconds(process_tree(pid))
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s"]
    argv += ["-s", str(HERE / "post.lua"), f"{url}/invocations"]
    output = subprocess.run(
        argv, env={**os.environ, "BODY_FILE": str(body_file)}, capture_output=True, text=True, check=True
    ).stdout
    used = cpu_seconds(process_tree(pid)) - before
    stats = dict(re.findall(r"(\w+)=(\d+)", output.split("MPSTATS", 1)[1]))
    requests = int(stats["requests"])
    return Cell(
        rps=requests / (int(stats["duration_us"]) / 1e6),
        p50_ms=int(stats["p50"]) / 1000,
        p99_ms=int(stats["p99"]) / 1000,
        p999_ms=int(stats["p999"]) / 1000,
        cpu_per_1k=used / max(requests, 1) * 1000,
        failures=int(stats["non2xx"]) + int(stats["errors"]),
    )


def predictions(url: str, body: bytes) -> np.ndarray[Any, Any]:
    """The `predictions` of one request as an array."""
    response = httpx.post(f"{url}/invocations", content=body, headers={"content-type": "application/json"}, timeout=30)
    response.raise_for_status()
    return np.asarray(response.json()["predictions"], dtype=np.float64)


def bodies(workdir: Path) -> dict[int, Path]:
    """dataframe_split bodies of 1 and 256 rows."""
    files = {}
    columns = [f"f{i}" for i in range(N_FEATURES)]
    for rows in ROW_COUNTS:
        path = workdir / f"body-{rows}.json"
        path.write_bytes(
            orjson.dumps({"dataframe_split": {"columns": columns, "data": sample_rows(rows, seed=rows).tolist()}})
        )
        files[rows] = path
    return files


def main() -> None:
    """Start all servers one after the other, load them in rounds, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every cell per server (medians reported)")
    parser.add_argument("--servers", default="modelpilot,mlflow,floor", help=f"also: {DRIFT_BINS}, {IN_SERVER}")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("needs wrk and taskset (apt-get install -y wrk util-linux)")
    workdir = Path(tempfile.mkdtemp(prefix="modelpilot-bench-"))
    env = {**os.environ, **MLFLOW_ENV, "PATH": f"{BIN}:{os.environ['PATH']}"}
    files = bodies(workdir)
    names = args.servers.split(",")
    results = {name: ServerResult(name) for name in names}
    reference: dict[int, np.ndarray[Any, Any]] = {}
    with mlflow_server(workdir / "mlflow") as registry, ExitStack() as servers:
        uri, state_dict = register_model(registry.url, workdir)
        env["MLFLOW_TRACKING_URI"] = registry.url
        running: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
        for name in names:
            url, process, cold_start = servers.enter_context(
                started(
                    name,
                    DRIFT_BINS_URI if name == DRIFT_BINS else uri,
                    state_dict,
                    workdir / f"{name}.log",
                    env,
                    results[name],
                )
            )
            if name == DRIFT_BINS:
                check_counts_drift_bins(process, url)
            results[name].cold_start_s = cold_start
            results[name].rss_ready_mb = rss_bytes(process_tree(process.pid)) / 2**20
            running[name] = (url, process)
            print(f"ready: {name} (cold start {cold_start:.1f} s)", file=sys.stderr)
            for rows, path in files.items():
                got = predictions(url, path.read_bytes())
                if rows in reference and not np.allclose(got, reference[rows], rtol=1e-4, atol=1e-5):
                    sys.exit(f"{name} disagrees with the first server on the {rows}-row body")
                reference.setdefault(rows, got)
            run_wrk(url, files[1], 8, 2, process.pid)  # warm-up
        for round_index in range(args.rounds):
            for rows, path in files.items():
                for connections in CONNECTIONS:
                    for name, (url, process) in running.items():
                        cell = run_wrk(url, path, connections, args.duration, process.pid)
                        results[name].runs.setdefault((rows, connections), []).append(cell)
                        results[name].rss_mb = max(results[name].rss_mb, rss_bytes(process_tree(process.pid)) / 2**20)
            print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)
    print(report(list(results.values()), args.duration, args.rounds))


def report(results: list[ServerResult], duration: int, rounds: int) -> str:
    """Markdown tables: medians, then ratios against the floor and mlflow (with the per-round spread)."""
    lines = [
        f"Same predictions from all servers: yes. {rounds} rounds x {duration} s per cell and server, medians; "
        f"servers on CPU {SERVER_CPU}, wrk on CPU {LOAD_CPU}.",
        "",
        "| server | rows | conns | req/s | p50 ms | p99 ms | p99.9 ms | CPU-s/1k req | failures |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        for (rows, connections), cell in result.cells.items():
            lines.append(
                f"| {result.name} | {rows} | {connections} | {cell.rps:,.0f} | {cell.p50_ms:.2f} | {cell.p99_ms:.2f} | "
                f"{cell.p999_ms:.2f} | {cell.cpu_per_1k:.3f} | {cell.failures} |"
            )
    lines += [
        "",
        "| server | cold start s | RSS at ready MiB | RSS max MiB | RSS peak in load MiB | PSS peak in load MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.name} | {r.cold_start_s:.2f} | {r.rss_ready_mb:.0f} | {r.rss_mb:.0f} | {r.rss_load_peak_mb:.0f} | "
        f"{r.pss_load_peak_mb:.0f} |"
        for r in results
    ]
    by_name = {r.name: r for r in results}
    ours = by_name.get("modelpilot")
    if ours is not None and ("floor" in by_name or "mlflow" in by_name):
        lines += [
            "",
            "| rows | conns | req/s vs floor | per round | p99 vs floor | req/s vs mlflow | p99 vs mlflow |",
            "|---:|---:|---:|---|---:|---:|---:|",
        ]
        for key, cell in ours.cells.items():
            ratios = []
            for other in ("floor", "mlflow"):
                base = by_name[other].cells[key] if other in by_name else None
                ratios += [f"{cell.rps / base.rps:.2f}x", f"{cell.p99_ms / base.p99_ms:.2f}x"] if base else ["-", "-"]
            if "floor" in by_name:
                pairs = zip(ours.runs[key], by_name["floor"].runs[key], strict=True)
                ratios.insert(1, " ".join(f"{a.rps / b.rps:.2f}" for a, b in pairs))
            else:
                ratios.insert(1, "-")
            lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(ratios) + " |")
        if "mlflow" in by_name:
            lines.append(f"\nCold start vs mlflow: {ours.cold_start_s / by_name['mlflow'].cold_start_s:.2f}x")
        if "floor" in by_name:
            lines.append(f"RSS at ready vs floor: {ours.rss_ready_mb - by_name['floor'].rss_ready_mb:+.0f} MiB")
            if IN_SERVER in by_name:
                before = by_name[IN_SERVER].rss_ready_mb - by_name["floor"].rss_ready_mb
                lines.append(f"RSS at ready vs floor, pt2 loaded in the server: {before:+.0f} MiB")
    if ours is not None and DRIFT_BINS in by_name:
        lines += _drift_bins_cost(ours, by_name[DRIFT_BINS])
    if ours is not None and IN_SERVER in by_name:
        lines += _against(ours, by_name[IN_SERVER])
    return "\n".join(lines)


def _drift_bins_cost(ours: ServerResult, bins: ServerResult) -> list[str]:
    """The drift bins' cost: the server with a training reference against the same server without one."""
    return _against(bins, ours)


def _against(result: ServerResult, base: ServerResult) -> list[str]:
    """`result`'s medians as ratios of `base`'s, with each round's req/s ratio."""
    lines = [
        "",
        f"| rows | conns | req/s {result.name} vs {base.name} | per round | p50 vs {base.name} | p99 vs {base.name} | "
        f"CPU-s/1k vs {base.name} |",
        "|---:|---:|---:|---|---:|---:|---:|",
    ]
    for key, cell in result.cells.items():
        other = base.cells[key]
        rounds = " ".join(f"{a.rps / b.rps:.2f}" for a, b in zip(result.runs[key], base.runs[key], strict=True))
        lines.append(
            f"| {key[0]} | {key[1]} | {cell.rps / other.rps:.2f}x | {rounds} | {cell.p50_ms / other.p50_ms:.2f}x | "
            f"{cell.p99_ms / other.p99_ms:.2f}x | {cell.cpu_per_1k / other.cpu_per_1k:.2f}x |"
        )
    return lines


if __name__ == "__main__":
    main()

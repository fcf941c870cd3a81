"""Stable pods' feature bins as the inference server exports them, for drift tests with a real Prometheus.

Each `ServedVersion` is the server's own metrics (`ServingMetrics`, with the reference a training run logs
for its data, `reference_statistics`) on a loopback port, fed by a thread with rows drawn from the
training distribution or, while `shift` is set, from a shifted one; `feeding` off sends nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import start_http_server

from modelpilot.inference.metrics import ServingMetrics
from modelpilot.inference.reference import parse_reference
from modelpilot.training.reference import reference_statistics
from tests.support.processes import free_port

FEATURES = ("amount", "hour")
ROWS_PER_TICK = 20
TICK_SECONDS = 0.1


def training_frame() -> pd.DataFrame:
    """The training data the reference describes: amount ~ N(50, 10), hour ~ U(0, 24)."""
    rng = np.random.default_rng(11)
    return pd.DataFrame({"amount": rng.normal(50, 10, 20_000), "hour": rng.uniform(0, 24, 20_000)})


class ServedVersion:
    """One model version's stable pods: the server's collector, its reference, and what is being sent."""

    def __init__(self, model: str, version: str, *, shift: float = 0.0) -> None:
        document = json.dumps(reference_statistics(training_frame(), list(FEATURES))).encode()
        self.metrics = ServingMetrics(model, version, "stable")
        self.metrics.set_identity(model, version, "stable")
        self.metrics.features.reset(FEATURES, parse_reference(document, FEATURES))
        self.shift = shift
        self.feeding = True
        self.port = free_port()
        self.rng = np.random.default_rng(abs(hash((model, version))) % 2**32)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def rows(self) -> np.ndarray[Any, Any]:
        amount = self.rng.normal(50 + self.shift, 10, ROWS_PER_TICK)
        return np.stack([amount, self.rng.uniform(0, 24, ROWS_PER_TICK)], axis=1).astype(np.float32)


@contextmanager
def serving(versions: list[ServedVersion]) -> Iterator[list[ServedVersion]]:
    """Expose each version's metrics and feed them until the block ends."""
    stopped = threading.Event()

    def feed() -> None:
        while not stopped.wait(TICK_SECONDS):
            for version in versions:
                if version.feeding:
                    version.metrics.features.observe([version.rows()])

    servers = [start_http_server(v.port, addr="127.0.0.1", registry=v.metrics.registry)[0] for v in versions]
    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield versions
    finally:
        stopped.set()
        thread.join()
        for server in servers:
            server.shutdown()

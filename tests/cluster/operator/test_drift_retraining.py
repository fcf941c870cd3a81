"""The drift loop with the real operator, API server, MLflow and Prometheus: the stable version's served bins
(the inference server's own collector, fed in-distribution or shifted rows) are scored; a drift episode
starts exactly one retraining Job (kwok runs it), a second episode after the cooldown a second, and no
traffic is Unknown, never a reason to retrain."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.operator.conftest import RegisteredModel, condition, model_deployment
from tests.support.cluster import wait_until
from tests.support.drift_exporter import ServedVersion, serving
from tests.support.namespace_objects import Resources
from tests.support.prometheus import PrometheusServer, prometheus_server

NAME = "drifty"
WINDOW = "6s"
COOLDOWN = "25s"


@pytest.fixture
def served(model: RegisteredModel) -> Iterator[ServedVersion]:
    """Version 1 of the model, champion, with its stable pods' bins exported (in-distribution at first)."""
    version = model.add_version()
    model.set_alias("champion", version)
    stable = ServedVersion(model.name, version)
    with serving([stable]):
        yield stable


@pytest.fixture
def drift_prometheus(served: ServedVersion, namespace: str, tmp_path: Path) -> Iterator[PrometheusServer]:
    with prometheus_server(tmp_path / "prometheus", [served.target], labels={"namespace": namespace}) as server:
        server.wait_for_targets(1)
        yield server


def _drift(obj: dict[str, Any]) -> dict[str, Any]:
    return dict((obj.get("status") or {}).get("drift") or {})


def _drift_jobs(resources: Resources) -> list[str]:
    selector = f"modelpilot.io/deployment={NAME},app.kubernetes.io/component=training,modelpilot.io/trigger=drift"
    return resources.names("batch/v1", "Job", selector)


def _training_started(resources: Resources) -> list[dict[str, Any]]:
    return [event for event in resources.events(NAME) if event["reason"] == "TrainingStarted"]


def test_one_retraining_per_drift_episode_after_the_cooldown_and_none_without_traffic(
    resources: Resources,
    model: RegisteredModel,
    served: ServedVersion,
    drift_prometheus: PrometheusServer,
    operator: subprocess.Popen[bytes],
) -> None:
    training = {
        "image": "ghcr.io/modelpilot/train:test",
        "retrainOnDrift": True,
        "podAnnotations": {"modelpilot.io/kwok-duration": "2s"},
    }
    drift = {"prometheus": drift_prometheus.url, "window": WINDOW, "minInputs": 200, "cooldown": COOLDOWN}
    resources.apply(model_deployment(NAME, model, training=training, monitoring={"drift": drift}))

    # In-distribution traffic: scored, not drifted, for several windows, and nothing is trained.
    steady = resources.wait_mdep(NAME, lambda m: _drift(m).get("state") == "NotDrifted", "scored", timeout=60)
    assert _drift(steady)["version"] == model.alias("champion")
    assert condition(steady, "Drifted")["status"] == "False"
    time.sleep(12)
    assert _drift(resources.mdep(NAME))["state"] == "NotDrifted"
    assert _drift_jobs(resources) == []

    # Shifted inputs: one episode, one Job — still one a few evaluations later.
    served.shift = 30.0
    drifted = resources.wait_mdep(NAME, lambda m: _drift(m).get("state") == "Drifted", "drift detected", timeout=60)
    assert _drift(drifted)["features"] == ["amount"]
    assert condition(drifted, "Drifted")["status"] == "True"
    first = resources.wait_mdep(NAME, lambda m: len(_drift_jobs(resources)) == 1, "one drift Job", timeout=30)
    assert _drift(first)["retrainedFor"] == _drift(drifted)["since"]
    time.sleep(8)
    assert len(_drift_jobs(resources)) == 1, "one Job per episode"

    # The episode ends and a second one begins; its Job waits for the cooldown, then starts.
    served.shift = 0.0
    resources.wait_mdep(NAME, lambda m: _drift(m).get("state") == "NotDrifted", "drift cleared", timeout=60)
    served.shift = 30.0
    resources.wait_mdep(NAME, lambda m: _drift(m).get("state") == "Drifted", "second episode", timeout=60)
    resources.wait_mdep(NAME, lambda m: len(_drift_jobs(resources)) == 2, "a second drift Job", timeout=60)
    # The operator posts its Event after it created the Job, so the second one may still be on its way.
    started = wait_until(
        lambda: _started if len(_started := _training_started(resources)) >= 2 else None,
        timeout=30,
        description="an Event for each drift Job",
    )
    assert len(started) == 2

    # No traffic: unknown, and no Job however long the drift lasted before.
    served.feeding = False
    unknown = resources.wait_mdep(NAME, lambda m: _drift(m).get("state") == "Unknown", "no traffic", timeout=60)
    assert "fewer than minInputs" in _drift(unknown)["reason"]
    assert condition(unknown, "Drifted")["status"] == "Unknown"
    assert len(_drift_jobs(resources)) == 2
    reasons = [e["reason"] for e in resources.events(NAME)]
    assert reasons.count("DriftDetected") == 2
    assert reasons.count("DriftCleared") == 1

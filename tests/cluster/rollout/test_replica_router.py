"""A rollout without a router: the weight is a ratio of pods behind one Service. The plan adds pods so
every step's share is within tolerance, status says the share the canary really gets, and the lab's
splitter (which, like kube-proxy, gives each Ready pod the Service selects an equal share) sees it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.rollout.checks import canary, canary_weights, history_events, stable_is, state_is
from tests.cluster.rollout.conftest import CANDIDATE_ALIAS, RESOURCE, LabModel, Objects, rollout_spec
from tests.support.cluster import Cluster, wait_until
from tests.support.lab import Lab, LabSettings, WarmServerPool, running_lab
from tests.support.mlflow_server import MlflowServer

STEPS = (10, 25, 50, 100)
TOLERANCE = 5
# Each pod turns Ready this long after it is created, twice the step interval: a step's hold must start
# when its pods are Ready, or the step is analysed (and left) before its share was ever carried.
POD_START_SECONDS = 6.0


@pytest.fixture
def replica_lab(
    cluster: Cluster,
    namespace: str,
    mlflow: MlflowServer,
    modelpilot_crd: dict[str, Any],
    server_pool: WarmServerPool,
    tmp_path: Path,
) -> Iterator[Lab]:
    settings = LabSettings(
        cluster.kubeconfig,
        namespace,
        RESOURCE,
        mlflow.url,
        tmp_path / "lab",
        router="replicas",
        pod_start_seconds=POD_START_SECONDS,
    )
    with running_lab(settings, server_pool) as running:
        yield running


def test_replica_router_carries_each_step_within_tolerance_and_status_shows_the_real_share(
    replica_lab: Lab,
    lab_model: LabModel,
    objects: Objects,
    mlflow: MlflowServer,
    cluster: Cluster,
    namespace: str,
    operator: subprocess.Popen[bytes],
) -> None:
    lab, model = replica_lab, lab_model
    # Each step holds long enough for status to show its settled share before the next step, even when a loaded
    # machine makes the run that starts the hold take seconds.
    spec = rollout_spec(model, mlflow.url, lab.prometheus_url, steps=STEPS, interval="6s")
    spec["spec"]["traffic"] = {"router": "replicas"}
    spec["spec"]["serving"]["replicas"] = 4  # 4 pods alone give 25 % at best for 10 %: 6 + 1 do
    model.client.set_registered_model_alias(model.name, "champion", model.stable)
    objects.apply(spec)
    objects.wait(stable_is(model.stable), "Ready with the champion")
    lab.wait_serving("stable", model.stable)
    # The splitter weighs by the Ready pods the Service selects: wait until it has seen them.
    wait_until(lambda: lab.splitter.table.rules or None, timeout=30, description="the splitter routes to stable")
    load = lab.start_load(rate=20, seconds=150)

    model.client.set_registered_model_alias(model.name, CANDIDATE_ALIAS, model.candidate)
    seen: dict[int, set[int]] = {}  # step weight → effectiveWeight values status showed while at it
    columns: set[str] = set()

    def record(obj: dict[str, Any]) -> bool:
        state = canary(obj)
        if state.get("state") == "Progressing" and state.get("weight"):
            seen.setdefault(int(state["weight"]), set()).add(int(state.get("effectiveWeight", -1)))
            assert not state.get("weightMessage"), state
            if len(columns) < 20:
                listing = cluster.run_kubectl("get", "mdep", RESOURCE, "-n", namespace, "--no-headers").stdout
                columns.add(listing.split()[4])  # NAME MODEL STABLE CANARY WEIGHT PHASE AGE
        return state_is("Succeeded", "RolledBack", "Aborted", "Idle")(obj)

    done = objects.wait(record, "the rollout ends", timeout=150)
    load.stop()
    assert canary(done)["state"] == "Succeeded", canary(done)
    assert model.alias("champion") == model.candidate
    assert history_events(done).count("StepStarted") == len(STEPS)

    # Status: at every step below 100 % the share the pods gave reached the step's weight within tolerance.
    for weight in STEPS[:-1]:
        assert any(abs(share - weight) <= TOLERANCE for share in seen[weight]), (weight, seen)
    assert max(seen[10]) < 50, seen  # not the 50/50 two tracks of equal size would give
    assert columns - {"0"}, columns  # the WEIGHT column is the effective share

    # The splitter: the canary's share of the Ready pods rose through the steps, never near 50 % at 10 %.
    shares = [weight for weight in canary_weights(lab.observations) if weight > 0]
    assert shares, lab.observations
    for weight in STEPS:
        assert any(abs(share - weight) <= TOLERANCE for share in shares), (weight, shares)
    first_step = shares[: next(i for i, share in enumerate(shares) if share >= 25 - TOLERANCE)]
    assert all(share <= 10 + TOLERANCE for share in first_step), shares
    assert not lab.splitter.unplaced, (lab.splitter.unplaced, lab.observations)

"""A bad candidate is rolled back: traffic back on stable, the candidate tagged rejected, champion untouched."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.cluster.rollout.checks import assert_ramp, canary, history_events, stable_is, state_is
from tests.cluster.rollout.conftest import CANDIDATE_ALIAS, RESOURCE, LabModel, Objects, rollout_spec
from tests.support.lab import Lab
from tests.support.mlflow_server import MlflowServer

STEPS = (25, 50, 100)
ENDED = ("Succeeded", "RolledBack", "Aborted", "Idle")


def _roll_out_candidate(lab: Lab, model: LabModel, objects: Objects, spec: dict[str, Any]) -> dict[str, Any]:
    """Serve the champion, send load, set the candidate alias; the ModelDeployment once the rollout ended."""
    model.client.set_registered_model_alias(model.name, "champion", model.stable)
    objects.apply(spec)
    objects.wait(stable_is(model.stable), "Ready with the champion")
    lab.wait_serving("stable", model.stable)
    load = lab.start_load(rate=20, seconds=120)
    model.client.set_registered_model_alias(model.name, CANDIDATE_ALIAS, model.candidate)
    done = objects.wait(state_is(*ENDED), "the rollout ends", timeout=120)
    lab.wait_for_split(lambda split: split.canary_weight == 0 and split.canary_version is None, "canary gone")
    load.stop()
    return done


def _assert_rejected(model: LabModel, objects: Objects, lab: Lab, done: dict[str, Any], metric: str) -> dict[str, str]:
    assert canary(done)["state"] == "RolledBack", canary(done)
    # MLflow: the candidate is marked and no longer a candidate; the champion did not move.
    tags = model.tags(model.candidate)
    assert tags["modelpilot.io/rejected-metric"] == metric
    assert metric in tags["modelpilot.io/rejected"]
    assert tags["modelpilot.io/rejected-at"]
    assert "modelpilot.io/promoted" not in tags
    assert "modelpilot.io/superseded" not in model.tags(model.stable)
    assert model.alias(CANDIDATE_ALIAS) is None
    assert model.alias("champion") == model.stable
    # The cluster: the canary is gone, the stable track still serves the champion.
    objects.wait_gone("apps/v1", "Deployment", f"{RESOURCE}-canary")
    stable = objects.get("apps/v1", "Deployment", f"{RESOURCE}-stable")
    assert stable is not None
    assert stable["spec"]["template"]["metadata"]["labels"]["modelpilot.io/version"] == model.stable
    events = history_events(done)
    assert events[-2:] == ["RollbackStarted", "RolledBack"], events
    assert "PromotionStarted" not in events
    objects.wait_events({"RolloutStarted", "RollbackStarted", "RolledBack"})
    # Traffic: the canary never got past its first step, and only ever while it was ready.
    assert_ramp(lab.observations, STEPS, until=STEPS[0])
    assert lab.observations[-1].stable_version == model.stable
    assert not lab.splitter.unplaced, lab.splitter.unplaced
    return tags


def test_candidate_failing_a_fifth_of_requests_is_rolled_back_and_tagged_rejected(
    lab: Lab, lab_model: LabModel, objects: Objects, mlflow: MlflowServer, operator: subprocess.Popen[bytes]
) -> None:
    lab.faults[lab_model.candidate] = {"MODELPILOT_FAULT_ERROR_RATE": "0.2"}
    spec = rollout_spec(lab_model, mlflow.url, lab.prometheus_url, steps=STEPS, maxErrorRate=0.05, failureLimit=2)

    done = _roll_out_candidate(lab, lab_model, objects, spec)

    tags = _assert_rejected(lab_model, objects, lab, done, "error_rate")
    assert 0.1 <= float(tags["modelpilot.io/rejected-value"]) <= 0.3
    failed = [a for a in canary(done)["analyses"] if a["verdict"] == "Failed"]
    assert len(failed) == 2, canary(done)["analyses"]  # failureLimit 2: one failed analysis held the step
    assert "AnalysisFailed" in history_events(done)
    errors = {key: count for key, count in lab.splitter.answered.items() if key[2] >= 500}
    assert errors, "the faulty canary answered some requests with errors"
    assert {(track, version) for track, version, _ in errors} == {("canary", lab_model.candidate)}


def test_slow_candidate_is_rolled_back_naming_p99_latency(
    lab: Lab, lab_model: LabModel, objects: Objects, mlflow: MlflowServer, operator: subprocess.Popen[bytes]
) -> None:
    lab.faults[lab_model.candidate] = {"MODELPILOT_FAULT_LATENCY_MS": "800"}
    spec = rollout_spec(lab_model, mlflow.url, lab.prometheus_url, steps=STEPS, maxP99Latency="300ms", failureLimit=1)

    done = _roll_out_candidate(lab, lab_model, objects, spec)

    tags = _assert_rejected(lab_model, objects, lab, done, "p99_latency_seconds")
    assert float(tags["modelpilot.io/rejected-value"]) > 0.3
    assert "maxP99Latency" in tags["modelpilot.io/rejected"]
    assert not [key for key in lab.splitter.answered if key[2] >= 500]

"""A good candidate goes through every step and is promoted: alias flow and legacy stage flow."""

from __future__ import annotations

import subprocess
import time
import warnings

from tests.cluster.rollout.checks import (
    assert_ramp,
    canary,
    history_events,
    stable_is,
    state_is,
    step_weights_started,
)
from tests.cluster.rollout.conftest import CANDIDATE_ALIAS, RESOURCE, LabModel, Objects, rollout_spec
from tests.support.lab import Lab
from tests.support.mlflow_server import MlflowServer

STEPS = (25, 50, 100)
LOAD_RATE = 20.0


def test_good_candidate_is_promoted_and_written_back_to_mlflow(
    lab: Lab, lab_model: LabModel, objects: Objects, mlflow: MlflowServer, operator: subprocess.Popen[bytes]
) -> None:
    model = lab_model
    model.client.set_registered_model_alias(model.name, "champion", model.stable)
    objects.apply(rollout_spec(model, mlflow.url, lab.prometheus_url, steps=STEPS))
    objects.wait(stable_is(model.stable), "Ready with the champion")
    lab.wait_serving("stable", model.stable)
    load = lab.start_load(rate=LOAD_RATE, seconds=150)

    model.client.set_registered_model_alias(model.name, CANDIDATE_ALIAS, model.candidate)
    done = objects.wait(state_is("Succeeded", "RolledBack", "Aborted", "Idle"), "the rollout ends", timeout=150)
    lab.wait_for_split(
        lambda split: split.canary_weight == 0 and split.stable_version == model.candidate, "all traffic on stable"
    )
    time.sleep(1.0)  # a second of traffic on the promoted stable track
    report = load.stop()

    assert canary(done)["state"] == "Succeeded", canary(done)
    # MLflow: the champion moved, the candidate pointer is gone, both versions say what happened.
    assert model.alias("champion") == model.candidate
    assert model.alias(CANDIDATE_ALIAS) is None
    assert "modelpilot.io/promoted" in model.tags(model.candidate)
    assert model.tags(model.stable)["modelpilot.io/superseded"].endswith(f"by {model.candidate}")
    # The cluster: the stable track serves the candidate, the canary objects are gone, all traffic on stable.
    stable = objects.get("apps/v1", "Deployment", f"{RESOURCE}-stable")
    assert stable is not None
    assert stable["spec"]["template"]["metadata"]["labels"]["modelpilot.io/version"] == model.candidate
    objects.wait_gone("apps/v1", "Deployment", f"{RESOURCE}-canary")
    objects.wait_gone("v1", "Service", f"{RESOURCE}-canary")
    route = objects.get("gateway.networking.k8s.io/v1", "HTTPRoute", RESOURCE)
    assert route is not None
    assert [ref["name"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"]] == [f"{RESOURCE}-stable"]
    # Status history and Events show every step, each held and analysed.
    final = objects.wait(stable_is(model.candidate), "Ready with the promoted version")
    events = history_events(final)
    # A noisy machine may fail one analysis of a good candidate (failureLimit 2 allows it); the milestones stay.
    noise = {"StableVersionChanged", "AnalysisFailed"}
    rollout = [event for event in events[events.index("RolloutStarted") :] if event not in noise]
    assert rollout == [
        "RolloutStarted",
        *["StepStarted"] * len(STEPS),
        "PromotionStarted",
        "RegistryPromoted",
        "Promoted",
    ], events
    # The stable track changed version after the registry said so, not before.
    assert events.index("StableVersionChanged", events.index("RolloutStarted")) > events.index("RegistryPromoted")
    assert all(f"weight {step}%" in message for message, step in zip(step_weights_started(final), STEPS, strict=True))
    passed = [a for a in canary(final).get("analyses", []) if a["verdict"] == "Passed"]
    assert sorted({a["step"] for a in passed}) == [0, 1, 2]
    assert all(a["values"]["request_count"] >= 10 for a in passed)
    objects.wait_events({"RolloutStarted", "StepStarted", "PromotionStarted", "RegistryPromoted", "Promoted"})
    # The splitter: weights rose step by step and only ever reached a ready canary; every request answered.
    assert_ramp(lab.observations, STEPS)
    assert lab.observations[-1].canary_weight == 0
    assert lab.observations[-1].stable_version == model.candidate
    assert not lab.splitter.unplaced, lab.splitter.unplaced
    assert set(report.statuses) == {200}, report.statuses
    assert report.backends[f"canary/{model.candidate}"] > 0
    assert report.backends[f"stable/{model.candidate}"] > 0


def test_legacy_stage_flow_promotes_staging_to_production(
    lab: Lab, lab_model: LabModel, objects: Objects, mlflow: MlflowServer, operator: subprocess.Popen[bytes]
) -> None:
    model = lab_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated in MLflow, still supported
        model.client.transition_model_version_stage(model.name, model.stable, "Production")
    objects.apply(rollout_spec(model, mlflow.url, lab.prometheus_url, stage_flow=True, steps=(50, 100)))
    objects.wait(stable_is(model.stable), "Ready with the Production version")
    lab.wait_serving("stable", model.stable)
    load = lab.start_load(rate=LOAD_RATE, seconds=120)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.client.transition_model_version_stage(model.name, model.candidate, "Staging")
    done = objects.wait(state_is("Succeeded", "RolledBack", "Aborted", "Idle"), "the rollout ends", timeout=120)
    load.stop()

    assert canary(done)["state"] == "Succeeded", canary(done)
    assert model.stage(model.candidate) == "Production"
    assert model.stage(model.stable) == "Archived"
    assert "modelpilot.io/promoted" in model.tags(model.candidate)
    objects.wait(stable_is(model.candidate), "Ready with the promoted version")
    assert_ramp(lab.observations, (50, 100))

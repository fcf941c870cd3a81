"""A rollout under trouble: Prometheus down pauses it (never promotes), a killed operator resumes it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from tests.cluster.rollout.checks import assert_ramp, canary, history_events, stable_is, state_is, step_weights_started
from tests.cluster.rollout.conftest import CANDIDATE_ALIAS, LabModel, Objects, rollout_spec
from tests.cluster.rollout.registry_events import registry_events
from tests.support.cluster import Cluster
from tests.support.lab import Lab
from tests.support.mlflow_server import MlflowServer
from tests.support.operator_process import kill_hard, operator_process

STEPS = (25, 50, 100)
ENDED = ("Succeeded", "RolledBack", "Aborted", "Idle")


def _serve_champion_under_load(lab: Lab, model: LabModel, objects: Objects, spec: dict[str, Any]) -> None:
    model.client.set_registered_model_alias(model.name, "champion", model.stable)
    objects.apply(spec)
    objects.wait(stable_is(model.stable), "Ready with the champion")
    lab.wait_serving("stable", model.stable)
    lab.start_load(rate=20, seconds=150)


def test_prometheus_down_pauses_the_rollout_until_it_is_back(
    lab: Lab, lab_model: LabModel, objects: Objects, mlflow: MlflowServer, operator: subprocess.Popen[bytes]
) -> None:
    model = lab_model
    spec = rollout_spec(model, mlflow.url, lab.prometheus_url, steps=STEPS, interval="2s", inconclusiveLimit=2)
    _serve_champion_under_load(lab, model, objects, spec)
    model.client.set_registered_model_alias(model.name, CANDIDATE_ALIAS, model.candidate)
    objects.wait(lambda obj: canary(obj).get("weight", 0) > 0, "the canary carries traffic")

    lab.stop_prometheus()
    paused = canary(objects.wait(state_is("Paused"), "paused while Prometheus is down", timeout=40))
    assert paused["lastAnalysis"]["verdict"] == "Inconclusive"
    assert "Prometheus unavailable" in paused["lastAnalysis"]["reason"]
    # Paused keeps its weight and keeps analysing (each interval), but never moves on.
    deadline = time.monotonic() + 6.0
    while time.monotonic() < deadline:
        current = canary(objects.mdep())
        assert (current["state"], current["step"], current["weight"]) == ("Paused", paused["step"], paused["weight"])
        time.sleep(0.5)
    assert len(canary(objects.mdep())["analyses"]) > len(paused["analyses"]), "no analysis while paused"

    lab.start_prometheus()
    done = objects.wait(state_is(*ENDED), "the rollout ends after Prometheus is back", timeout=120)
    assert canary(done)["state"] == "Succeeded", canary(done)
    events = history_events(done)
    assert events.index("RolloutPaused") < events.index("RolloutResumed") < events.index("PromotionStarted"), events
    assert model.alias("champion") == model.candidate
    objects.wait_events({"RolloutPaused", "RolloutResumed", "Promoted"})
    assert_ramp(lab.observations, STEPS)


def test_operator_killed_mid_rollout_resumes_at_the_same_step_and_writes_the_registry_once(
    cluster: Cluster,
    namespace: str,
    lab: Lab,
    lab_model: LabModel,
    objects: Objects,
    mlflow: MlflowServer,
    tmp_path: Path,
) -> None:
    model = lab_model
    log = tmp_path / "operator.log"
    spec = rollout_spec(model, mlflow.url, lab.prometheus_url, steps=STEPS, interval="3s")
    with registry_events(model.client, model.name) as writes:
        with operator_process(cluster.kubeconfig, namespace, log) as first:
            _serve_champion_under_load(lab, model, objects, spec)
            model.client.set_registered_model_alias(model.name, CANDIDATE_ALIAS, model.candidate)
            objects.wait(lambda obj: canary(obj).get("weight") == STEPS[1], "the second step", timeout=90)
            kill_hard(first)
        at_kill = canary(objects.mdep())
        time.sleep(4.0)  # longer than the interval: an analysis falls due while no operator runs
        assert canary(objects.mdep()) == at_kill
        assert (at_kill["state"], at_kill["step"]) == ("Progressing", 1)

        steps_seen: list[int] = []

        def ended(obj: dict[str, Any]) -> bool:
            steps_seen.append(int(canary(obj).get("step", -1)))
            return state_is(*ENDED)(obj)

        with operator_process(cluster.kubeconfig, namespace, log):
            done = objects.wait(ended, "the rollout ends after the restart", timeout=120)
            objects.wait(stable_is(model.candidate), "Ready with the promoted version")
        writes.wait_for(6)  # champion and candidate set by the test, 2 tags, champion moved, candidate gone

    assert canary(done)["state"] == "Succeeded", canary(done)
    # Resumed at the same step: never back to step 0, each step started once, none skipped.
    assert steps_seen
    assert min(steps_seen) >= at_kill["step"], steps_seen
    started = step_weights_started(done)
    assert len(started) == len(STEPS), started
    assert all(f"weight {step}%" in message for message, step in zip(started, STEPS, strict=True))
    passed_steps = sorted({a["step"] for a in canary(done)["analyses"] if a["verdict"] == "Passed"})
    assert passed_steps == [0, 1, 2]
    assert_ramp(lab.observations, STEPS)
    # The registry was written exactly once for the promotion (MLflow reports every write).
    assert len(writes.tags_set("modelpilot.io/promoted", model.candidate)) == 1, writes.received
    assert len(writes.tags_set("modelpilot.io/superseded", model.stable)) == 1, writes.received
    champion_moves = [w for w in writes.aliases_set("champion") if str(w.data.get("version")) == model.candidate]
    assert len(champion_moves) == 1, writes.received
    assert model.alias("champion") == model.candidate
    assert model.alias(CANDIDATE_ALIAS) is None

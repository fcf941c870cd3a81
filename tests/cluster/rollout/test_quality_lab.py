"""Rollouts judged by what the model answers, with real serving processes writing to a real PostgreSQL.

The lab's servers run with the prediction log on (the session's PostgreSQL, migrated afresh per test); the two
versions are flow classifiers trained in the lab, one on the real labels and one on shuffled labels, so the
candidate is as fast and as healthy as the champion and only its answers are worse. The load sends rows of
the same seeded generator with their request ids and posts their ground truth a little later, as delayed
labels arrive; the servers join them in the database and count them, and the real Prometheus and operator
judge the canary by them.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass

import psycopg
import pytest
from mlflow import MlflowClient

from modelpilot.inference.predlog.migrate import migrate
from tests.cluster.rollout.checks import canary, stable_is, state_is
from tests.cluster.rollout.conftest import CANDIDATE_ALIAS, RESOURCE, LabModel, Objects, rollout_spec
from tests.support.lab import (
    Lab,
    LabelledTraffic,
    LoggedClassifier,
    labelled_flows,
    log_flow_classifier,
    register_versions,
    train_flow_classifier,
)
from tests.support.mlflow_server import MlflowServer
from tests.support.postgres import PostgresServer

LOAD_RATE = 20.0
LABEL_DELAY = 2.0
# The classifier trained on real labels is right on about 87% of balanced traffic, the one trained on
# shuffled labels on about half of it (measured on the generator; the test checks both in the database).
MIN_ACCURACY = 0.7


@dataclass(frozen=True)
class FlowClassifiers:
    """A well-trained and a badly-trained flow classifier, logged once for the session."""

    good: LoggedClassifier
    bad: LoggedClassifier


@pytest.fixture(scope="session")
def flow_classifiers(mlflow: MlflowServer) -> FlowClassifiers:
    good = log_flow_classifier(mlflow.url, train_flow_classifier(seed=1))
    bad = log_flow_classifier(mlflow.url, train_flow_classifier(seed=2, shuffle_labels=True))
    return FlowClassifiers(good, bad)


@pytest.fixture
def flow_model(mlflow: MlflowServer, flow_classifiers: FlowClassifiers) -> LabModel:
    """A fresh registered model: version 1 the good classifier (champion to be), version 2 the bad one."""
    name = f"flows-{uuid.uuid4().hex[:8]}"
    [stable] = register_versions(flow_classifiers.good, name, 1)
    [candidate] = register_versions(flow_classifiers.bad, name, 1)
    return LabModel(name, MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url), stable, candidate)


@pytest.fixture
def predlog_dsn(postgres: PostgresServer) -> str:
    """An empty, migrated prediction log database."""
    postgres.start()
    postgres.reset()
    migrate(postgres.dsn)
    return postgres.dsn


@dataclass(frozen=True)
class LoggedTrack:
    """What the predictions table holds for one version and track."""

    rows: int
    labelled: int  # rows with a label stored for their request id and row
    counted: int  # rows marked counted (joined to their label and counted in the metric)
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.labelled if self.labelled else float("nan")


def logged_tracks(dsn: str, model: str) -> dict[tuple[str, str], LoggedTrack]:
    """(version, track) → what the prediction log holds for them, joined to the labels."""
    query = """
        SELECT p.version, p.track, count(*), count(l.label), count(*) FILTER (WHERE p.counted),
               count(*) FILTER (WHERE p.predicted_class = l.label)
        FROM predictions p LEFT JOIN labels l ON l.request_id = p.request_id AND l.row = p.row
        WHERE p.model = %s GROUP BY p.version, p.track
    """
    with psycopg.connect(dsn) as connection:
        found = connection.execute(query, (model,)).fetchall()
    return {(version, track): LoggedTrack(*counts) for version, track, *counts in found}


def test_a_candidate_that_answers_fast_but_wrong_is_rolled_back_by_its_live_accuracy(
    lab: Lab,
    flow_model: LabModel,
    objects: Objects,
    mlflow: MlflowServer,
    predlog_dsn: str,
    operator: subprocess.Popen[bytes],
) -> None:
    model = flow_model
    lab.server_env.update({"MODELPILOT_PREDLOG_DSN": predlog_dsn, "MODELPILOT_PREDLOG_FLUSH_SECONDS": "0.2"})
    model.client.set_registered_model_alias(model.name, "champion", model.stable)
    spec = rollout_spec(model, mlflow.url, lab.prometheus_url, minAccuracy=MIN_ACCURACY, minLabels=10)
    objects.resources.apply_with_this_crd(spec)
    objects.wait(stable_is(model.stable), "Ready with the champion")
    lab.wait_serving("stable", model.stable)
    flows = labelled_flows(500, seed=4242)
    traffic = LabelledTraffic(flows.body, flows.label, f"{lab.url}/v1/labels", uuid.uuid4().hex[:12], LABEL_DELAY)
    load = lab.start_load(rate=LOAD_RATE, seconds=150, labelled=traffic)

    model.client.set_registered_model_alias(model.name, CANDIDATE_ALIAS, model.candidate)
    done = objects.wait(state_is("Succeeded", "RolledBack", "Aborted"), "the rollout ends", timeout=150)
    lab.wait_for_split(lambda split: split.canary_weight == 0, "no traffic on the canary")
    report = load.stop()

    assert canary(done)["state"] == "RolledBack", canary(done)
    failed = [a for a in canary(done)["analyses"] if a["verdict"] == "Failed"]
    assert failed, canary(done)["analyses"]
    for result in failed:
        # Rejected for what it answered, not for how: no errors, answers as fast as the champion's.
        assert f"below minAccuracy {MIN_ACCURACY}" in result["reason"], result
        values = result["values"]
        assert values["error_rate"] == pytest.approx(0.0, abs=1e-9), result
        assert values["p99_latency_seconds"] < 0.3, result
        assert values["labelled_predictions"] >= 10, result
        assert values["accuracy"] < MIN_ACCURACY, result
    tags = model.tags(model.candidate)
    assert tags["modelpilot.io/rejected-metric"] == "accuracy"
    assert float(tags["modelpilot.io/rejected-value"]) < MIN_ACCURACY
    assert model.alias("champion") == model.stable
    stable = objects.get("apps/v1", "Deployment", f"{RESOURCE}-stable")
    assert stable is not None
    assert stable["spec"]["template"]["metadata"]["labels"]["modelpilot.io/version"] == model.stable
    assert lab.observations[-1].stable_version == model.stable

    # The load: every request answered, every label taken; the canary did answer some of them.
    assert set(report.statuses) == {200}, report.statuses
    assert set(report.label_statuses) == {200}, report.label_statuses
    assert report.labels_posted == len(report.answered_ids)
    assert report.backends[f"canary/{model.candidate}"] > 0
    # The database: rows of both versions, each joined to its label, and the accuracy the operator saw.
    tracks = logged_tracks(predlog_dsn, model.name)
    champion, candidate = tracks[(model.stable, "stable")], tracks[(model.candidate, "canary")]
    assert candidate.rows == report.backends[f"canary/{model.candidate}"], tracks
    assert champion.rows == report.backends[f"stable/{model.stable}"], tracks
    for logged in (champion, candidate):
        assert logged.labelled == logged.rows, tracks
        assert logged.counted == logged.rows, tracks
    assert champion.accuracy > MIN_ACCURACY + 0.1, tracks
    assert candidate.accuracy < MIN_ACCURACY - 0.1, tracks


def test_the_shadow_phase_rejects_a_disagreeing_candidate_before_any_user_sees_it(
    lab: Lab,
    flow_model: LabModel,
    objects: Objects,
    mlflow: MlflowServer,
    predlog_dsn: str,
    operator: subprocess.Popen[bytes],
) -> None:
    model = flow_model
    lab.server_env.update(
        {
            "MODELPILOT_PREDLOG_DSN": predlog_dsn,
            "MODELPILOT_PREDLOG_FLUSH_SECONDS": "0.2",
            "MODELPILOT_PREDLOG_INPUTS": "hash",  # the pairing of candidate and stable rows is by inputs hash
            "MODELPILOT_PREDLOG_SHADOW_INTERVAL_SECONDS": "1",
        }
    )
    model.client.set_registered_model_alias(model.name, "champion", model.stable)
    spec = rollout_spec(model, mlflow.url, lab.prometheus_url)
    spec["spec"]["rollout"]["shadow"] = {"minComparisons": 30, "minAgreement": 0.9, "maxDuration": "90s"}
    objects.resources.apply_with_this_crd(spec)
    objects.wait(stable_is(model.stable), "Ready with the champion")
    lab.wait_serving("stable", model.stable)
    flows = labelled_flows(500, seed=4343)
    traffic = LabelledTraffic(flows.body, flows.label, f"{lab.url}/v1/labels", uuid.uuid4().hex[:12], LABEL_DELAY)
    load = lab.start_load(rate=LOAD_RATE, seconds=150, labelled=traffic)

    model.client.set_registered_model_alias(model.name, CANDIDATE_ALIAS, model.candidate)
    done = objects.wait(state_is("Succeeded", "RolledBack", "Aborted", "Paused"), "the rollout ends", timeout=150)
    lab.wait_for_split(lambda split: split.mirror is None and split.canary_version is None, "the canary gone")
    report = load.stop()

    assert canary(done)["state"] == "RolledBack", canary(done)
    phase = canary(done)["shadow"]
    assert phase["state"] == "Failed", phase
    assert phase["comparisons"] >= 30, phase
    assert phase["agreement"] < 0.9, phase
    assert canary(done).get("analyses", []) == []  # no live step was analysed: there was none
    tags = model.tags(model.candidate)
    assert tags["modelpilot.io/rejected-metric"] == "shadow_agreement"
    assert float(tags["modelpilot.io/rejected-value"]) == pytest.approx(phase["agreement"], abs=0.01)
    assert model.alias("champion") == model.stable
    # No user saw the candidate: no weight ever, every answer the load got was the champion's.
    assert all(split.canary_weight == 0 for split in lab.observations), lab.observations
    assert any(split.mirror == f"{RESOURCE}-canary" and split.canary_version for split in lab.observations)
    assert set(report.statuses) == {200}, report.statuses
    assert set(report.backends) == {f"stable/{model.stable}"}, report.backends
    # But the candidate's serving process answered the mirrored copies, and logged them.
    mirrored = sum(count for (track, version, status), count in lab.splitter.mirrored.items() if status == 200)
    assert mirrored >= 30, lab.splitter.mirrored
    tracks = logged_tracks(predlog_dsn, model.name)
    assert tracks[(model.candidate, "canary")].rows >= 30, tracks
    assert tracks[(model.stable, "stable")].rows == report.backends[f"stable/{model.stable}"], tracks

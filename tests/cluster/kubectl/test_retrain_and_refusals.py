"""`kubectl modelpilot retrain` on the real API server with the real operator and MLflow, and the answers
the operator gives to requests that do not apply when they reach it."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.cluster.kubectl.conftest import ALICE, BOB, Plugin, api_as, patch_annotations
from tests.cluster.operator.conftest import RegisteredModel, model_deployment
from tests.support.cluster import Cluster
from tests.support.namespace_objects import Resources

NAME = "fraud"


def training() -> dict[str, Any]:
    return {
        "image": "ghcr.io/modelpilot/train:test",
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "backoffLimit": 0,
        "podAnnotations": {"modelpilot.io/kwok-duration": "2s"},
    }


def last_request(obj: dict[str, Any]) -> dict[str, Any]:
    return dict((obj.get("status") or {}).get("lastRequest") or {})


def test_retrain_starts_a_job_and_is_audited_on_the_version_it_retrains(
    resources: Resources,
    model: RegisteredModel,
    people: list[str],
    request_policy: list[dict[str, Any]],
    plugin: Plugin,
    operator: subprocess.Popen[bytes],
) -> None:
    version = model.add_version()
    model.set_alias("champion", version)
    resources.apply(model_deployment(NAME, model, training=training()))
    resources.wait_mdep(NAME, lambda o: (o.get("status") or {}).get("phase") == "Ready", "serving")

    outcome = plugin.run(BOB, "retrain", NAME, "--reason", "fresh labels", "-o", "json")
    assert outcome.code == 0, outcome.err
    answer = outcome.json()
    assert (answer["outcome"], answer["requestedBy"], answer["version"]) == ("Applied", BOB, version)

    started = resources.wait_mdep(
        NAME, lambda o: ((o.get("status") or {}).get("training") or {}).get("trigger") == "request", "Job started"
    )
    job = started["status"]["training"]["job"]
    assert resources.get("batch/v1", "Job", job) is not None
    resources.wait_mdep(NAME, lambda o: last_request(o).get("recorded") is True, "retrain kept in MLflow")
    tags = model.client.get_model_version(model.name, version).tags
    assert tags[f"modelpilot.io/request.{answer['id']}"] == f"retrain by {BOB} at {answer['time']}: fresh labels"
    events = [e for e in resources.events(NAME) if e["reason"] == "RetrainRequested"]
    assert any(BOB in e["message"] and "fresh labels" in e["message"] for e in events), events
    history = [e for e in resources.mdep(NAME)["status"]["history"] if e["event"] == "RetrainRequested"]
    assert [(e["requestedBy"], e["requestReason"]) for e in history] == [(BOB, "fresh labels")]

    # Rollout actions do not apply without a rollout: the plugin says so and writes nothing.
    refused = plugin.run(ALICE, "pause", NAME)
    assert refused.code == 5
    assert "its spec has no rollout section" in refused.err
    assert last_request(resources.mdep(NAME))["id"] == answer["id"]


def test_a_request_that_reaches_the_operator_when_it_does_not_apply_is_answered_refused(
    cluster: Cluster,
    resources: Resources,
    model: RegisteredModel,
    people: list[str],
    request_policy: list[dict[str, Any]],
    plugin: Plugin,
    operator: subprocess.Popen[bytes],
) -> None:
    version = model.add_version()
    model.set_alias("champion", version)
    resources.apply(model_deployment(NAME, model))
    resources.wait_mdep(NAME, lambda o: (o.get("status") or {}).get("phase") == "Ready", "serving")

    # Written without the plugin's check (as a script might): the operator answers it.
    request = {
        "modelpilot.io/request": "promote",
        "modelpilot.io/request-id": "scripted-1",
        "modelpilot.io/requested-by": ALICE,
        "modelpilot.io/request-reason": "from a script",
    }
    patch_annotations(api_as(cluster, ALICE), resources.namespace, NAME, request)
    answered = resources.wait_mdep(NAME, lambda o: last_request(o).get("id") == "scripted-1", "answered")
    answer = last_request(answered)
    assert (answer["outcome"], answer["requestedBy"]) == ("Refused", ALICE)
    assert "no rollout in flight" in answer["message"]
    refusals = [e for e in resources.events(NAME) if e["reason"] == "RequestRefused"]
    assert any(ALICE in e["message"] and "from a script" in e["message"] for e in refusals), refusals
    assert not [key for key in model.client.get_model_version(model.name, version).tags if "request." in key]

    # retrain without a training section: refused by the plugin, nothing written.
    outcome = plugin.run(BOB, "retrain", NAME)
    assert outcome.code == 5
    assert "its spec has no training section" in outcome.err
    assert last_request(resources.mdep(NAME))["id"] == "scripted-1"

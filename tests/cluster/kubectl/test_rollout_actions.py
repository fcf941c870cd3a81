"""`kubectl modelpilot` against the real API server, the real operator and a real MLflow server: every
rollout action in each state it applies to, refusals where it does not, and the audit of each act in
the status history, the Events and the MLflow version's tags, signed with an identity that the chart's
admission policy does not let anyone forge."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from modelpilot.operator.rollout.requests import REQUEST_ANNOTATIONS
from tests.cluster.kubectl.conftest import (
    ALICE,
    BOB,
    CAROL,
    PLUGIN,
    Plugin,
    api_as,
    patch_annotations,
    plugin_on_path,
    require_own_crd,
)
from tests.cluster.operator.conftest import RegisteredModel, model_deployment
from tests.support.cluster import Cluster, wait_until
from tests.support.namespace_objects import Resources

NAME = "fraud"
# Prometheus is not there: every analysis is Inconclusive and, under this limit, the rollout holds its step.
UNREACHABLE_PROMETHEUS = "http://127.0.0.1:9"


def rolled_out(model: RegisteredModel) -> dict[str, Any]:
    manifest = model_deployment(
        NAME,
        model,
        rollout={
            "steps": [20, 50, 100],
            "interval": "2s",
            "analysis": {"prometheus": UNREACHABLE_PROMETHEUS, "inconclusiveLimit": 1000},
        },
    )
    manifest["spec"]["model"]["candidateAlias"] = "challenger"
    return manifest


def canary(obj: dict[str, Any]) -> dict[str, Any]:
    return dict((obj.get("status") or {}).get("canary") or {})


def in_state(state: str, weighted: bool = False) -> Any:
    return lambda obj: canary(obj).get("state") == state and (not weighted or canary(obj).get("weight", 0) > 0)


def request_tags(model: RegisteredModel, version: str) -> dict[str, str]:
    tags = model.client.get_model_version(model.name, version).tags
    return {key: value for key, value in tags.items() if key.startswith("modelpilot.io/request.")}


def audited(
    cluster: Cluster, resources: Resources, model: RegisteredModel, answer: dict[str, Any], event: str, reason: str
) -> None:
    """The request of `answer` is in all three places: history, an Event, the version's tags."""
    require_own_crd(cluster)
    who, why, version = answer["requestedBy"], answer["reason"], answer["version"]
    obj = resources.wait_mdep(
        NAME,
        lambda o: o["status"]["lastRequest"]["id"] == answer["id"] and o["status"]["lastRequest"]["recorded"],
        "request kept in MLflow",
    )
    entries = [e for e in obj["status"]["history"] if e.get("requestedBy") == who and e.get("requestReason") == why]
    assert event in [entry["event"] for entry in entries], obj["status"]["history"]
    events = [e for e in resources.events(NAME) if e["reason"] == event and who in e["message"] and why in e["message"]]
    assert events, resources.events(NAME)
    key = f"modelpilot.io/request.{answer['id']}"
    assert request_tags(model, version)[key] == f"{answer['action']} by {who} at {answer['time']}: {why}"
    assert reason == why


def act(plugin: Plugin, user: str, action: str, reason: str) -> dict[str, Any]:
    outcome = plugin.run(user, action, NAME, "--reason", reason, "-o", "json")
    assert outcome.code == 0, outcome.err
    answer: dict[str, Any] = outcome.json()
    assert (answer["outcome"], answer["action"], answer["requestedBy"]) == ("Applied", action, user)
    return answer


def start_rollout(resources: Resources, model: RegisteredModel) -> tuple[str, str]:
    """Version 1 serves; version 2 is rolled out and holds its first step (every analysis Inconclusive)."""
    first, second = model.add_version(), model.add_version()
    model.set_alias("champion", first)
    resources.apply(rolled_out(model))
    resources.wait_mdep(NAME, lambda o: (o.get("status") or {}).get("phase") == "Ready", "serving version 1")
    model.set_alias("challenger", second)
    resources.wait_mdep(NAME, in_state("Progressing", weighted=True), "rollout of version 2 at its first step")
    return first, second


def test_pause_resume_and_abort_apply_in_their_states_and_each_act_is_audited_in_three_places(
    cluster: Cluster,
    resources: Resources,
    model: RegisteredModel,
    people: list[str],
    request_policy: list[dict[str, Any]],
    plugin: Plugin,
    operator: subprocess.Popen[bytes],
) -> None:
    first, second = start_rollout(resources, model)

    # pause while Progressing: the weight holds, a person holds it.
    answer = act(plugin, ALICE, "pause", "freeze for the quarterly report")
    paused = resources.wait_mdep(NAME, in_state("Paused"), "paused")
    assert canary(paused)["heldBy"] == ALICE
    assert canary(paused)["weight"] == 20
    audited(cluster, resources, model, answer, "RolloutPaused", "freeze for the quarterly report")

    # pause again: does not apply; refused by the plugin before anything is written.
    again = plugin.run(BOB, "pause", NAME, "--reason", "twice")
    assert again.code == 5
    assert "already paused by alice" in again.err
    assert resources.mdep(NAME)["status"]["lastRequest"]["id"] == answer["id"]

    # resume while Paused.
    answer = act(plugin, BOB, "resume", "report is out")
    resumed = resources.wait_mdep(NAME, in_state("Progressing"), "resumed")
    assert "heldBy" not in canary(resumed)
    audited(cluster, resources, model, answer, "RolloutResumed", "report is out")

    # abort while Progressing: the canary goes, the registry's pointers stay.
    answer = act(plugin, BOB, "abort", "p99 looks off")
    aborted = resources.wait_mdep(NAME, in_state("Aborted"), "aborted")
    assert canary(aborted)["heldBy"] == BOB
    assert (model.alias("champion"), model.alias("challenger")) == (first, second)
    audited(cluster, resources, model, answer, "RolloutAborted", "p99 looks off")
    # ... and it stays aborted: the version is not rolled out again by itself.
    resources.wait_gone("apps/v1", "Deployment", f"{NAME}-canary", timeout=60)
    assert canary(resources.mdep(NAME))["state"] == "Aborted"

    # resume while Aborted (by request): the rollout starts again at the first step.
    answer = act(plugin, ALICE, "resume", "false alarm")
    resources.wait_mdep(NAME, in_state("Progressing", weighted=True), "rolled out again")
    audited(cluster, resources, model, answer, "RolloutStarted", "false alarm")

    # abort while Paused.
    act(plugin, ALICE, "pause", "hold")
    resources.wait_mdep(NAME, in_state("Paused"), "paused again")
    answer = act(plugin, BOB, "abort", "abort while paused")
    resources.wait_mdep(NAME, in_state("Aborted"), "aborted while paused")
    audited(cluster, resources, model, answer, "RolloutAborted", "abort while paused")

    # The history command and the status screen show who asked and why.
    history = plugin.run(ALICE, "history", NAME)
    assert history.code == 0
    assert "abort while paused" in history.out
    screen = plugin.run(ALICE, "status", NAME)
    assert screen.code == 0
    assert f"Last request: abort by {BOB}" in screen.out
    assert f"Held by:      {BOB}" in screen.out


def test_promote_applies_while_paused_or_progressing_skips_the_remaining_steps_and_is_audited(
    cluster: Cluster,
    resources: Resources,
    model: RegisteredModel,
    people: list[str],
    request_policy: list[dict[str, Any]],
    plugin: Plugin,
    operator: subprocess.Popen[bytes],
) -> None:
    _, second = start_rollout(resources, model)

    # promote while Paused.
    act(plugin, ALICE, "pause", "hold before promoting")
    resources.wait_mdep(NAME, in_state("Paused"), "paused before promoting")
    answer = act(plugin, ALICE, "promote", "business sign-off")
    resources.wait_mdep(NAME, in_state("Succeeded"), "promoted", timeout=90)
    assert (model.alias("champion"), model.alias("challenger")) == (second, None)
    audited(cluster, resources, model, answer, "PromotionStarted", "business sign-off")

    # promote does not apply once the rollout is over.
    late = plugin.run(ALICE, "promote", NAME)
    assert late.code == 5
    assert "the rollout is Succeeded: promote applies while it is Progressing or Paused" in late.err

    # promote while Progressing skips the remaining steps: version 3 is promoted from its first step.
    third = model.add_version()
    model.set_alias("challenger", third)
    rolling = resources.wait_mdep(NAME, in_state("Progressing", weighted=True), "rollout of version 3")
    assert canary(rolling)["step"] == 0
    answer = act(plugin, BOB, "promote", "hotfix")
    resources.wait_mdep(NAME, in_state("Succeeded"), "version 3 promoted", timeout=90)
    assert model.alias("champion") == third
    audited(cluster, resources, model, answer, "PromotionStarted", "hotfix")
    history = resources.mdep(NAME)["status"]["history"]
    steps = [entry for entry in history if entry["event"] == "StepStarted" and entry["version"] == third]
    assert len(steps) == 1, "the steps after the first were skipped"


def test_no_one_may_sign_a_request_with_another_name_or_act_without_rights(
    cluster: Cluster,
    resources: Resources,
    model: RegisteredModel,
    people: list[str],
    request_policy: list[dict[str, Any]],
    plugin: Plugin,
) -> None:
    version = model.add_version()
    model.set_alias("champion", version)
    resources.apply(rolled_out(model))
    namespace = resources.namespace
    forged = dict.fromkeys(REQUEST_ANNOTATIONS, "x") | {"modelpilot.io/requested-by": BOB}

    with pytest.raises(ApiException) as refused:
        patch_annotations(api_as(cluster, ALICE), namespace, NAME, forged)
    assert refused.value.status in (403, 422)
    assert 'modelpilot.io/requested-by must be "alice"' in json.loads(refused.value.body or "{}")["message"]

    # Signed with one's own name, the same request is admitted.
    patch_annotations(api_as(cluster, ALICE), namespace, NAME, forged | {"modelpilot.io/requested-by": ALICE})
    # A change to any request annotation signed by someone else is refused, even leaving the name alone.
    with pytest.raises(ApiException):
        patch_annotations(api_as(cluster, BOB), namespace, NAME, {"modelpilot.io/request-reason": "edited"})
    # Other edits by others are not requests and pass (the operator's own writes are such edits).
    patch_annotations(api_as(cluster, BOB), namespace, NAME, {"example.com/note": "unrelated"})

    # Without RBAC the plugin says so, with no traceback.
    outcome = plugin.run(CAROL, "pause", NAME)
    assert outcome.code == 4
    assert outcome.err.startswith("error: you may not get ModelDeployment fraud in namespace")
    assert "Traceback" not in outcome.err

    # An unknown resource.
    missing = plugin.run(ALICE, "status", "nope")
    assert (missing.code, missing.err.strip()) == (
        3,
        f'error: ModelDeployment "nope" not found in namespace {namespace}',
    )


def test_the_plugin_runs_as_kubectl_modelpilot_from_path_and_shows_the_resource(
    cluster: Cluster, resources: Resources, model: RegisteredModel, people: list[str], tmp_path: Any
) -> None:
    version = model.add_version()
    model.set_alias("champion", version)
    resources.apply(rolled_out(model))
    result = subprocess.run(
        [
            str(cluster.kubectl),
            "modelpilot",
            "list",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "-n",
            resources.namespace,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=plugin_on_path(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "MODEL", "STABLE", "CANARY", "WEIGHT", "STEP", "PHASE", "AGE"]
    assert row.split()[:2] == [NAME, model.name]

    # Machine-readable output is the object itself.
    as_yaml = Plugin(cluster.kubeconfig, resources.namespace).run(ALICE, "get", NAME, "-o", "yaml")
    assert (as_yaml.code, yaml.safe_load(as_yaml.out)["spec"]["model"]["name"]) == (0, model.name)

    # --watch redraws the screen until interrupted.
    where = ["--kubeconfig", str(cluster.kubeconfig), "-n", resources.namespace]
    watching = subprocess.Popen(
        [*PLUGIN, "status", NAME, "--watch", "--interval", "0.5", *where], stdout=subprocess.PIPE, text=True
    )
    screens: list[str] = []
    reader = threading.Thread(target=lambda: screens.extend(iter(watching.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_until(
            lambda: sum(f"Name:         {NAME}" in line for line in screens) >= 2, timeout=90, description="2 screens"
        )
    finally:
        watching.send_signal(signal.SIGINT)
        watching.wait(timeout=30)
    assert watching.returncode == 130

    # logs names what is missing rather than printing nothing.
    logs = Plugin(cluster.kubeconfig, resources.namespace).run(ALICE, "logs", NAME, "--track", "canary")
    assert (logs.code, logs.err.strip()) == (3, f"error: {NAME} has no canary pods in namespace {resources.namespace}")

"""The real reconcile and rollout executor, killed right after each registry write of a promotion or a
rollback, restarted from nothing but the cluster and the registry: every write reaches MLflow once.

A "kill" is an exception raised by the registry client right after MLflow answered a write; the
restarted operator is a new runtime (empty memory) that reads the resource afresh, as a new process
would. MLflow's own webhooks count the writes it received, besides the client's record.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client as k8s
from mlflow import MlflowClient

from modelpilot.operator.handlers.reconcile import reconcile
from modelpilot.operator.kubeapi import KubeApi, load_api_client
from modelpilot.operator.registry import Credentials, MlflowRegistry, RegistryUnavailableError
from modelpilot.operator.rollout import Observation, decide
from modelpilot.operator.runtime import Runtime
from modelpilot.operator.settings import OperatorSettings
from modelpilot.operator.spec import GROUP, PLURAL, VERSION, parse_spec
from modelpilot.operator.status import AnalysisResult, CanaryStatus
from tests.cluster.rollout.registry_events import registry_events
from tests.support.cluster import Cluster
from tests.support.mlflow_server import MlflowServer
from tests.support.namespace_objects import Resources

NAME = "crashy"
CANDIDATE_ALIAS = "challenger"


class Killed(BaseException):
    """The operator process died here."""


class KilledAfterWrites(MlflowRegistry):
    """The operator's MLflow client, killed right after the writes whose numbers are in `kill_after`."""

    def __init__(self, tracking_uri: str, kill_after: set[int]) -> None:
        super().__init__(tracking_uri)
        self.kill_after = kill_after
        self.writes: list[tuple[str, ...]] = []

    def _wrote(self, *write: str) -> None:
        self.writes.append(write)
        if len(self.writes) in self.kill_after:
            raise Killed(write)

    async def set_alias(self, name: str, alias: str, version: str) -> None:
        await super().set_alias(name, alias, version)
        self._wrote("set_alias", alias, version)

    async def delete_alias(self, name: str, alias: str) -> None:
        await super().delete_alias(name, alias)
        self._wrote("delete_alias", alias)

    async def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        await super().set_version_tag(name, version, key, value)
        self._wrote("set_tag", version, key, value)

    async def transition_stage(self, name: str, version: str, stage: str, *, archive_existing: bool) -> None:
        await super().transition_stage(name, version, stage, archive_existing=archive_existing)
        self._wrote("transition_stage", version, stage)


class UnavailableOnWrite(KilledAfterWrites):
    """The operator's MLflow client, whose write number `failing` (counting attempts) finds MLflow
    unavailable once — a 503 or a dropped connection — before anything is written."""

    def __init__(self, tracking_uri: str, failing: int) -> None:
        super().__init__(tracking_uri, set())
        self.failing = failing
        self.attempts = 0

    def _attempt(self) -> None:
        self.attempts += 1
        if self.attempts == self.failing:
            raise RegistryUnavailableError("503 from the registry (simulated)")

    async def set_alias(self, name: str, alias: str, version: str) -> None:
        self._attempt()
        await super().set_alias(name, alias, version)

    async def delete_alias(self, name: str, alias: str) -> None:
        self._attempt()
        await super().delete_alias(name, alias)

    async def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._attempt()
        await super().set_version_tag(name, version, key, value)


def _spec(model: str, tracking_uri: str) -> dict[str, Any]:
    return {
        "model": {"name": model, "alias": "champion", "candidateAlias": CANDIDATE_ALIAS},
        "registry": {"trackingUri": tracking_uri, "pollInterval": "1s"},
        "serving": {"image": "ghcr.io/modelpilot/inference:test", "replicas": 1},
        "rollout": {
            "steps": [50, 100],
            "interval": "1s",
            # Never queried: the rollout starts at its outcome.
            "analysis": {"prometheus": "http://127.0.0.1:9", "failureLimit": 1},
        },
    }


def _outcome_intent(raw_spec: dict[str, Any], verdict: str) -> CanaryStatus:
    """The status the real machine records when the last step's analysis passes (Promoting) or an
    analysis fails (RollingBack): the intent, before any registry write."""
    spec = parse_spec(raw_spec)
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = (now - timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
    step, weight = (1, 100) if verdict == "Passed" else (0, 50)
    holding = CanaryStatus(
        version="2", state="Progressing", step=step, weight=weight, started_at=stamp, step_started_at=stamp
    )
    analysis = AnalysisResult(
        time=now.isoformat().replace("+00:00", "Z"),
        step=step,
        weight=weight,
        verdict="Passed" if verdict == "Passed" else "Failed",
        reason="error_rate 0.3 above maxErrorRate 0.01" if verdict != "Passed" else "fine",
        values={"error_rate": 0.3} if verdict != "Passed" else {},
    )
    observation = Observation(
        now=now,
        stable_version="1",
        candidate_version="2",
        stable_ready=True,
        canary_version_deployed="2",
        canary_ready=True,
        analysis=analysis,
    )
    decision = decide(spec, holding, observation)
    assert decision.registry_writes() == ()
    assert decision.canary.state == ("Promoting" if verdict == "Passed" else "RollingBack")
    return decision.canary


async def _run_until(
    cluster: Cluster, namespace: str, registry: KilledAfterWrites, ended: set[str], limit: int = 60
) -> tuple[dict[str, Any], int]:
    """Reconcile until status.canary.state is in `ended`; a kill restarts the operator. (status, restarts)"""
    restarts = 0
    runtime = _runtime(cluster, registry)
    for _ in range(limit):
        try:
            await reconcile(runtime, namespace, NAME, lambda *_: None)
        except Killed:
            restarts += 1
            runtime = _runtime(cluster, registry)  # a new process: nothing remembered but the cluster
            continue
        obj = await runtime.kube.get(f"{GROUP}/{VERSION}", "ModelDeployment", namespace, NAME)
        assert obj is not None
        if (obj.get("status") or {}).get("canary", {}).get("state") in ended:
            return obj["status"], restarts
        await asyncio.sleep(0.5)
    raise AssertionError(f"no end in {limit} reconciliations")


def _runtime(cluster: Cluster, registry: KilledAfterWrites) -> Runtime:
    runtime = Runtime(settings=OperatorSettings(), kube=KubeApi(load_api_client(str(cluster.kubeconfig))))
    runtime.registries[(registry.tracking_uri, Credentials())] = registry
    return runtime


def _start(
    cluster: Cluster, resources: Resources, mlflow: MlflowServer, verdict: str
) -> tuple[MlflowClient, str, dict[str, Any]]:
    client = MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url)
    model = f"crash-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(model)
    run_id = client.create_run(experiment_id="0").info.run_id
    for _ in range(2):
        client.create_model_version(model, source=f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(model, "champion", "1")
    client.set_registered_model_alias(model, CANDIDATE_ALIAS, "2")
    spec = _spec(model, mlflow.url)
    resources.apply(
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": NAME}, "spec": spec}
    )
    intent = _outcome_intent(spec, verdict)
    k8s.CustomObjectsApi(cluster.api_client).patch_namespaced_custom_object_status(
        GROUP, VERSION, resources.namespace, PLURAL, NAME, {"status": {"canary": intent.dump()}}
    )
    return client, model, spec


@pytest.fixture
def resources(cluster: Cluster, namespace: str, modelpilot_crd: dict[str, Any]) -> Resources:
    return Resources(cluster, namespace)


PROMOTION_WRITES = 4  # promoted tag, superseded tag, stable alias moved, candidate alias removed
ROLLBACK_WRITES = 5  # four rejected-* tags, candidate alias removed


@pytest.mark.parametrize("kill_after", [*[{n} for n in range(1, PROMOTION_WRITES + 1)], set(range(1, 10))])
async def test_promotion_killed_after_any_registry_write_writes_each_once(
    cluster: Cluster, namespace: str, resources: Resources, mlflow: MlflowServer, kill_after: set[int]
) -> None:
    client, model, _ = _start(cluster, resources, mlflow, "Passed")
    registry = KilledAfterWrites(mlflow.url, kill_after)
    with registry_events(client, model) as seen:
        status, restarts = await _run_until(cluster, namespace, registry, {"Succeeded"})
        seen.wait_for(PROMOTION_WRITES)
    assert restarts == len(kill_after & set(range(1, PROMOTION_WRITES + 1)))
    assert len(registry.writes) == PROMOTION_WRITES, registry.writes
    assert max(Counter(registry.writes).values()) == 1
    # MLflow received each of them once.
    at = status["canary"]["outcomeAt"]
    assert [w.data["value"] for w in seen.tags_set("modelpilot.io/promoted", "2")] == [at]
    assert [w.data["value"] for w in seen.tags_set("modelpilot.io/superseded", "1")] == [f"{at} by 2"]
    assert [str(w.data["version"]) for w in seen.aliases_set("champion")] == ["2"]
    assert len(seen.received) == PROMOTION_WRITES, seen.received
    # And the outcome is whole: champion moved, candidate pointer gone, the stable track serves it.
    aliases = client.get_registered_model(model).aliases
    assert aliases == {"champion": "2"}
    assert status["canary"]["registryWritten"] is True
    assert status["stable"]["version"] == "2"
    events = [entry["event"] for entry in status["history"]]
    assert events.count("RegistryPromoted") == 1
    assert events.count("Promoted") == 1


@pytest.mark.parametrize("kill_after", [*[{n} for n in range(1, ROLLBACK_WRITES + 1)], set(range(1, 10))])
async def test_rollback_killed_after_any_registry_write_writes_each_once(
    cluster: Cluster, namespace: str, resources: Resources, mlflow: MlflowServer, kill_after: set[int]
) -> None:
    client, model, _ = _start(cluster, resources, mlflow, "Failed")
    registry = KilledAfterWrites(mlflow.url, kill_after)
    with registry_events(client, model) as seen:
        status, restarts = await _run_until(cluster, namespace, registry, {"RolledBack"})
        seen.wait_for(ROLLBACK_WRITES)
    assert restarts == len(kill_after & set(range(1, ROLLBACK_WRITES + 1)))
    assert len(registry.writes) == ROLLBACK_WRITES, registry.writes
    assert max(Counter(registry.writes).values()) == 1
    assert len(seen.received) == ROLLBACK_WRITES, seen.received
    tags = client.get_model_version(model, "2").tags
    assert tags["modelpilot.io/rejected-metric"] == "error_rate"
    assert tags["modelpilot.io/rejected-value"] == "0.3"
    assert tags["modelpilot.io/rejected-at"] == status["canary"]["outcomeAt"]
    assert client.get_registered_model(model).aliases == {"champion": "1"}  # the champion is never touched
    assert "modelpilot.io/promoted" not in client.get_model_version(model, "1").tags
    events = [entry["event"] for entry in status["history"]]
    assert events.count("RolledBack") == 1


@pytest.mark.parametrize("failing", range(1, PROMOTION_WRITES + 1))
async def test_a_registry_failing_mid_promotion_is_a_condition_and_the_promotion_completes_once(
    cluster: Cluster, namespace: str, resources: Resources, mlflow: MlflowServer, failing: int
) -> None:
    client, model, _ = _start(cluster, resources, mlflow, "Passed")
    registry = UnavailableOnWrite(mlflow.url, failing)
    runtime = _runtime(cluster, registry)
    outcome = None
    while registry.attempts < failing:
        outcome = await reconcile(runtime, namespace, NAME, lambda *_: None)  # never raises
    assert outcome is not None
    assert outcome.result == "retry"
    failed = await runtime.kube.get(f"{GROUP}/{VERSION}", "ModelDeployment", namespace, NAME)
    assert failed is not None
    reachable = next(c for c in failed["status"]["conditions"] if c["type"] == "RegistryReachable")
    assert (reachable["status"], reachable["reason"]) == ("False", "RegistryUnreachable")
    assert failed["status"]["canary"]["state"] == "Promoting"

    status, _ = await _run_until(cluster, namespace, registry, {"Succeeded"})
    assert len(registry.writes) == PROMOTION_WRITES, registry.writes
    assert max(Counter(registry.writes).values()) == 1
    assert client.get_registered_model(model).aliases == {"champion": "2"}
    reachable = next(c for c in status["conditions"] if c["type"] == "RegistryReachable")
    assert reachable["status"] == "True"

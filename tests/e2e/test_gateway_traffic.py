"""Real traffic through a real Gateway: Traefik (installed by `hack/e2e install` the way a user installs it)
reads the operator's HTTPRoute and splits requests sent from this machine to its listener on 127.0.0.1
between real stable and canary pods; the in-cluster Prometheus discovers and scrapes those pods, and the
operator's analysis of that data carries the canary through its steps to promotion — while the acting
operator pod is killed — or back: a candidate that fails requests or answers slowly is rolled back, tagged
rejected and the champion kept; with Prometheus gone the rollout pauses and resumes when it is back. A
webhook receiver counts every registry write, so each promotion and rejection is shown written once.

Bad candidates are made with the inference server's fault settings, limited to the bad version
(`MODELPILOT_FAULT_VERSIONS`): both tracks share `spec.serving.env`, and no real part can make a good
model fail on purpose.

The tests of this module build on each other in file order (one model, one ModelDeployment).
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelpilot.operator.spec import GROUP, VERSION
from tests.e2e.deployments import (
    MLFLOW,
    PROMETHEUS,
    SMALL_RESOURCES,
    condition_of,
    infer_body,
    is_served,
    registry,
    rolled_out_with_env,
    served_version,
    status_of,
    training,
)
from tests.e2e.gateway_load import SETTLE_SECONDS, GatewayLoad
from tests.e2e.pods import INFERENCE_IMAGE, RegistryWrites, Toolbox, kill_acting_operator
from tests.support.cluster import Cluster, get_object, wait_until
from tests.support.namespace_objects import Resources

NAME = "routed"
MODEL = f"e2e-gateway-{secrets.token_hex(3)}"
HOST = f"{MODEL}.e2e.modelpilot.test"
# The Gateway of hack/e2e.d/traefik.yaml: its listener `web` on 127.0.0.1:18000 (a hostPort).
GATEWAY = {"name": "traefik", "namespace": "traefik", "sectionName": "web"}
LISTENER = "http://127.0.0.1:18000"
STEPS = [20, 50, 100]
INTERVAL = 12  # seconds each step is held before its analysis
REJECTED_TAG = "modelpilot.io/rejected"
# The module's own namespace: charts/modelpilot/ci/e2e-values.yaml lets the operator read Secrets in it
# (rbac.secretNamespaces), for the canary header's value; elsewhere it may not (see test_real_pods.py).
NAMESPACE = "e2e-gateway"
HEADER = "x-canary"
HEADER_SECRET = "canary-header"
HEADER_VALUE = secrets.token_hex(16)


def model_deployment(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Train a first version; serve it behind the Gateway; roll candidates out 20 → 50 → 100 by route weight."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": MODEL, "alias": "champion", "candidateAlias": "challenger"},
            "registry": {"trackingUri": MLFLOW, "pollInterval": "5s"},
            "serving": {
                "image": INFERENCE_IMAGE,
                "replicas": 1,
                "resources": SMALL_RESOURCES,
                "env": [{"name": key, "value": value} for key, value in (env or {}).items()],
            },
            "traffic": {
                "router": "gateway",
                "gateway": {"parentRefs": [GATEWAY], "hostnames": [HOST]},
                "header": {"name": HEADER, "valueFrom": {"secretKeyRef": {"name": HEADER_SECRET, "key": "value"}}},
            },
            "rollout": {
                "steps": STEPS,
                "interval": f"{INTERVAL}s",
                "canaryReadyTimeout": "5m",
                "analysis": {
                    "prometheus": PROMETHEUS,
                    "minRequests": 20,
                    "window": "30s",
                    "maxP99Latency": "1s",
                    "inconclusiveLimit": 2,
                },
            },
            "training": training(),
        },
    }


@pytest.fixture(scope="module")
def namespace(e2e_cluster: Cluster) -> Iterator[str]:
    """The module's namespace, made by `hack/e2e install` (hack/e2e.d/namespace.yaml) so that the chart could
    grant the operator Secret reads in it; emptied before and after."""
    assert get_object(e2e_cluster.api_client, "v1", "Namespace", NAMESPACE) is not None, "run hack/e2e install"
    _empty(e2e_cluster)
    yield NAMESPACE
    _empty(e2e_cluster)


def _empty(cluster: Cluster) -> None:
    """Delete what a run leaves in the namespace: its ModelDeployments (and with them what they own), pods,
    Secrets."""
    cluster.run_kubectl("delete", "-n", NAMESPACE, "modeldeployments,pods,secrets", "--all", "--wait", "--timeout=3m")


@pytest.fixture(scope="module")
def served(objects: Resources, gateway_client: httpx.Client) -> dict[str, Any]:
    """The ModelDeployment applied and Ready with the version its own training Job registered, and the
    Gateway routing to it (Traefik programs a route a moment after its backends turn Ready)."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": HEADER_SECRET}}
    objects.apply({**secret, "stringData": {"value": HEADER_VALUE}})
    objects.apply(model_deployment())
    ready = objects.wait_mdep(NAME, is_served, "first version trained and served", timeout=900, interval=2)
    wait_until(
        lambda: gateway_client.get(f"/v2/models/{MODEL}").status_code == 200,
        timeout=60,
        description="the Gateway routes to the model",
        interval=0.5,
    )
    return ready


@pytest.fixture(scope="module")
def registry_writes(e2e_cluster: Cluster, namespace: str, toolbox: Toolbox) -> Iterator[RegistryWrites]:
    """Every registry write of the module's model, as MLflow reports it."""
    writes = RegistryWrites(e2e_cluster, namespace, toolbox, MLFLOW)
    writes.start()
    yield writes
    writes.stop()


@pytest.fixture(scope="module")
def gateway_client() -> httpx.Client:
    """An HTTP client of the Gateway's listener, addressing the route's hostname."""
    return httpx.Client(base_url=LISTENER, headers={"host": HOST}, timeout=10)


def _infer_body(client: httpx.Client) -> dict[str, Any]:
    """An OIP v2 request of two rows shaped after the served model's own metadata (read through the Gateway)."""
    metadata = client.get(f"/v2/models/{MODEL}")
    assert metadata.status_code == 200, metadata.text
    return infer_body(metadata.json())


def _path() -> str:
    return f"/v2/models/{MODEL}/infer"


def _champion(toolbox: Toolbox) -> str:
    return registry(toolbox, MODEL).alias("champion")


def _version_tags(toolbox: Toolbox, version: str) -> dict[str, str]:
    return registry(toolbox, MODEL).tags(version)


def _new_version(toolbox: Toolbox, of: str) -> str:
    return registry(toolbox, MODEL).register_copy(of)


def _name_challenger(toolbox: Toolbox, version: str) -> None:
    registry(toolbox, MODEL).set_alias("challenger", version)


def _serve_with_faults(objects: Resources, env: dict[str, str]) -> None:
    """Change the serving environment (both tracks) and wait until the stable track runs it, Ready."""
    objects.apply(model_deployment(env))

    def rolled_out(mdep: dict[str, Any]) -> bool:
        return is_served(mdep) and rolled_out_with_env(objects.deployment(f"{NAME}-stable"), env, replicas=1)

    objects.wait_mdep(NAME, rolled_out, "stable track rolled to the new serving environment", timeout=300, interval=2)


def _canary_state(mdep: dict[str, Any]) -> dict[str, Any]:
    return dict(status_of(mdep).get("canary") or {})


def _follow(load: GatewayLoad, mdep: dict[str, Any]) -> dict[str, Any]:
    """Tell the load the canary weight the status shows; the canary status."""
    canary = _canary_state(mdep)
    load.set_weight(int(canary.get("weight") or 0) if canary.get("state") in ("Progressing", "Paused") else 0)
    return canary


def _versions_by_header(client: httpx.Client, body: dict[str, Any], value: str, count: int) -> list[str | None]:
    """The versions that answered `count` requests carrying the canary header with `value`."""
    found: list[str | None] = []
    for _ in range(count):
        response = client.post(_path(), json=body, headers={HEADER: value})
        found.append(response.json().get("model_version") if response.status_code == 200 else None)
    return found


def _written_once(writes: list[tuple[str, str, str, str]]) -> None:
    repeated = [write for write, count in Counter(writes).items() if count > 1]
    assert not repeated, (repeated, writes)


def test_the_gateway_accepts_the_route_and_answers_with_the_served_version(
    objects: Resources, served: dict[str, Any], gateway_client: httpx.Client
) -> None:
    route = objects.get("gateway.networking.k8s.io/v1", "HTTPRoute", NAME)
    assert route is not None
    parents = route["status"]["parents"]
    assert [p["controllerName"] for p in parents] == ["traefik.io/gateway-controller"]
    accepted = {c["type"]: c["status"] for c in parents[0]["conditions"]}
    assert accepted.get("Accepted") == "True", parents
    assert accepted.get("ResolvedRefs") == "True", parents

    answer = gateway_client.post(f"/v2/models/{MODEL}/infer", json=_infer_body(gateway_client))
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == served_version(served)
    # A hostname the route does not serve is not routed to the model.
    assert gateway_client.get(f"/v2/models/{MODEL}", headers={"host": "other.example"}).status_code == 404


def test_a_candidate_is_split_by_the_route_weights_analysed_from_scraped_pods_and_promoted_once(
    e2e_cluster: Cluster,
    objects: Resources,
    served: dict[str, Any],
    toolbox: Toolbox,
    gateway_client: httpx.Client,
    registry_writes: RegistryWrites,
) -> None:
    first = served_version(served)
    assert first is not None
    second = _new_version(toolbox, first)
    load = GatewayLoad(gateway_client, _path(), _infer_body(gateway_client), rate=20, seconds=420)
    load.start()
    _name_challenger(toolbox, second)
    killed: list[str] = []
    by_header: list[str | None] = []

    def promoted(mdep: dict[str, Any]) -> bool:
        canary = _follow(load, mdep)
        if canary.get("version") == second:
            assert canary.get("state") not in ("RolledBack", "Aborted", "Paused"), canary
        if canary.get("weight") == STEPS[0] and not by_header:
            # The header rule sends its requests to the canary whatever the weight (the value is a secret).
            by_header.extend(_versions_by_header(gateway_client, load.body, HEADER_VALUE, 20))
        if canary.get("weight") == STEPS[1] and not killed:
            killed.append(kill_acting_operator(e2e_cluster))  # mid-rollout: the standby carries on
        return served_version(mdep) == second and canary.get("state") in (None, "Succeeded")

    try:
        final = objects.wait_mdep(NAME, promoted, "candidate promoted through the Gateway", timeout=480, interval=0.5)
    finally:
        load.stop()

    assert killed, "the operator pod was killed at the 50 % step"
    assert by_header == [second] * 20, by_header
    assert condition_of(final, "CanaryHeaderReady") == "True"
    # Every request through the Gateway was answered, across the steps, the operator's failover, the
    # promotion and the canary's removal.
    codes = Counter(answer.status for answer in load.answers)
    assert set(codes) == {200}, codes
    # At each step below 100 % the route's weight is the share of requests the canary answered.
    for weight in STEPS[:-1]:
        at_step = load.since_weight(weight, 0)
        assert len(at_step) >= 100, (weight, len(at_step))
        share = 100 * sum(answer.version == second for answer in at_step) / len(at_step)
        assert abs(share - weight) <= 8, (weight, share, len(at_step))
        assert {answer.version for answer in at_step} == {first, second}

    # The analyses were taken on the pods' own metrics, scraped by Prometheus through pod discovery.
    analyses = _canary_state(final).get("analyses") or []
    passed = [analysis for analysis in analyses if analysis["verdict"] == "Passed"]
    assert len(passed) >= len(STEPS), analyses
    assert all(analysis["values"]["request_count"] >= 20 for analysis in passed), passed
    assert condition_of(final, "Ready") == "True"
    assert _champion(toolbox) == second
    # One promotion, written once although the operator that began it was killed.
    writes = registry_writes.writes(MODEL)
    assert ("model_version_alias", "created", "champion", second) in writes, writes
    _written_once(writes)
    route = objects.get("gateway.networking.k8s.io/v1", "HTTPRoute", NAME)
    assert route is not None
    backends = [ref["name"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"] if ref.get("weight", 1)]
    assert backends == [f"{NAME}-stable"], route["spec"]["rules"]


def _rolled_back(
    objects: Resources,
    toolbox: Toolbox,
    gateway_client: httpx.Client,
    registry_writes: RegistryWrites,
    fault: str,
    metric: str,
    above: float,
) -> GatewayLoad:
    """Serve a new version with `fault` (an env setting), name it challenger under load, and check it is rolled
    back on `metric` (every failed analysis measured it above `above`), tagged rejected once naming it, with
    the champion kept and all traffic back on it. Returns the load."""
    champion = _champion(toolbox)
    bad = _new_version(toolbox, champion)
    key, value = fault.split("=")
    _serve_with_faults(objects, {key: value, "MODELPILOT_FAULT_VERSIONS": bad})
    load = GatewayLoad(gateway_client, _path(), _infer_body(gateway_client), rate=20, seconds=300)
    load.start()
    _name_challenger(toolbox, bad)

    def rolled_back(mdep: dict[str, Any]) -> bool:
        canary = _follow(load, mdep)
        if canary.get("version") != bad:
            return False  # the previous rollout's outcome, until this one starts
        assert canary.get("state") not in ("Promoting", "Succeeded", "Paused"), canary
        return canary.get("state") == "RolledBack"

    try:
        final = objects.wait_mdep(NAME, rolled_back, f"version {bad} rolled back", timeout=300, interval=0.5)
        # After the rollback every request is the champion's again.
        back = time.monotonic() + SETTLE_SECONDS
        time.sleep(SETTLE_SECONDS + 5)
    finally:
        load.stop()
    after = [answer for answer in load.answers if answer.at >= back + 1]
    assert after
    assert {(a.status, a.version) for a in after} == {(200, champion)}, Counter((a.status, a.version) for a in after)
    assert _champion(toolbox) == champion
    assert served_version(final) == champion
    assert REJECTED_TAG in _version_tags(toolbox, bad)
    writes = [write for write in registry_writes.writes(MODEL) if write[3] == bad]
    assert writes.count(("model_version_tag", "set", REJECTED_TAG, bad)) == 1, writes
    assert not [write for write in writes if write[2] == "champion"], writes
    _written_once(writes)
    failed = [a for a in _canary_state(final).get("analyses") or [] if a["verdict"] == "Failed"]
    assert failed
    assert all(a["values"][metric] > above for a in failed), failed
    assert _version_tags(toolbox, bad)[f"{REJECTED_TAG}-metric"] == metric
    return load


def test_a_candidate_that_fails_requests_is_rolled_back_tagged_rejected_once_and_the_champion_kept(
    objects: Resources,
    served: dict[str, Any],
    toolbox: Toolbox,
    gateway_client: httpx.Client,
    registry_writes: RegistryWrites,
) -> None:
    fault = "MODELPILOT_FAULT_ERROR_RATE=0.3"
    load = _rolled_back(objects, toolbox, gateway_client, registry_writes, fault, "error_rate", above=0.1)
    # The clients saw the canary's errors only while it had traffic: at most its share of them.
    at_first_step = load.since_weight(STEPS[0], 0)
    errors = sum(answer.status == 500 for answer in at_first_step)
    assert 0 < errors <= 0.3 * 0.2 * len(at_first_step) * 2, (errors, len(at_first_step))


def test_a_candidate_that_answers_slowly_is_rolled_back_on_its_p99_latency(
    objects: Resources,
    served: dict[str, Any],
    toolbox: Toolbox,
    gateway_client: httpx.Client,
    registry_writes: RegistryWrites,
) -> None:
    fault = "MODELPILOT_FAULT_LATENCY_MS=1500"
    _rolled_back(objects, toolbox, gateway_client, registry_writes, fault, "p99_latency_seconds", above=1.0)


def test_without_prometheus_the_rollout_pauses_and_goes_on_when_it_is_back(
    e2e_cluster: Cluster,
    objects: Resources,
    served: dict[str, Any],
    toolbox: Toolbox,
    gateway_client: httpx.Client,
) -> None:
    # The fault settings of the previous test name only the version it rejected: this one is good.
    good = _new_version(toolbox, _champion(toolbox))
    load = GatewayLoad(gateway_client, _path(), _infer_body(gateway_client), rate=20, seconds=480)
    load.start()
    _name_challenger(toolbox, good)
    scale = ("scale", "-n", "monitoring", "deployment/prometheus")
    try:
        objects.wait_mdep(
            NAME,
            lambda m: _follow(load, m).get("weight") == STEPS[0] and _follow(load, m).get("version") == good,
            "first step of the rollout",
            timeout=300,
            interval=0.5,
        )
        e2e_cluster.run_kubectl(*scale, "--replicas=0")
        paused = objects.wait_mdep(
            NAME, lambda m: _follow(load, m).get("state") == "Paused", "rollout paused", timeout=240, interval=0.5
        )
        assert _canary_state(paused)["weight"] == STEPS[0]
        inconclusive = [a for a in _canary_state(paused)["analyses"] if a["verdict"] == "Inconclusive"]
        assert len(inconclusive) >= 2, _canary_state(paused)["analyses"]
        e2e_cluster.run_kubectl(*scale, "--replicas=1")
        # Back: a conclusive analysis resumes the rollout at its step, and it goes on to the next one.
        resumed = objects.wait_mdep(
            NAME,
            lambda m: _follow(load, m).get("weight") == STEPS[1] and _follow(load, m).get("state") == "Progressing",
            "rollout resumed and at its next step",
            timeout=300,
            interval=0.5,
        )
    finally:
        e2e_cluster.run_kubectl(*scale, "--replicas=1", check=False)
        load.stop()
    events = [entry["event"] for entry in status_of(resumed)["history"] if entry.get("version") == good]
    assert events.index("RolloutPaused") < events.index("RolloutResumed"), events
    assert "PromotionStarted" not in events
    assert _champion(toolbox) != good, "nothing was promoted while the analysis could not run"
    codes = Counter(answer.status for answer in load.answers)
    assert set(codes) == {200}, codes

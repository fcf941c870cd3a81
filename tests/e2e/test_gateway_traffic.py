"""Real traffic through a real Gateway: Traefik (installed by `hack/e2e install` the way a user installs it)
reads the operator's HTTPRoute and splits requests sent from this machine to its listener on 127.0.0.1
between real stable and canary pods; the in-cluster Prometheus discovers and scrapes those pods, and the
operator's analysis of that data carries the canary through its steps to promotion.

The tests of this module build on each other in file order (one model, one ModelDeployment).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
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
    served_version,
    status_of,
    training,
)
from tests.e2e.pods import INFERENCE_IMAGE, Toolbox
from tests.support.namespace_objects import Resources

NAME = "routed"
MODEL = f"e2e-gateway-{secrets.token_hex(3)}"
HOST = f"{MODEL}.e2e.modelpilot.test"
# The Gateway of hack/e2e.d/traefik.yaml: its listener `web` on 127.0.0.1:18000 (a hostPort).
GATEWAY = {"name": "traefik", "namespace": "traefik", "sectionName": "web"}
LISTENER = "http://127.0.0.1:18000"
STEPS = [20, 50, 100]
# Responses within this long after the weight changed may still follow the old weight (Traefik reloads).
SETTLE_SECONDS = 3.0


def model_deployment() -> dict[str, Any]:
    """Train a first version; serve it behind the Gateway; roll candidates out 20 → 50 → 100 by route weight."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": MODEL, "alias": "champion", "candidateAlias": "challenger"},
            "registry": {"trackingUri": MLFLOW, "pollInterval": "5s"},
            "serving": {"image": INFERENCE_IMAGE, "replicas": 1, "resources": SMALL_RESOURCES},
            "traffic": {"router": "gateway", "gateway": {"parentRefs": [GATEWAY], "hostnames": [HOST]}},
            "rollout": {
                "steps": STEPS,
                "interval": "30s",
                "canaryReadyTimeout": "5m",
                "analysis": {"prometheus": PROMETHEUS, "minRequests": 20, "window": "30s", "maxP99Latency": "2s"},
            },
            "training": training(),
        },
    }


@pytest.fixture(scope="module")
def served(objects: Resources) -> dict[str, Any]:
    """The ModelDeployment applied and Ready with the version its own training Job registered."""
    objects.apply(model_deployment())
    return objects.wait_mdep(NAME, is_served, "first version trained and served", timeout=900, interval=2)


@pytest.fixture(scope="module")
def gateway_client() -> httpx.Client:
    """An HTTP client of the Gateway's listener, addressing the route's hostname."""
    return httpx.Client(base_url=LISTENER, headers={"host": HOST}, timeout=10)


def _infer_body(client: httpx.Client) -> dict[str, Any]:
    """An OIP v2 request of two rows shaped after the served model's own metadata (read through the Gateway)."""
    metadata = client.get(f"/v2/models/{MODEL}")
    assert metadata.status_code == 200, metadata.text
    return infer_body(metadata.json())


@dataclass
class Answer:
    at: float
    weight: int  # the canary weight the ModelDeployment's status showed when the request was sent
    status: int  # 0: no answer
    version: str | None


@dataclass
class GatewayLoad:
    """Sends one body through the Gateway at a fixed rate from a thread, for a bounded time."""

    client: httpx.Client
    body: dict[str, Any]
    rate: float
    seconds: float
    weight: int = 0
    since: float = field(default_factory=time.monotonic)  # when `weight` was last changed
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-load", daemon=True)
        self._thread.start()

    def set_weight(self, weight: int) -> None:
        if weight != self.weight:
            self.weight, self.since = weight, time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        path = f"/v2/models/{MODEL}/infer"
        deadline = time.monotonic() + self.seconds
        period = 1 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            weight, settled = self.weight, time.monotonic() - self.since >= SETTLE_SECONDS
            try:
                response = self.client.post(path, json=self.body)
                version = response.json().get("model_version") if response.status_code == 200 else None
                answer = Answer(time.monotonic(), weight if settled else -1, response.status_code, version)
            except httpx.HTTPError:
                answer = Answer(time.monotonic(), weight if settled else -1, 0, None)
            self.answers.append(answer)
            next_at += period
            self._stop.wait(max(next_at - time.monotonic(), 0.0))


def _mlflow_call(toolbox: Toolbox, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    url = f"{MLFLOW}/api/2.0/mlflow/{path}"
    code, answer = toolbox.get(url) if method == "get" else toolbox.post(url, body or {})
    assert code == 200, (path, code, answer)
    return dict(answer)


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


def test_a_candidate_is_split_by_the_route_weights_analysed_from_scraped_pods_and_promoted(
    objects: Resources, served: dict[str, Any], toolbox: Toolbox, gateway_client: httpx.Client
) -> None:
    first = served_version(served)
    assert first is not None
    # The candidate: a second version registered from the first one's artifacts, then named challenger —
    # what a user (or a training pipeline) does in the registry.
    source = _mlflow_call(toolbox, "get", f"model-versions/get?name={MODEL}&version={first}")["model_version"]
    copy = {"name": MODEL, "source": source["source"], "run_id": source["run_id"]}
    if source["source"].startswith("models:/m-"):  # a logged model (MLflow 3): the version names it too
        copy["model_id"] = source.get("model_id") or source["source"].removeprefix("models:/")
    created = _mlflow_call(toolbox, "post", "model-versions/create", copy)
    second = str(created["model_version"]["version"])
    load = GatewayLoad(gateway_client, _infer_body(gateway_client), rate=20, seconds=420)
    load.start()
    _mlflow_call(toolbox, "post", "registered-models/alias", {"name": MODEL, "alias": "challenger", "version": second})

    def promoted(mdep: dict[str, Any]) -> bool:
        canary = status_of(mdep).get("canary") or {}
        load.set_weight(int(canary.get("weight") or 0) if canary.get("state") == "Progressing" else 0)
        assert canary.get("state") not in ("RolledBack", "Aborted", "Paused"), canary
        return served_version(mdep) == second and canary.get("state") in (None, "Succeeded")

    try:
        final = objects.wait_mdep(NAME, promoted, "candidate promoted through the Gateway", timeout=420, interval=0.5)
    finally:
        load.stop()

    # Every request through the Gateway was answered, across the steps, the promotion and the canary's removal.
    codes = Counter(answer.status for answer in load.answers)
    assert set(codes) == {200}, codes
    # At each step below 100 % the route's weight is the share of requests the canary answered.
    for weight in STEPS[:-1]:
        at_step = [answer for answer in load.answers if answer.weight == weight]
        assert len(at_step) >= 100, (weight, len(at_step))
        share = 100 * sum(answer.version == second for answer in at_step) / len(at_step)
        assert abs(share - weight) <= 8, (weight, share, len(at_step))
        assert {answer.version for answer in at_step} == {first, second}

    # The analyses were taken on the pods' own metrics, scraped by Prometheus through pod discovery.
    analyses = (status_of(final).get("canary") or {}).get("analyses") or []
    passed = [analysis for analysis in analyses if analysis["verdict"] == "Passed"]
    assert len(passed) >= len(STEPS), analyses
    assert all(analysis["values"]["request_count"] >= 20 for analysis in passed), passed
    assert condition_of(final, "Ready") == "True"
    alias = _mlflow_call(toolbox, "get", f"registered-models/alias?name={MODEL}&alias=champion")
    assert alias["model_version"]["version"] == second
    route = objects.get("gateway.networking.k8s.io/v1", "HTTPRoute", NAME)
    assert route is not None
    backends = [ref["name"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"] if ref.get("weight", 1)]
    assert backends == [f"{NAME}-stable"], route["spec"]["rules"]

"""Request-rate autoscaling on real pods: KEDA (installed by `hack/e2e install`, hack/e2e.d/keda.yaml) reads
the operator's ScaledObject, asks the in-cluster Prometheus for the track's request rate and serves it to
the API server as an external metric (its APIService); the HPA KEDA made scales the stable track up while a
bounded load runs through the Gateway (Traefik, its listener on 127.0.0.1) and back down after it stops.
With a canary at 50 %, both tracks scale on the share of the traffic the route gives them, and the split
of the answers stays the route's weight while they do.

The pods ask for enough CPU that the load keeps them far below `targetCPUUtilization`: the CPU trigger
alone would never add a replica, so the scale-up is the request rate's. Replicas over time, the request
rate the HPA saw and the times to scale up and down are printed (run with `-s` to see them).
"""

from __future__ import annotations

import json
import math
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
    infer_body,
    is_served,
    registry,
    served_version,
    status_of,
    training,
)
from tests.e2e.gateway_load import GatewayLoad
from tests.e2e.pods import INFERENCE_IMAGE, Toolbox
from tests.support.cluster import Cluster, get_object, wait_until
from tests.support.namespace_objects import Resources

NAME = "scaled"
MODEL = f"e2e-scaling-{secrets.token_hex(3)}"
HOST = f"{MODEL}.e2e.modelpilot.test"
GATEWAY = {"name": "traefik", "namespace": "traefik", "sectionName": "web"}  # hack/e2e.d/traefik.yaml
LISTENER = "http://127.0.0.1:18000"
TARGET_PER_REPLICA = 2.0  # requests per second one replica should serve
LOAD_RATE = 6.0  # requests per second through the Gateway: three replicas' worth
MAX_REPLICAS = 3
WINDOW = "30s"  # the request rate's averaging window
STABILIZATION = "30s"  # serving.autoscaling.scaleDownStabilization
# A quarter CPU per pod: at LOAD_RATE the pods use a fraction of it, far below the CPU target.
RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1536Mi"}}
CANARY_WEIGHT = 50
CANARY_LOAD_RATE = 8.0  # two replicas' worth for each track at 50 %
EXTERNAL_METRICS = "external.metrics.k8s.io/v1beta1"
EXTERNAL_API_SERVICE = "v1beta1.external.metrics.k8s.io"  # KEDA's metrics API server (hack/e2e.d/keda.yaml)


def model_deployment() -> dict[str, Any]:
    """Train a first version; serve it behind the Gateway; scale each track on its request rate."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": MODEL, "alias": "champion", "candidateAlias": "challenger"},
            "registry": {"trackingUri": MLFLOW, "pollInterval": "5s"},
            "serving": {
                "image": INFERENCE_IMAGE,
                "resources": RESOURCES,
                "autoscaling": {
                    "minReplicas": 1,
                    "maxReplicas": MAX_REPLICAS,
                    "targetCPUUtilization": 100,
                    "requestRate": {"targetPerReplica": TARGET_PER_REPLICA, "window": WINDOW, "prometheus": PROMETHEUS},
                    "scaleDownStabilization": STABILIZATION,
                },
            },
            "traffic": {"router": "gateway", "gateway": {"parentRefs": [GATEWAY], "hostnames": [HOST]}},
            # A candidate holds its first step (CANARY_WEIGHT) far longer than the test runs.
            "rollout": {
                "steps": [CANARY_WEIGHT, 100],
                "interval": "30m",
                "canaryReadyTimeout": "5m",
                "analysis": {"prometheus": PROMETHEUS, "minRequests": 20, "window": WINDOW},
            },
            "training": training(),
        },
    }


@dataclass
class Sample:
    at: float  # seconds since the load started
    replicas: int  # the Deployment's spec.replicas: what the HPA decided
    ready: int
    rate: float | None  # the HPA's current value of the request-rate metric (per replica), None before any


@dataclass
class ScaleWatch:
    """Samples one track's replicas and the request rate its HPA sees, once a second, in a thread."""

    cluster: Cluster
    namespace: str
    track: str = "stable"
    since: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="scale-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def first(self, check: Any) -> Sample | None:
        return next((sample for sample in list(self.samples) if check(sample)), None)

    def _run(self) -> None:
        while not self._stop.is_set():
            name = f"{NAME}-{self.track}"
            deployment = get_object(self.cluster.api_client, "apps/v1", "Deployment", name, self.namespace)
            hpa = get_object(
                self.cluster.api_client, "autoscaling/v2", "HorizontalPodAutoscaler", f"keda-hpa-{name}", self.namespace
            )
            if deployment is not None:
                self.samples.append(
                    Sample(
                        at=time.monotonic() - self.since,
                        replicas=int(deployment["spec"].get("replicas") or 0),
                        ready=int((deployment.get("status") or {}).get("readyReplicas") or 0),
                        rate=_external_value(hpa),
                    )
                )
            self._stop.wait(1.0)


def _quantity(text: str) -> float:
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _external_value(hpa: dict[str, Any] | None) -> float | None:
    """The per-replica value of the HPA's external metric (KEDA's request-rate trigger), if it has one."""
    for metric in ((hpa or {}).get("status") or {}).get("currentMetrics") or []:
        if metric.get("type") == "External":
            current = metric["external"]["current"]
            value = current.get("averageValue") or current.get("value")
            return _quantity(str(value)) if value is not None else None
    return None


@pytest.fixture(scope="module")
def gateway_client() -> httpx.Client:
    return httpx.Client(base_url=LISTENER, headers={"host": HOST}, timeout=10)


@pytest.fixture(scope="module")
def served(e2e_cluster: Cluster, objects: Resources, gateway_client: httpx.Client) -> dict[str, Any]:
    """The ModelDeployment Ready with the version its training Job registered, routed by the Gateway."""
    api_service = get_object(e2e_cluster.api_client, "apiregistration.k8s.io/v1", "APIService", EXTERNAL_API_SERVICE)
    assert api_service is not None, "KEDA is installed by hack/e2e install"
    objects.apply_with_this_crd(model_deployment())
    ready = objects.wait_mdep(NAME, is_served, "first version trained and served", timeout=900, interval=2)
    wait_until(
        lambda: gateway_client.get(f"/v2/models/{MODEL}").status_code == 200,
        timeout=60,
        description="the Gateway routes to the model",
        interval=0.5,
    )
    return ready


def test_the_operator_hands_the_stable_track_to_keda_which_serves_its_request_rate(
    e2e_cluster: Cluster, objects: Resources, served: dict[str, Any]
) -> None:
    def scaled_object_ready() -> dict[str, Any] | None:
        scaled = objects.get("keda.sh/v1alpha1", "ScaledObject", f"{NAME}-stable")
        conditions = {c["type"]: c["status"] for c in ((scaled or {}).get("status") or {}).get("conditions", [])}
        return scaled if conditions.get("Ready") == "True" else None

    ready = wait_until(scaled_object_ready, timeout=120, description="ScaledObject Ready (KEDA reached Prometheus)")
    assert ready["status"]["hpaName"] == f"keda-hpa-{NAME}-stable"
    hpa = objects.get("autoscaling/v2", "HorizontalPodAutoscaler", f"keda-hpa-{NAME}-stable")
    assert hpa is not None
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, MAX_REPLICAS)
    # No HPA of the operator's own beside KEDA's: one autoscaler per track.
    assert objects.get("autoscaling/v2", "HorizontalPodAutoscaler", f"{NAME}-stable") is None
    # The external metric API answers the API server's (and so the HPA controller's) queries: KEDA's
    # metrics server behind its APIService, with Prometheus's value of the track's request rate.
    external = next(m for m in hpa["spec"]["metrics"] if m["type"] == "External")
    name = external["external"]["metric"]["name"]
    selector = external["external"]["metric"]["selector"]["matchLabels"]
    label = ",".join(f"{key}={value}" for key, value in selector.items())
    answer = e2e_cluster.run_kubectl(
        "get", "--raw", f"/apis/{EXTERNAL_METRICS}/namespaces/{objects.namespace}/{name}?labelSelector={label}"
    )
    values = json.loads(answer.stdout)
    assert values["kind"] == "ExternalMetricValueList", values
    # No traffic yet: a rate of 0 (ignoreNullValues), not an error.
    assert [_quantity(str(item["value"])) for item in values["items"]] == [0.0], values


def test_load_through_the_gateway_scales_the_track_up_on_its_request_rate_and_back_down_after(
    e2e_cluster: Cluster, objects: Resources, served: dict[str, Any], gateway_client: httpx.Client
) -> None:
    metadata = gateway_client.get(f"/v2/models/{MODEL}")
    assert metadata.status_code == 200, metadata.text
    window = _scale_down_window(objects)
    load = GatewayLoad(gateway_client, f"/v2/models/{MODEL}/infer", infer_body(metadata.json()), LOAD_RATE, 240)
    watch = ScaleWatch(e2e_cluster, objects.namespace)
    watch.start()
    load.start()
    try:
        up = wait_until(
            lambda: watch.first(lambda s: s.replicas > 1), timeout=180, description="stable track scaled up", interval=1
        )
        full = wait_until(
            lambda: watch.first(lambda s: s.replicas == MAX_REPLICAS and s.ready == MAX_REPLICAS),
            timeout=240,
            description=f"{MAX_REPLICAS} replicas Ready under load",
            interval=1,
        )
        # Hold the load a little while at full size: the size holds while the rate does.
        time.sleep(20)
    finally:
        load.stop()
    stopped = time.monotonic() - watch.since
    try:
        down = wait_until(
            lambda: watch.first(lambda s: s.at > stopped and s.replicas == 1),
            timeout=window + 180,
            description="stable track back to one replica",
            interval=1,
        )
    finally:
        watch.stop()

    _report(watch, load, up, full, stopped, down, window)
    codes = Counter(answer.status for answer in load.answers)
    assert set(codes) == {200}, codes
    # The scale-up came from the request rate: the HPA saw more than the per-replica target on KEDA's
    # external metric, and the replicas it asked for are what that rate needs (CPU stays far below target).
    seen = [s.rate for s in watch.samples if s.rate is not None and s.at <= full.at]
    assert seen
    assert max(seen) > TARGET_PER_REPLICA, seen
    assert min(math.ceil(LOAD_RATE / TARGET_PER_REPLICA), MAX_REPLICAS) == MAX_REPLICAS
    # Scaled down only after the load stopped and the stabilization window passed: a rate that falls to 0
    # over WINDOW, then the window, then the HPA's 15 s sync.
    assert down.at - stopped >= window, (down.at, stopped, window)
    held = [s for s in watch.samples if full.at <= s.at <= stopped]
    assert held
    assert min(s.replicas for s in held) == MAX_REPLICAS, held


def _scale_down_window(objects: Resources) -> int:
    """The scale-down stabilization window KEDA's HPA got from the ScaledObject (the operator sets it from
    serving.autoscaling.scaleDownStabilization)."""
    scaled = objects.get("keda.sh/v1alpha1", "ScaledObject", f"{NAME}-stable")
    hpa = objects.get("autoscaling/v2", "HorizontalPodAutoscaler", f"keda-hpa-{NAME}-stable")
    assert scaled is not None
    assert hpa is not None
    window = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == window["stabilizationWindowSeconds"]
    return int(window["stabilizationWindowSeconds"])


def _report(
    watch: ScaleWatch, load: GatewayLoad, up: Sample, full: Sample, stopped: float, down: Sample, window: int
) -> None:
    print(f"\nrequest-rate scaling: load {LOAD_RATE:g}/s, target {TARGET_PER_REPLICA:g}/s per replica, window {WINDOW}")
    print(f"  scale-up decided {up.at:.0f} s after the load started ({up.replicas} replicas)")
    print(f"  {full.replicas} replicas Ready {full.at:.0f} s after the load started")
    print(f"  load stopped at {stopped:.0f} s; back to 1 replica {down.at - stopped:.0f} s later"
          f" (stabilization window {window} s)")  # fmt: skip
    print(f"  {len(load.answers)} requests answered")
    print("  t(s) replicas ready rate/replica")
    last: tuple[int, int, float | None] | None = None
    for sample in watch.samples:
        now = (sample.replicas, sample.ready, sample.rate)
        if now != last:
            rate = "-" if sample.rate is None else f"{sample.rate:.2f}"
            print(f"  {sample.at:5.0f} {sample.replicas:8d} {sample.ready:5d} {rate}")
            last = now


def test_with_a_canary_both_tracks_scale_on_their_share_and_the_split_holds(
    e2e_cluster: Cluster, objects: Resources, served: dict[str, Any], toolbox: Toolbox, gateway_client: httpx.Client
) -> None:
    champion = served_version(served)
    assert champion is not None
    candidate = registry(toolbox, MODEL).register_copy(champion)
    registry(toolbox, MODEL).set_alias("challenger", candidate)

    def at_first_step(mdep: dict[str, Any]) -> bool:
        canary = status_of(mdep).get("canary") or {}
        return canary.get("version") == candidate and canary.get("weight") == CANARY_WEIGHT

    objects.wait_mdep(NAME, at_first_step, f"canary at {CANARY_WEIGHT} %", timeout=300, interval=1)
    scaled = objects.get("keda.sh/v1alpha1", "ScaledObject", f"{NAME}-canary")
    assert scaled is not None, "the canary scales on its own request rate too"
    wait_until(
        lambda: (objects.deployment(f"{NAME}-canary") or {}).get("status", {}).get("readyReplicas"),
        timeout=300,
        description="canary Ready",
    )
    body = infer_body(gateway_client.get(f"/v2/models/{MODEL}").json())
    load = GatewayLoad(gateway_client, f"/v2/models/{MODEL}/infer", body, CANARY_LOAD_RATE, 150)
    watches = {track: ScaleWatch(e2e_cluster, objects.namespace, track) for track in ("stable", "canary")}
    for watch in watches.values():
        watch.start()
    load.start()
    try:
        both = wait_until(
            lambda: all(w.first(lambda s: s.replicas >= 2 and s.ready >= 2) for w in watches.values()) or None,
            timeout=150,
            description="both tracks scaled up and Ready",
            interval=1,
        )
        assert both
        time.sleep(20)
    finally:
        load.stop()
        for watch in watches.values():
            watch.stop()

    for track, watch in watches.items():
        up = watch.first(lambda s: s.replicas >= 2)
        assert up is not None
        print(f"\n{track}: scaled up {up.at:.0f} s after the load started; replicas over time:")
        print("  " + ", ".join(f"{s.at:.0f}s:{s.replicas}/{s.ready}" for s in _changes(watch.samples)))
    codes = Counter(answer.status for answer in load.answers)
    assert set(codes) == {200}, codes
    # The route's weight is the split of the answers, before, during and after the tracks' scaling.
    share = 100 * sum(answer.version == candidate for answer in load.answers) / len(load.answers)
    print(f"canary share {share:.1f} % of {len(load.answers)} answers (route weight {CANARY_WEIGHT} %)")
    assert abs(share - CANARY_WEIGHT) <= 8, share
    assert {answer.version for answer in load.answers} == {champion, candidate}


def _changes(samples: list[Sample]) -> list[Sample]:
    """The samples where the replicas or the Ready ones changed."""
    changes: list[Sample] = []
    for sample in samples:
        if not changes or (sample.replicas, sample.ready) != (changes[-1].replicas, changes[-1].ready):
            changes.append(sample)
    return changes

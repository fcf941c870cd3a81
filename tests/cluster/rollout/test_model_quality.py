"""Rollouts judged by model quality, with the real operator, API server, MLflow and Prometheus.

The pods are kwok's; their metrics come from `tests.support.quality_exporter` (the serving side's counters of
labelled predictions and shadow comparisons, beside healthy HTTP traffic), scraped by a real Prometheus that
labels them with the namespace as pod discovery does. The HTTPRoute is watched from before it exists, so an
assertion about the weights it never carried covers every state it went through.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelpilot.operator.spec import GROUP, VERSION
from tests.cluster.operator.conftest import RegisteredModel, registered_model
from tests.cluster.rollout.checks import canary, history_events, state_is
from tests.cluster.rollout.conftest import CANDIDATE_ALIAS, RESOURCE, Objects
from tests.support.cluster import Cluster, get_object
from tests.support.mlflow_server import MlflowServer
from tests.support.prometheus import PrometheusServer, prometheus_server
from tests.support.quality_exporter import Feed, QualityExporter, quality_exporter
from tests.support.route_history import RouteHistory, route_history

WINDOW = "6s"
CRD_NAME = "modeldeployments.modelpilot.io"


@pytest.fixture
def model(mlflow: MlflowServer) -> RegisteredModel:
    """A registered model with version 1 (champion) and version 2, the candidate to be."""
    registered = registered_model(mlflow)
    stable = registered.add_version()
    registered.add_version()
    registered.set_alias("champion", stable)
    return registered


@pytest.fixture
def exporter(model: RegisteredModel) -> Iterator[QualityExporter]:
    """The pods' metrics: the stable version's healthy traffic from the start."""
    with quality_exporter() as running:
        running.feed(Feed(model.name, "1", "stable"))
        yield running


@pytest.fixture
def prometheus(exporter: QualityExporter, namespace: str, tmp_path: Path) -> Iterator[PrometheusServer]:
    with prometheus_server(tmp_path / "prometheus", [exporter.target], labels={"namespace": namespace}) as server:
        server.wait_for_targets(1)
        yield server


@pytest.fixture
def routes(cluster: Cluster, namespace: str, gateway_api: list[str]) -> Iterator[RouteHistory]:
    with route_history(cluster.api_client, namespace, RESOURCE) as history:
        yield history
    _check_the_crd_was_kept(cluster)


def _check_the_crd_was_kept(cluster: Cluster) -> None:
    """The API server is shared by checkouts whose CRDs differ: one applied during the test prunes the fields
    it lacks (rollout.shadow, the quality bounds) from every read, and the operator then sees another spec."""
    crd = get_object(cluster.api_client, "apiextensions.k8s.io/v1", "CustomResourceDefinition", CRD_NAME) or {}
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] if crd else {}
    rollout = schema.get("properties", {}).get("spec", {}).get("properties", {}).get("rollout", {})
    if "shadow" not in rollout.get("properties", {}):
        pytest.fail("another checkout replaced the shared ModelDeployment CRD during this test (no rollout.shadow)")


def quality_spec(
    model: RegisteredModel,
    prometheus: str,
    *,
    shadow: dict[str, Any] | None = None,
    parent: dict[str, str] | None = None,
    **analysis: Any,
) -> dict[str, Any]:
    """A ModelDeployment rolled out through an HTTPRoute in two 3 s steps, analysed over 6 s windows."""
    rollout: dict[str, Any] = {
        "steps": [50, 100],
        "interval": "3s",
        "analysis": {
            "prometheus": prometheus,
            "window": WINDOW,
            "minRequests": 10,
            "maxErrorRate": 0.05,
            "maxP99Latency": "300ms",
            "failureLimit": 2,
            "inconclusiveLimit": 2,
            **analysis,
        },
    }
    if shadow is not None:
        rollout["shadow"] = shadow
    spec = {
        "model": {"name": model.name, "alias": "champion", "candidateAlias": CANDIDATE_ALIAS},
        "registry": {"trackingUri": model.tracking_uri, "pollInterval": "1s"},
        "serving": {
            "image": "ghcr.io/modelpilot/inference:test",
            "replicas": 1,
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        },
        "traffic": {
            "router": "gateway",
            "gateway": {"parentRefs": [parent or {"name": "public", "namespace": "gateways"}]},
        },
        "rollout": rollout,
    }
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": RESOURCE}, "spec": spec}


def _tags(model: RegisteredModel, version: str) -> dict[str, str]:
    return dict(model.client.get_model_version(model.name, version).tags)


def test_a_candidate_below_min_accuracy_is_rolled_back_though_its_errors_and_latency_are_fine(
    objects: Objects,
    model: RegisteredModel,
    exporter: QualityExporter,
    prometheus: PrometheusServer,
    routes: RouteHistory,
    operator: subprocess.Popen[bytes],
) -> None:
    exporter.feed(Feed(model.name, "2", "canary", labels_per_second=10, accuracy=0.6))
    objects.resources.apply_with_this_crd(quality_spec(model, prometheus.url, minAccuracy=0.9, minLabels=20))
    model.set_alias(CANDIDATE_ALIAS, "2")

    done = objects.wait(state_is("RolledBack"), "rolled back on accuracy", timeout=90)
    analyses = canary(done)["analyses"]
    assert analyses, "no analysis was recorded"
    for result in analyses:
        assert result["verdict"] == "Failed", result
        values = result["values"]
        assert values["error_rate"] == pytest.approx(0.0, abs=1e-9)
        assert values["p99_latency_seconds"] < 0.3
        assert values["labelled_predictions"] >= 20
        assert values["accuracy"] == pytest.approx(0.6, abs=0.08)
        assert "below minAccuracy 0.9" in result["reason"]
    tags = _tags(model, "2")
    assert tags["modelpilot.io/rejected-metric"] == "accuracy"
    assert float(tags["modelpilot.io/rejected-value"]) == pytest.approx(0.6, abs=0.08)
    assert model.alias("champion") == "1"
    events = objects.wait_events({"AnalysisFailed", "RollbackStarted", "RolledBack"})
    assert any("accuracy 0." in e["message"] and "minAccuracy 0.9" in e["message"] for e in events), events


def test_too_few_labels_is_inconclusive_and_pauses_never_passes(
    objects: Objects,
    model: RegisteredModel,
    exporter: QualityExporter,
    prometheus: PrometheusServer,
    routes: RouteHistory,
    operator: subprocess.Popen[bytes],
) -> None:
    # Perfect answers, but about 3 labels a window where 20 are needed: no evidence either way.
    exporter.feed(Feed(model.name, "2", "canary", labels_per_second=0.5, accuracy=1.0))
    objects.resources.apply_with_this_crd(quality_spec(model, prometheus.url, minAccuracy=0.9, minLabels=20))
    model.set_alias(CANDIDATE_ALIAS, "2")

    paused = objects.wait(state_is("Paused"), "paused on too few labels", timeout=90)
    analyses = canary(paused)["analyses"]
    assert len(analyses) >= 2
    for result in analyses:
        assert result["verdict"] == "Inconclusive", result
        assert "labelled canary predictions in 6s, fewer than minLabels 20" in result["reason"]
        assert result["values"]["labelled_predictions"] < 20
    assert canary(paused)["step"] == 0  # the first step was never passed
    assert "RolloutPaused" in history_events(paused)
    assert model.alias("champion") == "1"
    assert max(state.weight for state in routes.snapshot()) == 50


def test_the_shadow_phase_rejects_a_disagreeing_candidate_before_it_gets_any_live_weight(
    objects: Objects,
    model: RegisteredModel,
    exporter: QualityExporter,
    prometheus: PrometheusServer,
    routes: RouteHistory,
    operator: subprocess.Popen[bytes],
) -> None:
    exporter.feed(Feed(model.name, "2", "canary", comparisons_per_second=10, agreement=0.5))
    shadow = {"minComparisons": 30, "minAgreement": 0.9, "maxDuration": "60s"}
    objects.resources.apply_with_this_crd(quality_spec(model, prometheus.url, shadow=shadow))
    model.set_alias(CANDIDATE_ALIAS, "2")

    done = objects.wait(state_is("RolledBack"), "rolled back in the shadow phase", timeout=90)
    phase = canary(done)["shadow"]
    assert phase["state"] == "Failed"
    assert phase["comparisons"] >= 30
    assert phase["agreement"] == pytest.approx(0.5, abs=0.1)
    assert canary(done).get("analyses", []) == []  # no live step was analysed: there was none
    states = routes.snapshot()
    assert states, "the HTTPRoute was never seen"
    assert all(state.weight == 0 for state in states), states
    assert any(state.mirror for state in states), "the route never mirrored to the canary"
    assert not states[-1].mirror
    tags = _tags(model, "2")
    assert tags["modelpilot.io/rejected-metric"] == "shadow_agreement"
    assert float(tags["modelpilot.io/rejected-value"]) == pytest.approx(0.5, abs=0.1)
    assert model.alias("champion") == "1"
    assert {"ShadowStarted", "RollbackStarted", "RolledBack"} <= set(history_events(done))


def test_an_agreeing_candidate_goes_on_from_the_shadow_phase_to_the_live_steps(
    objects: Objects,
    model: RegisteredModel,
    exporter: QualityExporter,
    prometheus: PrometheusServer,
    routes: RouteHistory,
    operator: subprocess.Popen[bytes],
) -> None:
    exporter.feed(Feed(model.name, "2", "canary", comparisons_per_second=10, agreement=0.99))
    shadow = {"minComparisons": 30, "minAgreement": 0.9, "maxDuration": "60s"}
    objects.resources.apply_with_this_crd(quality_spec(model, prometheus.url, shadow=shadow))
    model.set_alias(CANDIDATE_ALIAS, "2")

    done = objects.wait(state_is("Succeeded"), "promoted after the shadow phase", timeout=120)
    assert canary(done)["shadow"]["state"] == "Passed"
    assert model.alias("champion") == "2"
    events = history_events(done)
    assert events.index("ShadowStarted") < events.index("ShadowPassed") < events.index("StepStarted")
    states = routes.snapshot()
    first_live = next(index for index, state in enumerate(states) if state.weight > 0)
    assert any(state.mirror for state in states[:first_live]), "no mirror before the first live step"
    assert not any(state.mirror for state in states[first_live:]), "the mirror outlived the shadow phase"
    weights = [state.weight for state in states if state.weight > 0]
    assert weights[0] == 50
    assert 100 in weights


@pytest.fixture
def gateway_without_mirror(cluster: Cluster, namespace: str, gateway_api: list[str]) -> Iterator[str]:
    """A Gateway `public` in the test namespace whose class lists its features, RequestMirror not among them."""
    api = client.CustomObjectsApi(cluster.api_client)
    class_name = f"no-mirror-{namespace}"
    api.create_cluster_custom_object(
        "gateway.networking.k8s.io", "v1", "gatewayclasses",
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": class_name},
         "spec": {"controllerName": "example.com/no-mirror"}},
    )  # fmt: skip
    try:
        features = [{"name": "HTTPRouteMethodMatching"}, {"name": "HTTPRouteSchemeRedirect"}]
        api.patch_cluster_custom_object_status(
            "gateway.networking.k8s.io", "v1", "gatewayclasses", class_name, {"status": {"supportedFeatures": features}}
        )
        gateway = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "public"},
            "spec": {"gatewayClassName": class_name, "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
        }
        api.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "gateways", gateway)
        yield class_name
    finally:
        api.delete_cluster_custom_object("gateway.networking.k8s.io", "v1", "gatewayclasses", class_name)


def test_a_gateway_whose_class_lacks_request_mirror_gets_no_mirror_and_the_rollout_pauses(
    objects: Objects,
    model: RegisteredModel,
    exporter: QualityExporter,
    prometheus: PrometheusServer,
    gateway_without_mirror: str,
    routes: RouteHistory,
    operator: subprocess.Popen[bytes],
) -> None:
    exporter.feed(Feed(model.name, "2", "canary", comparisons_per_second=10, agreement=1.0))
    shadow = {"minComparisons": 30, "minAgreement": 0.9, "maxDuration": "60s"}
    objects.resources.apply_with_this_crd(quality_spec(model, prometheus.url, shadow=shadow, parent={"name": "public"}))
    model.set_alias(CANDIDATE_ALIAS, "2")

    paused = objects.wait(state_is("Paused"), "paused: the Gateway cannot mirror", timeout=90)
    assert f"GatewayClass {gateway_without_mirror}" in canary(paused)["reason"]
    assert "HTTPRouteRequestMirror" in canary(paused)["reason"]
    objects.wait_events({"ShadowUnsupported"})
    time.sleep(5)  # a few more decisions: still paused, still no mirror, no weight
    assert state_is("Paused")(objects.mdep())
    states = routes.snapshot()
    assert states
    assert not any(state.mirror or state.weight for state in states), states
    assert model.alias("champion") == "1"

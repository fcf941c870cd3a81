"""`kubectl modelpilot dashboard` in a real browser (Debian's headless Chromium): the plugin serves the page on
loopback from the real API server, with ModelDeployments whose status carries a rollout's history, analyses,
drift and training; the try-it page uploads a CSV and gets predictions and gating weights from a real
`modelpilot-serve` (a model trained by `modelpilot-train`) behind the resource's Service, reached through the
API server's service proxy. Screenshots of each page are saved where the test prints."""

from __future__ import annotations

import csv
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from kubernetes import client

from modelpilot.operator.builders.common import selector as track_selector
from modelpilot.operator.builders.common import track_name
from modelpilot.operator.crd import build_crd
from modelpilot.operator.spec import GROUP, PLURAL, VERSION
from modelpilot.operator.status import (
    AnalysisResult,
    CanaryStatus,
    Condition,
    DriftStatus,
    HistoryEntry,
    ModelDeploymentStatus,
    TrackStatus,
    TrainingStatus,
)
from modelpilot.training.data import FEATURES
from tests.cluster.kubectl.conftest import PLUGIN
from tests.support.browser import headless_chromium, screenshots, wait_for
from tests.support.cluster import (
    Cluster,
    apply_manifest,
    create_namespace,
    delete_namespace,
    get_object,
    release_model_deployments,
    wait_until,
)
from tests.support.mlflow_server import MlflowServer
from tests.support.processes import stop
from tests.support.trained_model import TrainedModel, sample_flows, serving_process, train_small_model

__all__ = ["screenshots"]  # the fixture, used by the tests below

ROLLOUT, TRY = "fraud", "ids"
# Text from the cluster that a page which put it in as markup would run.
HOSTILE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
# An image the real node already holds (hack/cluster imports it); nothing is pulled.
BUSYBOX = "docker.io/library/busybox:1.37.0"
DRIFT_SCORES = {"bytes_in": 0.41, "duration": 0.12, "packets_out": 0.05}
ROWS = 6


def t(minute: int, second: int = 0) -> str:
    return f"2026-11-30T08:{minute:02d}:{second:02d}Z"


def rollout_status() -> ModelDeploymentStatus:
    """What the operator keeps about a rollout in its third analysis, a drift evaluation and two trainings."""
    analyses = [
        AnalysisResult(time=t(2), step=0, weight=20, verdict="Passed", reason="within limits",
                       values={"request_count": 240, "error_rate": 0.004, "p99_latency_seconds": 0.12}),
        AnalysisResult(time=t(3), step=1, weight=50, verdict="Inconclusive", reason="too few requests",
                       values={"request_count": 31, "error_rate": 0.0, "p99_latency_seconds": 0.10}),
        AnalysisResult(time=t(4), step=1, weight=50, verdict="Failed", reason=f"error rate too high {HOSTILE}",
                       values={"request_count": 520, "error_rate": 0.031, "p99_latency_seconds": 0.19}),
    ]  # fmt: skip
    history = [
        HistoryEntry(time=t(0), event="TrainingStarted", version="3", message="Job fraud-train-1 started (request)",
                     requested_by="alice", request_reason="new data"),
        HistoryEntry(time=t(1), event="TrainingSucceeded", version="4", message="registered version 4"),
        HistoryEntry(time=t(1, 30), event="RolloutStarted", version="4", message=f"rollout of 4 {HOSTILE}"),
        HistoryEntry(time=t(2), event="StepAdvanced", version="4", message="20% → 50%"),
    ]  # fmt: skip
    return ModelDeploymentStatus(
        observed_generation=1,
        phase="Progressing",
        model_name="fraud-detector",
        stable=TrackStatus(version="3", ready_replicas=2, replicas=2),
        canary=CanaryStatus(
            version="4",
            ready_replicas=1,
            replicas=1,
            state="Progressing",
            weight=50,
            effective_weight=50,
            step=1,
            step_started_at=t(2, 30),
            started_at=t(1, 30),
            failures=1,
            analyses=analyses,
            last_analysis=analyses[-1],
        ),
        training=TrainingStatus(
            job="fraud-train-1",
            trigger="request",
            run_id="0123abcd",
            version="4",
            result="Succeeded",
            started_at=t(0),
            finished_at=t(1),
        ),
        drift=DriftStatus(
            state="Drifted",
            method="psi",
            version="3",
            score=0.41,
            threshold=0.2,
            features=["bytes_in"],
            scores=DRIFT_SCORES,
            inputs=800,
            reason="bytes_in over the threshold",
            evaluated_at=t(4),
        ),
        conditions=[Condition(type="Ready", status="True", reason="Serving", message=HOSTILE)],
        history=history,
    )


def model_deployment(name: str, model: str, rollout: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"name": model, "alias": "champion", "candidateAlias": "challenger"},
        "registry": {"trackingUri": "http://127.0.0.1:9"},
        "serving": {"image": "ghcr.io/modelpilot/inference:test"},
        "traffic": {"router": "replicas"},
    }
    if rollout:
        spec["rollout"] = rollout
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": name}, "spec": spec}


def write_status(cluster: Cluster, namespace: str, name: str, status: ModelDeploymentStatus) -> None:
    client.CustomObjectsApi(cluster.api_client).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status.dump()}
    )


def host_address() -> str:
    """This machine's address on its default route: not loopback, which the API server refuses to proxy to."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("198.51.100.1", 9))  # no packet is sent: this only picks the route's source address
        return str(probe.getsockname()[0])


def real_node_address(cluster: Cluster) -> str:
    """The real node's InternalIP (the bridge hack/cluster makes): its host-network pods have this address."""
    for node in client.CoreV1Api(cluster.api_client).list_node(label_selector="type!=kwok").items:
        for address in (node.status.addresses if node.status else None) or []:
            if address.type == "InternalIP":
                return str(address.address)
    pytest.fail("the cluster has no real node (hack/cluster up starts one)")


def stable_track_on_the_node(cluster: Cluster, namespace: str, name: str, port: int) -> None:
    """`<name>-stable` as the operator builds it, and a host-network pod of the stable track on the real node
    whose port is the serving process's (which runs on the node's address, outside the pod): the API server's
    service proxy goes only to the addresses of pods, and the kubelet checks /readyz of the process."""
    selector = track_selector(name, "stable")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": track_name(name, "stable")},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-stable-host", "labels": selector},
        "spec": {
            "hostNetwork": True,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "holder",
                    "image": BUSYBOX,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                    "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
                }
            ],
        },
    }
    apply_manifest(cluster.api_client, service, namespace=namespace)
    apply_manifest(cluster.api_client, pod, namespace=namespace)
    core = client.CoreV1Api(cluster.api_client)

    def serving() -> bool:
        try:
            endpoints = core.read_namespaced_endpoints(track_name(name, "stable"), namespace)
        except client.ApiException as error:
            if error.status == 404:  # the endpoints controller has not written them yet
                return False
            raise
        return any(subset.addresses for subset in endpoints.subsets or [])

    wait_until(serving, timeout=120, description="the stable Service's endpoint ready")


@pytest.fixture(scope="module")
def trained(mlflow: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return train_small_model(mlflow.url, "ids-dashboard", tmp_path_factory.mktemp("train"))


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace whose pods run on the real node (the try-it page's Service needs a real pod)."""
    name = create_namespace(cluster.api_client, "dashboard", simulated=False)
    yield name
    release_model_deployments(cluster.api_client, name)
    delete_namespace(cluster.api_client, name)


@pytest.fixture
def deployments(cluster: Cluster, namespace: str, modelpilot_crd: dict[str, Any]) -> str:
    """The two ModelDeployments, their status written as the operator writes it (no operator runs here)."""
    apply_manifest(cluster.api_client, build_crd())  # this checkout's CRD: status.drift.scores must survive
    rollout = {"steps": [20, 50, 100], "interval": "1m", "analysis": {"prometheus": "http://127.0.0.1:9",
               "maxErrorRate": 0.02, "maxP99Latency": "250ms", "minRequests": 50}}  # fmt: skip
    for name, model, spec_rollout in ((ROLLOUT, "fraud-detector", rollout), (TRY, "ids-dashboard", None)):
        apply_manifest(cluster.api_client, model_deployment(name, model, spec_rollout), namespace=namespace)
    write_status(cluster, namespace, ROLLOUT, rollout_status())
    written = get_object(cluster.api_client, f"{GROUP}/{VERSION}", "ModelDeployment", ROLLOUT, namespace) or {}
    assert written["status"]["drift"].get("scores") == DRIFT_SCORES, "the cluster's CRD is another checkout's"
    write_status(cluster, namespace, TRY, ModelDeploymentStatus(phase="Ready", stable=TrackStatus(version="1")))
    return namespace


@pytest.fixture
def dashboard(cluster: Cluster, deployments: str, tmp_path: Path) -> Iterator[str]:
    """`kubectl modelpilot dashboard` as a person runs it; the URL it prints."""
    log = (tmp_path / "dashboard.err").open("wb")
    process = subprocess.Popen(
        [*PLUGIN, "dashboard", "--kubeconfig", str(cluster.kubeconfig), "-n", deployments],
        stdout=subprocess.PIPE,
        stderr=log,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("Dashboard: http://127.0.0.1:"), (line, (tmp_path / "dashboard.err").read_text())
        yield line.split()[1]
    finally:
        stop(process)
        log.close()


def test_the_dashboard_listens_on_loopback_only(dashboard: str) -> None:
    port = int(dashboard.rstrip("/").rsplit(":", 1)[1])
    assert httpx.get(f"{dashboard}api/context").json()["namespace"]
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host_address(), port), timeout=2):
        pass
    # Another name for this server (DNS rebinding) and a prediction from another site's page are refused.
    assert httpx.get(f"{dashboard}api/modeldeployments", headers={"Host": f"evil.example:{port}"}).status_code == 421
    foreign = httpx.post(
        f"{dashboard}api/modeldeployments/x/y/predict", content="a\n1\n", headers={"Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403


def test_the_list_and_the_rollout_page_show_history_analyses_drift_and_training(
    dashboard: str, deployments: str, screenshots: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    with headless_chromium(tmp_path / "chromedriver.log") as browser:
        browser.get(dashboard)
        rows = wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#md-table tbody tr"), "the list")
        assert [row.find_elements(By.TAG_NAME, "td")[1].text for row in rows] == [ROLLOUT, TRY]
        assert "50%" in rows[0].text
        assert "Drifted" in rows[0].text
        browser.save_screenshot(str(screenshots / "list.png"))

        rows[0].find_element(By.LINK_TEXT, ROLLOUT).click()
        wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#weight-chart svg path.line"), "the weight chart")
        weights = browser.find_elements(By.CSS_SELECTOR, "#weight-chart svg circle.point")
        assert len(weights) == 5  # started (0), three analyses, the current step since it took effect
        metric_charts = browser.find_elements(By.CSS_SELECTOR, ".metric-chart")
        assert [c.get_attribute("data-metric") for c in metric_charts] == [
            "request_count", "error_rate", "p99_latency_seconds"
        ]  # fmt: skip
        for chart in metric_charts:
            assert len(chart.find_elements(By.CSS_SELECTOR, "circle.point")) == 3
        failed = metric_charts[1].find_elements(By.CSS_SELECTOR, "circle.point.Failed")
        assert len(failed) == 1
        assert metric_charts[1].find_elements(By.CSS_SELECTOR, "line.threshold")  # maxErrorRate drawn
        analyses = browser.find_elements(By.CSS_SELECTOR, "#analysis-table tbody tr")
        assert [row.find_elements(By.TAG_NAME, "td")[3].text for row in analyses] == [
            "Failed",
            "Inconclusive",
            "Passed",
        ]
        bars = browser.find_elements(By.CSS_SELECTOR, "#drift-chart rect.bar")
        assert [bar.get_attribute("data-label") for bar in bars] == list(DRIFT_SCORES)  # worst first
        assert [bar.get_attribute("class") for bar in bars] == ["bar over", "bar", "bar"]
        training = browser.find_elements(By.CSS_SELECTOR, "#training-table tbody tr")
        assert [row.find_elements(By.TAG_NAME, "td")[1].text for row in training] == [
            "TrainingSucceeded",
            "TrainingStarted",
        ]
        page = browser.find_element(By.ID, "page").text
        assert "50% now (the step asks 50%)" in page
        assert "1 failed, 0 inconclusive in a row" in page
        history = browser.find_element(By.ID, "history-table").text
        assert HOSTILE in browser.find_element(By.ID, "page").text  # shown as the text it is
        assert "alice" in history
        assert "new data" in history
        # Nothing from the cluster ran or became markup.
        assert browser.execute_script("return window.__xss === undefined")
        assert not browser.find_elements(By.CSS_SELECTOR, "#page img, #page script")
        browser.save_screenshot(str(screenshots / "rollout.png"))


def test_try_it_uploads_a_csv_and_shows_predictions_and_gating_weights(
    dashboard: str,
    deployments: str,
    cluster: Cluster,
    mlflow: MlflowServer,
    trained: TrainedModel,
    screenshots: Path,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    address = real_node_address(cluster)
    rows = sample_flows(ROWS, seed=5)
    columns = [*FEATURES[:-1], f"{FEATURES[-1]} {HOSTILE}"]  # a tensor model takes the columns in file order
    upload = tmp_path / "flows.csv"
    with upload.open("w", newline="") as out:
        csv.writer(out).writerows([columns, *rows.tolist()])
    with serving_process(mlflow.url, trained, tmp_path / "serve.log", host=address) as served:
        stable_track_on_the_node(cluster, deployments, TRY, served.port)
        direct = httpx.post(
            f"{served.url}/v1/models/{trained.name}/predict", json={"instances": rows.tolist(), "return_gates": True}
        ).json()
        with headless_chromium(tmp_path / "chromedriver.log") as browser:
            browser.get(f"{dashboard}#/try/{deployments}/{TRY}")
            file_input = wait_for(browser, lambda b: b.find_element(By.ID, "csv-file"), "the try-it form")
            file_input.send_keys(str(upload))
            Select(browser.find_element(By.ID, "track")).select_by_value("stable")
            browser.find_element(By.ID, "predict-button").click()
            table = wait_for(
                browser,
                lambda b: b.find_elements(By.ID, "predictions-table") or b.find_elements(By.ID, "try-error"),
                "the predictions",
                timeout=60,
            )[0]
            assert table.get_attribute("id") == "predictions-table", table.text
            lines = table.find_elements(By.CSS_SELECTOR, "tbody tr")
            assert len(lines) == ROWS
            headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
            assert headers[-2:] == ["Class", "Prediction"]
            assert HOSTILE in headers[-3]
            classes = [line.find_elements(By.TAG_NAME, "td")[-2].text for line in lines]
            assert classes == [str(c) for c in direct["classes"]]  # what the model server answers directly
            assert f"version {trained.version}, stable track" in browser.find_element(By.ID, "prediction-source").text

            gates = browser.find_elements(By.CSS_SELECTOR, "#gates-chart svg rect.gate")
            assert len(gates) == ROWS * trained.experts  # one bar per row and expert
            widths = np.zeros((ROWS, trained.experts))
            for gate in gates:
                widths[int(gate.get_attribute("data-row")), int(gate.get_attribute("data-expert"))] = float(
                    gate.get_attribute("width")
                )
            np.testing.assert_allclose(widths / widths.sum(axis=1, keepdims=True), direct["gates"], atol=1e-3)
            np.testing.assert_allclose(widths.sum(axis=1), widths.sum(axis=1)[0], rtol=1e-3)  # each row sums to 1
            assert browser.execute_script("return window.__xss === undefined")
            assert not browser.find_elements(By.CSS_SELECTOR, "#page img, #page script")
            browser.save_screenshot(str(screenshots / "try-it.png"))

            # The canary track has no Service: the page says who could not be reached.
            Select(browser.find_element(By.ID, "track")).select_by_value("canary")
            browser.find_element(By.ID, "predict-button").click()
            error = wait_for(browser, lambda b: b.find_elements(By.ID, "try-error"), "the error")[0]
            assert f"{TRY}-canary" in error.text
            browser.save_screenshot(str(screenshots / "try-it-no-canary.png"))

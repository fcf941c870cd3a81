"""Request-rate autoscaling wired through the real operator process and a real API server (kwok pods).

With the keda backend (KEDA's CRDs served) a spec with serving.autoscaling.requestRate gets a ScaledObject
per track and no HPA of the operator's, RequestRateScaling True; taking requestRate out swaps the
ScaledObject for the operator's CPU HPA. With the hpa backend the same spec gets the CPU HPA, and the
condition and one Warning Event say that KEDA is missing. KEDA itself does not run here (kwok pods serve no
requests): its CRDs' schema is checked in tests/cluster/builders, and tests/e2e/test_request_rate_scaling.py
runs KEDA on the real node and scales real pods with it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.cluster.operator.conftest import RegisteredModel, condition, is_ready_with, model_deployment
from tests.support.cluster import Cluster, install_this_crd, wait_until
from tests.support.keda import install_keda_crds
from tests.support.namespace_objects import Resources
from tests.support.operator_process import operator_process

SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject")
HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
PROMETHEUS = "http://prometheus.monitoring:9090"


@pytest.fixture(scope="module")
def keda_crds(api_client: client.ApiClient) -> list[str]:
    return install_keda_crds(api_client)


@pytest.fixture
def keda_operator(
    cluster: Cluster, namespace: str, tmp_path: Path, keda_crds: list[str]
) -> Iterator[subprocess.Popen[bytes]]:
    with operator_process(cluster.kubeconfig, namespace, tmp_path / "operator.log", autoscaler="keda") as process:
        yield process


def _current_crd(cluster: Cluster) -> None:
    """This checkout's ModelDeployment CRD, applied again: a test session of another checkout on the same
    cluster may have applied its own since this session began, one without serving.autoscaling.requestRate."""
    install_this_crd(cluster.api_client)


def _serving(request_rate: bool) -> dict[str, Any]:
    autoscaling: dict[str, Any] = {"minReplicas": 1, "maxReplicas": 4, "targetCPUUtilization": 60}
    if request_rate:
        autoscaling["requestRate"] = {"targetPerReplica": 20, "prometheus": PROMETHEUS}
    return {
        "image": "ghcr.io/modelpilot/inference:test",
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "autoscaling": autoscaling,
    }


def test_keda_backend_scales_request_rate_specs_with_scaled_objects_and_others_with_hpas(
    cluster: Cluster, resources: Resources, model: RegisteredModel, keda_operator: subprocess.Popen[bytes]
) -> None:
    version = model.add_version()
    model.set_alias("champion", version)
    _current_crd(cluster)
    resources.apply(model_deployment("fraud", model, serving=_serving(True)))
    ready = resources.wait_mdep("fraud", is_ready_with(version), f"Ready with version {version}")
    scaling = condition(ready, "RequestRateScaling")
    assert (scaling["status"], scaling["reason"]) == ("True", "ScaledObject")

    scaled = resources.get(*SCALED_OBJECT, "fraud-stable")
    assert scaled is not None
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "fraud-stable"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    rate, cpu = spec["triggers"]
    assert rate["metadata"]["serverAddress"] == PROMETHEUS
    query = rate["metadata"]["query"]
    assert f'namespace="{resources.namespace}"' in query
    assert f'model="{model.name}"' in query
    assert 'track="stable"' in query
    assert cpu["metadata"]["value"] == "60"
    assert resources.get(*HPA, "fraud-stable") is None  # KEDA's HPA would be keda-hpa-fraud-stable
    assert scaled["metadata"]["ownerReferences"][0]["name"] == "fraud"

    resources.apply(model_deployment("fraud", model, serving=_serving(False)))
    wait_until(lambda: resources.get(*HPA, "fraud-stable"), timeout=60, description="the operator's HPA")
    resources.wait_gone(*SCALED_OBJECT, "fraud-stable", timeout=60)
    resources.wait_mdep("fraud", lambda obj: not condition(obj, "RequestRateScaling"), "the condition gone")


def test_hpa_backend_scales_a_request_rate_spec_on_cpu_and_says_keda_is_missing(
    cluster: Cluster, resources: Resources, model: RegisteredModel, operator: subprocess.Popen[bytes]
) -> None:
    version = model.add_version()
    model.set_alias("champion", version)
    _current_crd(cluster)
    resources.apply(model_deployment("fraud", model, serving=_serving(True)))
    ready = resources.wait_mdep("fraud", is_ready_with(version), f"Ready with version {version}")
    scaling = condition(ready, "RequestRateScaling")
    assert (scaling["status"], scaling["reason"]) == ("False", "KedaNotInstalled")
    hpa = resources.get(*HPA, "fraud-stable")
    assert hpa is not None
    assert [metric["type"] for metric in hpa["spec"]["metrics"]] == ["Resource"]
    warnings = [e for e in resources.events("fraud") if e["reason"] == "KedaNotInstalled"]
    assert len(warnings) == 1
    assert warnings[0]["type"] == "Warning"

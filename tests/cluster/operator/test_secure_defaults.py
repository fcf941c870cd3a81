"""Secure defaults against a real API server (kwok pods) and a real MLflow: the canary header's value comes
from a Secret and goes with it; serving authentication is mounted from Secrets; no pod may unpickle models."""

from __future__ import annotations

import base64
import subprocess
import time
from typing import Any

import pytest
from kubernetes import client

from tests.cluster.operator.conftest import RegisteredModel, condition, is_ready_with, model_deployment
from tests.support.cluster import Cluster, wait_until
from tests.support.gateway_api import install_gateway_api_crds
from tests.support.namespace_objects import Resources

ROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute", "fraud")
SECRET = "fraud-canary-header"
FIRST_VALUE = "5b1e0c7a9d3f42e8b6a1"
SECOND_VALUE = "c04d9e2f7a6b13e5d8f0"


@pytest.fixture
def gateway_api(cluster: Cluster) -> list[str]:
    return install_gateway_api_crds(cluster.api_client)


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "data": encoded}


def _header_values(route: dict[str, Any] | None) -> list[str]:
    """The values of the route's header matches (none without a header rule)."""
    if route is None:
        return []
    return [
        header["value"]
        for rule in route["spec"]["rules"]
        for match in rule.get("matches") or []
        for header in match.get("headers") or []
    ]


def _rollout_spec(model: RegisteredModel, **traffic: Any) -> dict[str, Any]:
    first, second = model.add_version(), model.add_version()
    model.set_alias("champion", first)
    model.set_alias("challenger", second)
    manifest = model_deployment(
        "fraud",
        model,
        traffic={"router": "gateway", "gateway": {"parentRefs": [{"name": "public"}]}, **traffic},
        # Nothing answers there: the analysis stays inconclusive and the canary stays in place.
        rollout={"steps": [10, 100], "interval": "30s", "analysis": {"prometheus": "http://127.0.0.1:9"}},
    )
    manifest["spec"]["model"]["candidateAlias"] = "challenger"
    return manifest


def test_the_canary_header_comes_from_its_secret_and_goes_with_it(
    resources: Resources, model: RegisteredModel, operator: subprocess.Popen[bytes], gateway_api: list[str]
) -> None:
    resources.apply(_secret(SECRET, {"value": FIRST_VALUE}))
    header = {"name": "x-model-track", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "value"}}}
    resources.apply(_rollout_spec(model, header=header))

    wait_until(lambda: _header_values(resources.get(*ROUTE)) == [FIRST_VALUE], timeout=60, description="header rule")
    ready = condition(resources.mdep("fraud"), "CanaryHeaderReady")
    assert (ready.get("status"), ready.get("reason")) == ("True", "SecretRead")

    # A rotated value reaches the route at the next reconciliation.
    resources.apply(_secret(SECRET, {"value": SECOND_VALUE}))
    wait_until(lambda: _header_values(resources.get(*ROUTE)) == [SECOND_VALUE], timeout=60, description="rotated value")

    # The Secret goes: the route keeps its weights, loses the header rule, and the resource says why, once.
    client.CoreV1Api(resources.api).delete_namespaced_secret(SECRET, resources.namespace)
    missing = resources.wait_mdep(
        "fraud",
        lambda obj: condition(obj, "CanaryHeaderReady").get("reason") == "HeaderSecretMissing",
        "CanaryHeaderReady=False HeaderSecretMissing",
    )
    assert condition(missing, "CanaryHeaderReady")["status"] == "False"
    assert SECOND_VALUE not in str(missing["status"])
    wait_until(lambda: _header_values(resources.get(*ROUTE)) == [], timeout=60, description="header rule gone")
    route = resources.get(*ROUTE)
    assert route is not None
    assert len(route["spec"]["rules"]) == 1
    # Several reconciliations later (the poll is 1 s) there is still one Event for the one problem.
    time.sleep(5)
    events = [event for event in resources.events("fraud") if event["reason"] == "HeaderSecretMissing"]
    assert len(events) == 1, events
    assert events[0]["type"] == "Warning"


def test_without_a_header_no_request_is_routed_by_one(
    resources: Resources, model: RegisteredModel, operator: subprocess.Popen[bytes], gateway_api: list[str]
) -> None:
    resources.apply(_rollout_spec(model))

    def canary_backend() -> bool:
        route = resources.get(*ROUTE)
        return route is not None and "fraud-canary" in str(route["spec"]["rules"])

    wait_until(canary_backend, timeout=60, description="the canary in the HTTPRoute")
    route = resources.get(*ROUTE)
    assert route is not None
    assert len(route["spec"]["rules"]) == 1
    assert _header_values(route) == []
    assert condition(resources.mdep("fraud"), "CanaryHeaderReady") == {}


def test_serving_auth_is_mounted_from_secrets_and_pickles_are_refused(
    resources: Resources, model: RegisteredModel, operator: subprocess.Popen[bytes]
) -> None:
    version = model.add_version()
    model.set_alias("champion", version)
    resources.apply(_secret("fraud-clients", {"api-keys": "first-key\nsecond-key\n"}))
    serving = {
        "image": "ghcr.io/modelpilot/inference:test",
        "replicas": 1,
        "auth": {"apiKeys": {"name": "fraud-clients", "key": "api-keys"}},
    }
    resources.apply(model_deployment("fraud", model, serving=serving))
    resources.wait_mdep("fraud", is_ready_with(version), f"Ready with version {version}")

    deployment = resources.deployment("fraud-stable")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["MODELPILOT_API_KEYS_FILE"] == "/etc/modelpilot/auth/auth-api-keys/value"
    assert env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    volume = next(item for item in pod["volumes"] if item["name"] == "auth-api-keys")
    assert volume["secret"]["secretName"] == "fraud-clients"
    assert volume["secret"]["defaultMode"] == 0o440
    mount = next(item for item in container["volumeMounts"] if item["name"] == "auth-api-keys")
    assert mount["readOnly"] is True
    # No key is in the Deployment, only the Secret's name.
    assert "first-key" not in str(deployment)

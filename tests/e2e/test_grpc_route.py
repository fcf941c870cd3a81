"""gRPC through a real Gateway: the Open Inference Protocol's gRPC service of real serving pods, reached with
tritonclient[grpc] from this machine through Traefik's listener on 127.0.0.1:18000, by the GRPCRoute the
gateway router builds (`builders.routing`), on the same listener as the HTTPRoute with a hostname of its own
(the one sharing Gateway API allows between the two kinds of route).

The GRPCRoute is the builder's output applied by the test for the ModelDeployment the installed operator
serves (owned by it, as the operator applies it): the installed operator runs from its image, which this
test does not rebuild, so the object checked here is the one the checked-out builder makes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from modelpilot.operator.builders.common import Owner
from modelpilot.operator.builders.routing import RouterPlan, build_router
from modelpilot.operator.spec import GROUP, VERSION, parse_spec
from tests.e2e.deployments import MLFLOW, SMALL_RESOURCES, infer_body, is_served, served_version, training
from tests.e2e.pods import INFERENCE_IMAGE
from tests.support.cluster import wait_until
from tests.support.namespace_objects import Resources

NAME = "grpc-routed"
MODEL = f"e2e-grpc-{secrets.token_hex(3)}"
HOST = f"{MODEL}.e2e.modelpilot.test"
GRPC_HOST = f"grpc.{HOST}"
# The Gateway of hack/e2e.d/traefik.yaml: its listener `web` on 127.0.0.1:18000 (a hostPort); Traefik's
# entrypoints take cleartext HTTP/2 (h2c), which is what gRPC without TLS is.
GATEWAY = {"name": "traefik", "namespace": "traefik", "sectionName": "web"}
LISTENER = "127.0.0.1:18000"


def _spec(*, grpc: bool) -> dict[str, Any]:
    gateway: dict[str, Any] = {"parentRefs": [GATEWAY], "hostnames": [HOST]}
    if grpc:
        gateway["grpc"] = {"parentRefs": [GATEWAY], "hostnames": [GRPC_HOST]}
    return {
        "model": {"name": MODEL, "alias": "champion", "candidateAlias": "challenger"},
        "registry": {"trackingUri": MLFLOW, "pollInterval": "5s"},
        "serving": {"image": INFERENCE_IMAGE, "replicas": 1, "resources": SMALL_RESOURCES},
        "traffic": {"router": "gateway", "gateway": gateway},
        "training": training(),
    }


@pytest.fixture(scope="module")
def served(objects: Resources) -> dict[str, Any]:
    """The ModelDeployment (HTTPRoute only: the installed CRD may predate `grpc`) trained and served."""
    objects.apply(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": NAME},
            "spec": _spec(grpc=False),
        }
    )
    return objects.wait_mdep(NAME, is_served, "first version trained and served", timeout=900, interval=2)


@pytest.fixture(scope="module")
def grpc_route(objects: Resources, served: dict[str, Any]) -> dict[str, Any]:
    """The gateway router's GRPCRoute for the served ModelDeployment at weight 0 (no canary), applied."""
    owner = Owner(name=NAME, namespace=objects.namespace, uid=served["metadata"]["uid"])
    plan = RouterPlan(canary_weight=0, canary_present=False)
    [route] = [
        obj for obj in build_router(owner, parse_spec(_spec(grpc=True)), plan).apply if obj["kind"] == "GRPCRoute"
    ]
    objects.apply(route)
    return route


@pytest.fixture(scope="module")
def grpc_client() -> Iterator[triton_grpc.InferenceServerClient]:
    """tritonclient[grpc] on the Gateway's listener, naming the GRPCRoute's hostname as its authority."""
    client = triton_grpc.InferenceServerClient(LISTENER, channel_args=[("grpc.default_authority", GRPC_HOST)])
    yield client
    client.close()


def _ready(client: triton_grpc.InferenceServerClient) -> bool:
    try:
        return bool(client.is_model_ready(MODEL))
    except Exception:  # not routed yet: Traefik answers UNAVAILABLE or UNIMPLEMENTED until it has the route
        return False


def test_the_grpc_route_is_accepted_by_the_gateway(
    objects: Resources, grpc_route: dict[str, Any], grpc_client: triton_grpc.InferenceServerClient
) -> None:
    def accepted() -> bool:
        route = objects.get("gateway.networking.k8s.io/v1", "GRPCRoute", NAME) or {}
        parents = (route.get("status") or {}).get("parents") or []
        return any(
            c.get("type") == "Accepted" and c.get("status") == "True"
            for p in parents
            for c in p.get("conditions") or []
        )

    wait_until(accepted, timeout=60, description="Traefik accepts the GRPCRoute", interval=0.5)
    # The HTTPRoute beside it on the same listener keeps being accepted (their hostnames do not meet).
    http_route = objects.get("gateway.networking.k8s.io/v1", "HTTPRoute", NAME) or {}
    conditions = [c for p in (http_route.get("status") or {}).get("parents") or [] for c in p.get("conditions") or []]
    assert any(c.get("type") == "Accepted" and c.get("status") == "True" for c in conditions), conditions


def test_tritonclient_grpc_infers_through_the_gateway_as_http_does(
    served: dict[str, Any], grpc_route: dict[str, Any], grpc_client: triton_grpc.InferenceServerClient
) -> None:
    wait_until(lambda: _ready(grpc_client), timeout=60, description="the Gateway routes gRPC calls", interval=0.5)
    version = served_version(served)
    http = httpx.Client(base_url=f"http://{LISTENER}", headers={"host": HOST}, timeout=10)
    metadata = http.get(f"/v2/models/{MODEL}")
    assert metadata.status_code == 200, metadata.text
    body = infer_body(metadata.json())
    [tensor] = body["inputs"]
    rows = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    grpc_input = triton_grpc.InferInput(tensor["name"], list(rows.shape), "FP32")
    grpc_input.set_data_from_numpy(rows)
    answer = grpc_client.infer(MODEL, [grpc_input])
    assert answer.get_response().model_version == version
    over_http = http.post(f"/v2/models/{MODEL}/infer", json=body)
    assert over_http.status_code == 200, over_http.text
    expected = np.asarray(over_http.json()["outputs"][0]["data"], dtype=np.float32)
    assert np.allclose(answer.as_numpy("output").reshape(-1), expected, rtol=1e-6)
    # Every call went through the route to the stable Service's gRPC port (weight 100 without a canary).
    assert [ref["name"] for ref in grpc_route["spec"]["rules"][0]["backendRefs"]] == [f"{NAME}-stable"]

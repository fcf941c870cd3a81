"""The router in each mode: weights, the canary header, and what each plan removes."""

from __future__ import annotations

from typing import Any

import pytest

from modelpilot.operator.builders.routing import (
    RouterPlan,
    build_router,
    lacks_request_mirror,
    mirror_target,
    router_mirrors,
    router_weight,
)
from tests.unit.operator.builders.examples import HEADER_VALUE, OWNER, gateway_raw, ingress_raw, replicas_raw, spec_of
from tests.unit.operator.builders.golden import assert_matches_golden

ROUTE_KEY = ("gateway.networking.k8s.io/v1", "HTTPRoute", "fraud")
GRPC_ROUTE_KEY = ("gateway.networking.k8s.io/v1", "GRPCRoute", "fraud")
INGRESS_KEY = ("networking.k8s.io/v1", "Ingress", "fraud")
CANARY_INGRESS_KEY = ("networking.k8s.io/v1", "Ingress", "fraud-canary")
SHARED_SERVICE_KEY = ("v1", "Service", "fraud")


def _route(weight: int, present: bool, header_value: str | None = HEADER_VALUE) -> dict[str, Any]:
    objects = build_router(OWNER, spec_of(gateway_raw()), RouterPlan(weight, present, header_value))
    assert len(objects.apply) == 1
    return objects.apply[0]


@pytest.mark.parametrize(
    ("mode", "raw"), [("gateway", gateway_raw), ("ingress", ingress_raw), ("replicas", replicas_raw)]
)
def test_router_with_a_canary_matches_golden(mode: str, raw: Any) -> None:
    plan = RouterPlan(canary_weight=25, canary_present=True, canary_header_value=HEADER_VALUE)
    objects = build_router(OWNER, spec_of(raw()), plan)
    assert_matches_golden(f"router-{mode}-canary-25", objects.apply)


def test_http_route_splits_stable_and_canary_and_adds_the_header_rule() -> None:
    route = _route(25, present=True)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["metadata"]["name"] == "fraud"
    assert route["metadata"]["ownerReferences"] == [OWNER.reference()]
    spec = route["spec"]
    assert spec["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "public",
            "namespace": "gateways",
            "sectionName": "https",
        }
    ]
    assert spec["hostnames"] == ["fraud.example.com"]
    weighted, header = spec["rules"]
    assert weighted["backendRefs"] == [
        {"name": "fraud-stable", "port": 8080, "weight": 75},
        {"name": "fraud-canary", "port": 8080, "weight": 25},
    ]
    assert weighted["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert header["matches"][0]["headers"] == [{"type": "Exact", "name": "x-model-track", "value": HEADER_VALUE}]
    assert header["backendRefs"] == [{"name": "fraud-canary", "port": 8080}]


def test_http_route_without_a_canary_has_no_canary_backend_and_no_header_rule() -> None:
    route = _route(30, present=False)
    assert route["spec"]["rules"] == [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [{"name": "fraud-stable", "port": 8080, "weight": 100}],
        }
    ]
    assert "fraud-canary" not in str(route)


@pytest.mark.parametrize("weight", [0, 1, 10, 25, 50, 99, 100])
def test_http_route_weights_sum_to_100_and_read_back(weight: int) -> None:
    route = _route(weight, present=True)
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert sum(ref["weight"] for ref in refs) == 100
    assert router_weight(route) == weight


def test_http_route_omits_hostnames_when_none_are_given_and_uses_the_path() -> None:
    raw = gateway_raw()
    raw["traffic"]["gateway"] = {"parentRefs": [{"name": "public"}], "path": "/fraud"}
    route = build_router(OWNER, spec_of(raw), RouterPlan(10, True)).apply[0]
    assert "hostnames" not in route["spec"]
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}]
    for rule in route["spec"]["rules"]:
        assert rule["matches"][0]["path"] == {"type": "PathPrefix", "value": "/fraud"}


def test_gateway_mode_removes_the_objects_of_the_other_modes() -> None:
    objects = build_router(OWNER, spec_of(gateway_raw()), RouterPlan(0, False))
    # No spec.traffic.gateway.grpc: a GRPCRoute left from an earlier spec goes too.
    assert set(objects.delete) == {INGRESS_KEY, CANARY_INGRESS_KEY, SHARED_SERVICE_KEY, GRPC_ROUTE_KEY}


def test_ingress_mode_with_canary_annotates_a_second_ingress() -> None:
    objects = build_router(OWNER, spec_of(ingress_raw()), RouterPlan(40, True, HEADER_VALUE))
    stable, canary = objects.apply
    assert stable["metadata"]["name"] == "fraud"
    assert "annotations" not in stable["metadata"]
    assert stable["spec"]["ingressClassName"] == "nginx"
    assert stable["spec"]["tls"] == [{"hosts": ["fraud.example.com"], "secretName": "fraud-tls"}]
    stable_path = stable["spec"]["rules"][0]["http"]["paths"][0]
    assert stable_path["backend"] == {"service": {"name": "fraud-stable", "port": {"number": 9000}}}
    assert stable["spec"]["rules"][0]["host"] == "fraud.example.com"

    assert canary["metadata"]["name"] == "fraud-canary"
    assert canary["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "40",
        "nginx.ingress.kubernetes.io/canary-by-header": "x-model-track",
        "nginx.ingress.kubernetes.io/canary-by-header-value": HEADER_VALUE,
    }
    canary_path = canary["spec"]["rules"][0]["http"]["paths"][0]
    assert canary_path["backend"]["service"]["name"] == "fraud-canary"
    assert canary_path["path"] == stable_path["path"]
    assert canary["spec"]["rules"][0]["host"] == "fraud.example.com"
    assert router_weight(canary) == 40
    assert router_weight(stable) is None
    assert set(objects.delete) == {ROUTE_KEY, GRPC_ROUTE_KEY, SHARED_SERVICE_KEY}


def test_ingress_mode_without_canary_deletes_the_canary_ingress() -> None:
    objects = build_router(OWNER, spec_of(ingress_raw()), RouterPlan(40, False))
    assert [obj["metadata"]["name"] for obj in objects.apply] == ["fraud"]
    assert CANARY_INGRESS_KEY in objects.delete


def test_ingress_mode_uses_the_configured_header() -> None:
    raw = ingress_raw()
    raw["traffic"]["header"]["name"] = "X-Canary"
    canary = build_router(OWNER, spec_of(raw), RouterPlan(0, True, "a-value-from-the-secret")).apply[1]
    assert canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-header"] == "X-Canary"
    assert canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-header-value"] == (
        "a-value-from-the-secret"
    )
    assert router_weight(canary) == 0


@pytest.mark.parametrize("configured", [True, False])
def test_without_a_header_value_no_request_is_routed_by_a_header(configured: bool) -> None:
    """No header configured, or its Secret unreadable: weights only, in both router modes."""
    gateway, ingress = gateway_raw(), ingress_raw()
    if not configured:
        del gateway["traffic"]["header"], ingress["traffic"]["header"]
    value = HEADER_VALUE if not configured else None  # a value without a configured header is ignored too
    route = build_router(OWNER, spec_of(gateway), RouterPlan(25, True, value)).apply[0]
    assert len(route["spec"]["rules"]) == 1
    assert "headers" not in str(route["spec"])
    canary = build_router(OWNER, spec_of(ingress), RouterPlan(25, True, value)).apply[1]
    assert canary["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "25",
    }


def test_a_spec_without_a_header_has_no_header_by_default() -> None:
    raw = gateway_raw()
    del raw["traffic"]["header"]
    assert spec_of(raw).traffic.header is None


def test_replicas_mode_is_one_service_over_both_tracks() -> None:
    objects = build_router(OWNER, spec_of(replicas_raw()), RouterPlan(50, True))
    (service,) = objects.apply
    assert service["kind"] == "Service"
    assert service["metadata"]["name"] == "fraud"
    assert service["spec"]["selector"] == {
        "modelpilot.io/deployment": "fraud",
        "app.kubernetes.io/component": "serving",
    }
    assert router_weight(service) is None
    assert set(objects.delete) == {ROUTE_KEY, GRPC_ROUTE_KEY, INGRESS_KEY, CANARY_INGRESS_KEY}


@pytest.mark.parametrize("raw", [gateway_raw, ingress_raw, replicas_raw])
@pytest.mark.parametrize("present", [True, False])
def test_a_plan_never_deletes_what_it_applies(raw: Any, present: bool) -> None:
    objects = build_router(OWNER, spec_of(raw()), RouterPlan(10, present))
    applied = {(obj["apiVersion"], obj["kind"], obj["metadata"]["name"]) for obj in objects.apply}
    assert not applied & set(objects.delete)
    for obj in objects.apply:
        assert obj["metadata"]["labels"]["app.kubernetes.io/component"] == "router"
        assert obj["metadata"]["ownerReferences"] == [OWNER.reference()]


def test_router_weight_of_an_unweighted_or_empty_route() -> None:
    assert router_weight({"kind": "HTTPRoute", "metadata": {"name": "fraud"}, "spec": {}}) == 0
    two_equal = {
        "kind": "HTTPRoute",
        "metadata": {"name": "fraud"},
        "spec": {"rules": [{"backendRefs": [{"name": "fraud-stable"}, {"name": "fraud-canary"}]}]},
    }
    assert router_weight(two_equal) == 50
    assert router_weight({"kind": "Deployment", "metadata": {"name": "fraud"}}) is None


@pytest.mark.parametrize("raw", [gateway_raw, ingress_raw, replicas_raw])
def test_routers_reach_only_the_prediction_port_never_metrics(raw: Any) -> None:
    """/metrics is on its own port; a router's backends name the prediction port, where /metrics is a 404."""
    spec = spec_of(raw())
    for obj in build_router(OWNER, spec, RouterPlan(canary_weight=25, canary_present=True)).apply:
        ports = _backend_ports(obj)
        assert ports, obj["kind"]
        assert set(ports) == {spec.serving.port}, obj["kind"]


def _backend_ports(obj: dict[str, Any]) -> list[int]:
    if obj["kind"] == "HTTPRoute":
        return [ref["port"] for rule in obj["spec"]["rules"] for ref in rule["backendRefs"]]
    if obj["kind"] == "Ingress":
        paths = [path for rule in obj["spec"]["rules"] for path in rule["http"]["paths"]]
        return [path["backend"]["service"]["port"]["number"] for path in paths]
    return [port["port"] for port in obj["spec"]["ports"]]


# --- The shadow phase's mirror --------------------------------------------------------------------


def test_the_shadow_phase_mirrors_the_weighted_rule_to_the_canary_service_with_no_weight() -> None:
    plan = RouterPlan(canary_weight=0, canary_present=True, canary_header_value=HEADER_VALUE, mirror=True)
    route = build_router(OWNER, spec_of(gateway_raw()), plan).apply[0]
    weighted, header = route["spec"]["rules"]
    # Gateway API's HTTPRequestMirrorFilter: the backendRef whose answers are dropped, every request mirrored.
    assert weighted["filters"] == [
        {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "fraud-canary", "port": 8080}}}
    ]
    assert [ref.get("weight") for ref in weighted["backendRefs"]] == [100, 0]
    assert "filters" not in header  # a tester's header request reaches the canary itself, once
    assert router_weight(route) == 0
    assert router_mirrors(route)
    assert not router_mirrors(_route(0, present=True))


def test_without_a_canary_nothing_is_mirrored() -> None:
    plan = RouterPlan(canary_weight=0, canary_present=False, mirror=True)
    route = build_router(OWNER, spec_of(gateway_raw()), plan).apply[0]
    assert not router_mirrors(route)
    ingress = build_router(OWNER, spec_of(ingress_raw()), plan).apply[0]
    assert not router_mirrors(ingress)


def test_the_shadow_phase_sets_mirror_target_on_the_stable_ingress_only() -> None:
    plan = RouterPlan(canary_weight=0, canary_present=True, mirror=True)
    stable, canary = build_router(OWNER, spec_of(ingress_raw()), plan).apply
    # ingress-nginx resolves the target itself (no search domains): the Service's full name, the request's URI.
    assert stable["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/mirror-target": "http://fraud-canary.ml.svc.cluster.local:9000$request_uri"
    }
    assert "nginx.ingress.kubernetes.io/mirror-target" not in canary["metadata"]["annotations"]
    assert router_mirrors(stable)
    assert canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "0"


def test_the_mirror_target_follows_the_cluster_domain() -> None:
    raw = ingress_raw()
    raw["traffic"]["ingress"]["clusterDomain"] = "corp.internal"
    assert mirror_target(OWNER, spec_of(raw), spec_of(raw).traffic.ingress) == (  # type: ignore[arg-type]
        "http://fraud-canary.ml.svc.corp.internal:9000$request_uri"
    )


@pytest.mark.parametrize(
    ("features", "lacks"),
    [
        ([{"name": "HTTPRouteMethodMatching"}, {"name": "HTTPRouteRequestMirror"}], False),
        ([{"name": "HTTPRouteMethodMatching"}, {"name": "HTTPRouteSchemeRedirect"}], True),
        (["HTTPRouteMethodMatching"], True),  # plain names, as classes listed them before v1.2
        ([], False),  # a class that lists nothing says nothing either way
        (None, False),
    ],
)
def test_a_gateway_class_lacks_request_mirror_only_when_it_lists_its_features(features: Any, lacks: bool) -> None:
    gateway_class = {"kind": "GatewayClass", "status": {"supportedFeatures": features}}
    assert lacks_request_mirror(gateway_class) is lacks

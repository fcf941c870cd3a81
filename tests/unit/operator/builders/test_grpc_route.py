"""The GRPCRoute beside the HTTPRoute: same weights and header, the gRPC port, its own listeners."""

from __future__ import annotations

from typing import Any

import pytest

from modelpilot.operator.builders.routing import OIP_GRPC_SERVICE, RouterPlan, build_router, router_weight
from modelpilot.operator.spec import InvalidSpecError
from modelpilot.operator.spec.serving import GRPC_PORT
from tests.unit.operator.builders.examples import HEADER_VALUE, OWNER, gateway_raw, ingress_raw, replicas_raw, spec_of

GRPC_ROUTE_KEY = ("gateway.networking.k8s.io/v1", "GRPCRoute", "fraud")
GRPC_LISTENER = {"name": "public", "namespace": "gateways", "sectionName": "grpc"}


def grpc_gateway_raw(**grpc: Any) -> dict[str, Any]:
    """The full example with a GRPCRoute on the Gateway's `grpc` listener (the HTTPRoute is on `https`)."""
    raw = gateway_raw()
    raw["traffic"]["gateway"]["grpc"] = {"parentRefs": [GRPC_LISTENER], **grpc}
    return raw


def _routes(weight: int, present: bool, header_value: str | None = HEADER_VALUE) -> tuple[dict[str, Any], ...]:
    objects = build_router(OWNER, spec_of(grpc_gateway_raw()), RouterPlan(weight, present, header_value))
    http, grpc = objects.apply
    assert (http["kind"], grpc["kind"]) == ("HTTPRoute", "GRPCRoute")
    assert GRPC_ROUTE_KEY not in objects.delete
    return http, grpc


@pytest.mark.parametrize("weight", [0, 1, 10, 25, 50, 99, 100])
def test_grpc_route_carries_the_http_routes_weight_on_the_grpc_port(weight: int) -> None:
    http, grpc = _routes(weight, present=True)
    weighted = grpc["spec"]["rules"][0]
    assert weighted["backendRefs"] == [
        {"name": "fraud-stable", "port": GRPC_PORT, "weight": 100 - weight},
        {"name": "fraud-canary", "port": GRPC_PORT, "weight": weight},
    ]
    assert weighted["matches"] == [{"method": {"type": "Exact", "service": OIP_GRPC_SERVICE}}]
    assert router_weight(grpc) == router_weight(http) == weight


@pytest.mark.parametrize("weight", [-5, 130])
def test_grpc_route_clamps_the_weight_like_the_http_route(weight: int) -> None:
    http, grpc = _routes(weight, present=True)
    assert router_weight(grpc) == router_weight(http) == min(max(weight, 0), 100)


def test_grpc_route_without_a_canary_sends_everything_to_stable() -> None:
    _, grpc = _routes(40, present=False)
    assert grpc["spec"]["rules"] == [
        {
            "matches": [{"method": {"type": "Exact", "service": OIP_GRPC_SERVICE}}],
            "backendRefs": [{"name": "fraud-stable", "port": GRPC_PORT, "weight": 100}],
        }
    ]


def test_grpc_route_has_its_own_listeners_and_hostnames_and_the_routes_owner() -> None:
    raw = grpc_gateway_raw(hostnames=["fraud-grpc.example.com"])
    _, grpc = build_router(OWNER, spec_of(raw), RouterPlan(25, True)).apply
    assert grpc["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert grpc["metadata"]["name"] == "fraud"
    assert grpc["metadata"]["ownerReferences"] == [OWNER.reference()]
    assert grpc["metadata"]["labels"]["app.kubernetes.io/component"] == "router"
    assert grpc["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", **GRPC_LISTENER}]
    assert grpc["spec"]["hostnames"] == ["fraud-grpc.example.com"]
    # Without hostnames of its own it names none (every hostname of its listener), not the HTTPRoute's.
    _, bare = _routes(25, present=True)
    assert "hostnames" not in bare["spec"]


def test_grpc_route_sends_the_canary_header_to_the_canary_by_a_lowercase_metadata_key() -> None:
    raw = grpc_gateway_raw()
    raw["traffic"]["header"]["name"] = "X-Model-Track"
    _, grpc = build_router(OWNER, spec_of(raw), RouterPlan(10, True, HEADER_VALUE)).apply
    _, header = grpc["spec"]["rules"]
    assert header["matches"] == [
        {
            "method": {"type": "Exact", "service": OIP_GRPC_SERVICE},
            "headers": [{"type": "Exact", "name": "x-model-track", "value": HEADER_VALUE}],
        }
    ]
    assert header["backendRefs"] == [{"name": "fraud-canary", "port": GRPC_PORT}]


@pytest.mark.parametrize(("present", "value"), [(False, HEADER_VALUE), (True, None)])
def test_grpc_route_has_no_header_rule_without_a_canary_or_a_header_value(present: bool, value: str | None) -> None:
    _, grpc = _routes(10, present=present, header_value=value)
    assert len(grpc["spec"]["rules"]) == 1


def test_the_shadow_phase_mirrors_http_only() -> None:
    plan = RouterPlan(0, True, mirror=True)
    http, grpc = build_router(OWNER, spec_of(grpc_gateway_raw()), plan).apply
    assert "filters" in http["spec"]["rules"][0]
    assert all("filters" not in rule for rule in grpc["spec"]["rules"])
    assert router_weight(grpc) == 0


@pytest.mark.parametrize("raw", [gateway_raw, ingress_raw, replicas_raw])
def test_every_plan_without_grpc_deletes_the_grpc_route(raw: Any) -> None:
    for present in (True, False):
        objects = build_router(OWNER, spec_of(raw()), RouterPlan(25, present))
        assert GRPC_ROUTE_KEY in objects.delete
        assert all(obj["kind"] != "GRPCRoute" for obj in objects.apply)


# --- Which listeners the spec accepts --------------------------------------------------------------


@pytest.mark.parametrize(
    ("http_refs", "http_hosts", "grpc_refs", "grpc_hosts"),
    [
        # Another listener of the same Gateway.
        (
            [{"name": "public", "sectionName": "https"}],
            ["a.example.com"],
            [{"name": "public", "sectionName": "grpc"}],
            [],
        ),
        # The same listener, hostnames of its own.
        ([{"name": "public"}], ["a.example.com"], [{"name": "public"}], ["b.example.com"]),
        # Another Gateway, or a Gateway of the same name in another namespace.
        ([{"name": "public"}], [], [{"name": "grpc"}], []),
        ([{"name": "public"}], [], [{"name": "public", "namespace": "edge"}], []),
    ],
)
def test_a_grpc_route_on_a_listener_or_hostname_of_its_own_is_accepted(
    http_refs: list[dict[str, str]], http_hosts: list[str], grpc_refs: list[dict[str, str]], grpc_hosts: list[str]
) -> None:
    raw = gateway_raw()
    raw["traffic"]["gateway"] = {
        "parentRefs": http_refs,
        "hostnames": http_hosts,
        "grpc": {"parentRefs": grpc_refs, "hostnames": grpc_hosts},
    }
    assert spec_of(raw).traffic.gateway is not None


@pytest.mark.parametrize(
    ("http_refs", "http_hosts", "grpc_refs", "grpc_hosts"),
    [
        ([{"name": "public"}], [], [{"name": "public"}], ["b.example.com"]),
        ([{"name": "public", "sectionName": "web"}], ["a.example.com"], [{"name": "public"}], ["a.example.com"]),
        ([{"name": "public"}, {"name": "other"}], ["a.example.com"], [{"name": "other", "sectionName": "x"}], []),
    ],
)
def test_a_grpc_route_sharing_a_listener_and_hostnames_with_the_http_route_is_refused(
    http_refs: list[dict[str, str]], http_hosts: list[str], grpc_refs: list[dict[str, str]], grpc_hosts: list[str]
) -> None:
    raw = gateway_raw()
    raw["traffic"]["gateway"] = {
        "parentRefs": http_refs,
        "hostnames": http_hosts,
        "grpc": {"parentRefs": grpc_refs, "hostnames": grpc_hosts},
    }
    with pytest.raises(InvalidSpecError, match="accepts only one of an HTTPRoute and a GRPCRoute"):
        spec_of(raw)

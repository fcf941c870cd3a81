"""How traffic reaches the stable and canary tracks."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from modelpilot.operator.spec.base import SecretKeyRef, SpecModel, cel_rules
from modelpilot.operator.spec.kube import (
    DNS1123_SUBDOMAIN_MAX,
    DNS1123_SUBDOMAIN_PATTERN,
    GATEWAY_PATH_MAX,
    GATEWAY_PATH_RULES,
    HTTP_PATH_RULES,
    IPV4_PATTERN,
    WILDCARD_SUBDOMAIN_PATTERN,
    http_path_problem,
)

# Gateway API's own types (HTTPRoute's parentRefs and hostnames): the route is refused with anything else.
_GATEWAY_NAMESPACE_PATTERN = "^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"
GatewayHostname = Annotated[str, Field(min_length=1, max_length=253, pattern=WILDCARD_SUBDOMAIN_PATTERN)]
_INGRESS_HOST = "traffic.ingress.host must be a DNS name (a '*.' prefix allowed), not an IP address"


def _path_rules(where: str, rules: list[tuple[str, str]]) -> dict[str, Any]:
    return cel_rules(*[(rule, f"{where} {message}") for rule, message in rules])


class ParentRef(SpecModel):
    """A Gateway (or listener of one) a route attaches to."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Gateway.")
    namespace: str | None = Field(
        default=None, max_length=63, pattern=_GATEWAY_NAMESPACE_PATTERN, description="Namespace of the Gateway."
    )
    section_name: str | None = Field(
        default=None,
        max_length=DNS1123_SUBDOMAIN_MAX,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        description="Listener name on the Gateway.",
    )


class GrpcGatewayRoute(SpecModel):
    """Gateway API GRPCRoute settings: where the Open Inference Protocol's gRPC service is routed."""

    parent_refs: list[ParentRef] = Field(
        min_length=1,
        max_length=32,
        description=(
            "Gateway listeners the GRPCRoute attaches to: listeners that accept GRPCRoutes and speak HTTP/2 "
            "(HTTPS, or HTTP with cleartext HTTP/2). Not the HTTPRoute's listener with overlapping hostnames: "
            "Gateway API accepts only one of an HTTPRoute and a GRPCRoute there."
        ),
    )
    hostnames: list[GatewayHostname] = Field(
        default_factory=list, max_length=16, description="Hostnames the route serves (a '*.' prefix allowed)."
    )


def _shares_listener(grpc: ParentRef, http: ParentRef) -> bool:
    """Whether two parentRefs can name the same listener (a ref without sectionName names all of them)."""
    return (
        grpc.name == http.name
        and (grpc.namespace or "") == (http.namespace or "")
        and (grpc.section_name is None or http.section_name is None or grpc.section_name == http.section_name)
    )


def _hostnames_overlap(a: list[str], b: list[str]) -> bool:
    """Whether two routes' hostnames can meet (no hostnames means every one; wildcards count as equal
    strings only, so `*.example.com` beside `api.example.com` is not caught here)."""
    return not a or not b or bool(set(a) & set(b))


_GRPC_LISTENER_CONFLICT = (
    "traffic.gateway.grpc.parentRefs names a listener of traffic.gateway.parentRefs with overlapping hostnames: "
    "Gateway API accepts only one of an HTTPRoute and a GRPCRoute there (give the GRPCRoute a listener of its "
    "own by sectionName, or hostnames of its own)"
)
# The same rule for the API server, in CEL (`namespace` is a CEL keyword, escaped as __namespace__).
_GRPC_LISTENER_RULE = (
    "!has(self.grpc) || self.grpc.parentRefs.all(g, self.parentRefs.all(h, g.name != h.name"
    " || (has(g.__namespace__) ? g.__namespace__ : '') != (has(h.__namespace__) ? h.__namespace__ : '')"
    " || (has(g.sectionName) && has(h.sectionName) && g.sectionName != h.sectionName)"
    " || (has(self.hostnames) && size(self.hostnames) > 0 && has(self.grpc.hostnames)"
    " && size(self.grpc.hostnames) > 0 && !self.hostnames.exists(x, x in self.grpc.hostnames))))"
)


class GatewayRoute(SpecModel):
    """Gateway API HTTPRoute settings, and optionally a GRPCRoute for the gRPC service with the same weights."""

    model_config = ConfigDict(json_schema_extra=cel_rules((_GRPC_LISTENER_RULE, _GRPC_LISTENER_CONFLICT)))

    parent_refs: list[ParentRef] = Field(min_length=1, max_length=32, description="Gateways the route attaches to.")
    hostnames: list[GatewayHostname] = Field(
        default_factory=list, max_length=16, description="Hostnames the route serves (a '*.' prefix allowed)."
    )
    path: str = Field(
        default="/",
        pattern=r"^/",
        max_length=GATEWAY_PATH_MAX,
        description="Path prefix the route matches.",
        json_schema_extra=_path_rules("traffic.gateway.path", GATEWAY_PATH_RULES),
    )
    grpc: GrpcGatewayRoute | None = Field(
        default=None,
        description=(
            "A GRPCRoute that splits the Open Inference Protocol's gRPC calls (port 8081 of the tracks' "
            "Services) with the HTTPRoute's weights and header; unset: no GRPCRoute, gRPC is reached only "
            "inside the cluster."
        ),
    )

    @field_validator("path")
    @classmethod
    def _route_accepts_path(cls, value: str) -> str:
        problem = http_path_problem(value, gateway=True)
        if problem:
            raise ValueError(f"traffic.gateway.path {problem}")
        return value

    @model_validator(mode="after")
    def _grpc_listener_is_its_own(self) -> GatewayRoute:
        if self.grpc is not None and _hostnames_overlap(self.hostnames, self.grpc.hostnames):
            for ref in self.grpc.parent_refs:
                if any(_shares_listener(ref, http) for http in self.parent_refs):
                    raise ValueError(_GRPC_LISTENER_CONFLICT)
        return self


class IngressTLS(SpecModel):
    """TLS for the Ingress."""

    secret_name: str = Field(
        min_length=1,
        max_length=DNS1123_SUBDOMAIN_MAX,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        description="Secret holding the certificate.",
    )


class IngressRoute(SpecModel):
    """ingress-nginx settings: a stable Ingress plus a canary Ingress with canary annotations."""

    class_name: str = Field(
        default="nginx",
        min_length=1,
        max_length=DNS1123_SUBDOMAIN_MAX,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        description="IngressClass name.",
    )
    host: str = Field(
        min_length=1,
        max_length=253,
        pattern=WILDCARD_SUBDOMAIN_PATTERN,
        description="Host the Ingress serves: a DNS name, '*.' prefix allowed.",
        json_schema_extra=cel_rules((f"!self.matches('{IPV4_PATTERN}')", _INGRESS_HOST)),
    )
    path: str = Field(
        default="/",
        pattern=r"^/",
        description="Path prefix the Ingress matches.",
        json_schema_extra=_path_rules("traffic.ingress.path", HTTP_PATH_RULES),
    )
    tls: IngressTLS | None = Field(default=None, description="TLS settings; unset means plain HTTP.")
    cluster_domain: str = Field(
        default="cluster.local",
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description=(
            "The cluster's DNS domain: the shadow phase's mirror-target names the canary Service by its full "
            "name, which ingress-nginx resolves without search domains."
        ),
    )

    @field_validator("host")
    @classmethod
    def _host_is_a_name(cls, value: str) -> str:
        if re.match(IPV4_PATTERN, value):
            raise ValueError(_INGRESS_HOST)
        return value

    @field_validator("path")
    @classmethod
    def _ingress_accepts_path(cls, value: str) -> str:
        problem = http_path_problem(value, gateway=False)
        if problem:
            raise ValueError(f"traffic.ingress.path {problem}")
        return value


class HeaderValueSource(SpecModel):
    """Where the canary header's value is read."""

    secret_key_ref: SecretKeyRef = Field(description="A key of a Secret in the ModelDeployment's namespace.")


# Fewest characters of the header's value: a word a client could guess would let anyone choose the canary.
HEADER_VALUE_MIN_LENGTH = 16
HEADER_VALUE_MAX_LENGTH = 4096  # Gateway API's bound on a header match value


class HeaderOverride(SpecModel):
    """A request header that always reaches the canary, for testing it before it gets weight.

    Its value is a secret: it is read from a Secret (never written in the spec) and must be at least
    16 characters, so only clients given it can choose the canary. The router carries the value (the
    HTTPRoute's header match, the canary Ingress's annotations), so whoever can read those objects can too.
    """

    name: str = Field(
        pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$",
        min_length=1,
        max_length=256,
        description="Header name, e.g. x-model-track.",
    )
    value_from: HeaderValueSource = Field(
        description=(
            f"The Secret key holding the header's value: {HEADER_VALUE_MIN_LENGTH} to {HEADER_VALUE_MAX_LENGTH} "
            "printable ASCII characters (surrounding whitespace is ignored), e.g. from openssl rand -hex 16."
        )
    )


_HEADER_NEEDS_ROUTER = "traffic.header needs router gateway or ingress: the replica router cannot route by header"


class ReplicaRouter(SpecModel):
    """How the replica router (one Service over both tracks) carries a weight with whole pods.

    Each Ready pod gets an equal share, so a weight is a ratio of pods: 2 replicas can only give the
    canary 0, 50 or 100 %. Replicas are added to the two tracks, up to `maxExtraReplicas`, until the
    canary's share of pods is within `tolerance` of the step's weight; `status.canary.effectiveWeight`
    shows the share reached and `status.canary.weightMessage` why it is further off when it is.
    """

    tolerance: int = Field(
        default=5,
        ge=0,
        le=50,
        description="How far (percentage points) the canary's share of pods may be from a step's weight.",
    )
    max_extra_replicas: int = Field(
        default=4,
        ge=0,
        le=100,
        description=(
            "Most pods the two tracks may have together beyond serving.replicas (or beyond each autoscaling "
            "bound) during a rollout, to bring the canary's share within tolerance."
        ),
    )


class Traffic(SpecModel):
    """How traffic is split between the stable and the canary track."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            ("self.router != 'gateway' || has(self.gateway)", "traffic.router gateway needs traffic.gateway"),
            ("self.router != 'ingress' || has(self.ingress)", "traffic.router ingress needs traffic.ingress"),
            ("!has(self.header) || self.router != 'replicas'", _HEADER_NEEDS_ROUTER),
        )
    )

    router: Literal["gateway", "ingress", "replicas"] = Field(
        default="replicas",
        description=(
            "gateway: Gateway API HTTPRoute weights; ingress: ingress-nginx canary annotations; "
            "replicas: one Service over both tracks, weight by replica ratio."
        ),
    )
    gateway: GatewayRoute | None = Field(default=None, description="HTTPRoute settings (router gateway).")
    ingress: IngressRoute | None = Field(default=None, description="Ingress settings (router ingress).")
    replicas: ReplicaRouter = Field(
        default_factory=ReplicaRouter, description="Replica ratio settings (router replicas)."
    )
    header: HeaderOverride | None = Field(
        default=None,
        description=(
            "A header that always routes to the canary (router gateway or ingress); unset: no header does, "
            "and clients cannot choose a track."
        ),
    )

    @model_validator(mode="after")
    def _router_is_configured(self) -> Traffic:
        if self.router == "gateway" and self.gateway is None:
            raise ValueError("traffic.router gateway needs traffic.gateway")
        if self.router == "ingress" and self.ingress is None:
            raise ValueError("traffic.router ingress needs traffic.ingress")
        if self.router == "replicas" and self.header is not None:
            raise ValueError(_HEADER_NEEDS_ROUTER)
        return self

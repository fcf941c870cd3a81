"""The router that splits traffic between the stable and canary tracks.

Three modes, one per `spec.traffic.router`:
- gateway: a Gateway API HTTPRoute with weighted backendRefs, plus (with `spec.traffic.header`) a header rule
  that always reaches the canary; in the shadow phase its weighted rule carries a `RequestMirror` filter to
  the canary's Service (Gateway API "Extended" support: the Gateway's implementation must list the
  `HTTPRouteRequestMirror` feature). With `spec.traffic.gateway.grpc`, a GRPCRoute of the same name splits
  the Open Inference Protocol's gRPC service (the Services' `grpc` port) with the same weights and header.
  It is opt-in, with parentRefs of its own: Gateway API accepts only one of an HTTPRoute and a GRPCRoute on
  a listener whose hostnames they share, and a GRPCRoute needs a listener that speaks HTTP/2 and admits it.
  It carries no mirror: the shadow phase judges the candidate on mirrored HTTP requests, and at weight 0
  every gRPC call goes to stable;
- ingress: an ingress-nginx Ingress for stable and a second, canary-annotated Ingress for the canary (with
  `spec.traffic.header`, annotated to send requests that carry the header to the canary); in the shadow
  phase the stable Ingress carries `mirror-target` (ingress-nginx ignores it on a canary Ingress);
- replicas: one Service over the tracks' pods; the weight is the ratio of pods (see `traffic.split_replicas`).
Each plan also says which objects of the other modes must not exist, so switching modes cleans up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpilot.operator.builders.common import ObjectKey, Owner, Track, labels, metadata, selector, track_name
from modelpilot.operator.builders.serving import PORT_NAME
from modelpilot.operator.spec import GatewayRoute, GrpcGatewayRoute, IngressRoute, ModelDeploymentSpec, ParentRef
from modelpilot.operator.spec.serving import GRPC_PORT

ROUTER_COMPONENT = "router"
GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
GATEWAY_GROUP = "gateway.networking.k8s.io"
NGINX = "nginx.ingress.kubernetes.io/"
CANARY_ANNOTATION = NGINX + "canary"
CANARY_WEIGHT_ANNOTATION = NGINX + "canary-weight"
CANARY_HEADER_ANNOTATION = NGINX + "canary-by-header"
CANARY_HEADER_VALUE_ANNOTATION = NGINX + "canary-by-header-value"
MIRROR_TARGET_ANNOTATION = NGINX + "mirror-target"
MIRROR_FILTER = "RequestMirror"
# The Gateway API conformance feature of the RequestMirror filter, as a GatewayClass lists it in
# `status.supportedFeatures` ({name: …} entries since v1.2; plain names before).
MIRROR_FEATURE = "HTTPRouteRequestMirror"
# The gRPC service the GRPCRoute routes: the Open Inference Protocol's (inference/.../grpc_gen/oip.proto).
OIP_GRPC_SERVICE = "inference.GRPCInferenceService"


@dataclass(frozen=True)
class RouterPlan:
    """The split the router should carry."""

    canary_weight: int  # 0..100
    canary_present: bool  # the canary Service exists (the header route only then)
    # The value of spec.traffic.header, read from its Secret; None: no request is routed by a header
    # (no header configured, or its Secret cannot be read).
    canary_header_value: str | None = None
    # Replica router: the tracks whose pods the shared Service selects (the weight is their ratio).
    shared_tracks: tuple[Track, ...] = ("stable", "canary")
    # The shadow phase: every request is also sent to the canary, whose answers are dropped (gateway, ingress).
    mirror: bool = False


@dataclass(frozen=True)
class RouterObjects:
    """Objects to apply, and (apiVersion, kind, name) of those that must not exist under this plan."""

    apply: list[dict[str, Any]]
    delete: list[ObjectKey]


def canary_ingress_name(owner_name: str) -> str:
    """Name of the second, canary-annotated Ingress."""
    return f"{owner_name}-canary"


def _route_key(owner_name: str) -> ObjectKey:
    return (GATEWAY_API_VERSION, "HTTPRoute", owner_name)


def _grpc_route_key(owner_name: str) -> ObjectKey:
    return (GATEWAY_API_VERSION, "GRPCRoute", owner_name)


def _ingress_key(owner_name: str) -> ObjectKey:
    return ("networking.k8s.io/v1", "Ingress", owner_name)


def _canary_ingress_key(owner_name: str) -> ObjectKey:
    return ("networking.k8s.io/v1", "Ingress", canary_ingress_name(owner_name))


def _shared_service_key(owner_name: str) -> ObjectKey:
    return ("v1", "Service", owner_name)


def build_router(owner: Owner, spec: ModelDeploymentSpec, plan: RouterPlan) -> RouterObjects:
    """The router objects of `spec.traffic.router` for the plan's weight."""
    # Without a canary there is nothing to send traffic to: all of it goes to stable, whatever the weight.
    weight = min(max(plan.canary_weight, 0), 100) if plan.canary_present else 0
    router = spec.traffic.router
    name = owner.name
    if router == "gateway":
        gateway = spec.traffic.gateway
        assert gateway is not None  # the spec's validation requires it
        apply = [_http_route(owner, spec, gateway, weight, plan)]
        delete = [_ingress_key(name), _canary_ingress_key(name), _shared_service_key(name)]
        if gateway.grpc is not None:
            apply.append(_grpc_route(owner, spec, gateway.grpc, weight, plan))
        else:
            delete.append(_grpc_route_key(name))
        return RouterObjects(apply=apply, delete=delete)
    if router == "ingress":
        assert spec.traffic.ingress is not None  # the spec's validation requires it
        mirror = plan.mirror and plan.canary_present
        apply = [_stable_ingress(owner, spec, spec.traffic.ingress, mirror=mirror)]
        delete = [_route_key(name), _grpc_route_key(name), _shared_service_key(name)]
        if plan.canary_present:
            apply.append(_canary_ingress(owner, spec, spec.traffic.ingress, weight, _header(spec, plan)))
        else:
            delete.append(_canary_ingress_key(name))
        return RouterObjects(apply=apply, delete=delete)
    return RouterObjects(
        apply=[_shared_service(owner, spec, plan.shared_tracks)],
        delete=[_route_key(name), _grpc_route_key(name), _ingress_key(name), _canary_ingress_key(name)],
    )


def lacks_request_mirror(gateway_class: dict[str, Any]) -> bool:
    """Whether a GatewayClass lists the features its implementation supports and RequestMirror is not one
    (a class that lists none says nothing either way)."""
    listed = (gateway_class.get("status") or {}).get("supportedFeatures") or []
    names = {item.get("name") if isinstance(item, dict) else item for item in listed}
    return bool(names) and MIRROR_FEATURE not in names


def router_mirrors(obj: dict[str, Any]) -> bool:
    """Whether an HTTPRoute or Ingress mirrors requests (a RequestMirror filter, a mirror-target annotation)."""
    if obj.get("kind") == "HTTPRoute":
        rules = (obj.get("spec") or {}).get("rules") or []
        return any(f.get("type") == MIRROR_FILTER for rule in rules for f in rule.get("filters") or [])
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return MIRROR_TARGET_ANNOTATION in annotations


def router_weight(obj: dict[str, Any]) -> int | None:
    """The canary weight (percent) an HTTPRoute, GRPCRoute or canary Ingress carries; None for any other object."""
    kind = obj.get("kind")
    if kind in {"HTTPRoute", "GRPCRoute"}:
        canary = track_name(obj["metadata"]["name"], "canary")
        rules = (obj.get("spec") or {}).get("rules") or []
        if not rules:
            return 0
        refs = rules[0].get("backendRefs") or []
        total = sum(int(ref.get("weight", 1)) for ref in refs)
        to_canary = sum(int(ref.get("weight", 1)) for ref in refs if ref.get("name") == canary)
        return round(100 * to_canary / total) if total else 0
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if kind == "Ingress" and annotations.get(CANARY_ANNOTATION) == "true":
        return int(annotations.get(CANARY_WEIGHT_ANNOTATION, "0"))
    return None


def _router_labels(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, str]:
    return labels(owner, spec, component=ROUTER_COMPONENT)


def _parent_ref(ref: ParentRef) -> dict[str, str]:
    result = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": ref.name}
    if ref.namespace:
        result["namespace"] = ref.namespace
    if ref.section_name:
        result["sectionName"] = ref.section_name
    return result


def _header(spec: ModelDeploymentSpec, plan: RouterPlan) -> tuple[str, str] | None:
    """(name, value) of the canary header when the spec configures one and its value was read."""
    if spec.traffic.header is None or plan.canary_header_value is None:
        return None
    return spec.traffic.header.name, plan.canary_header_value


def _backend(
    owner: Owner, spec: ModelDeploymentSpec, track: Track, weight: int | None = None, *, port: int | None = None
) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": track_name(owner.name, track), "port": port or spec.serving.port}
    if weight is not None:
        ref["weight"] = weight
    return ref


def _http_route(
    owner: Owner, spec: ModelDeploymentSpec, gateway: GatewayRoute, weight: int, plan: RouterPlan
) -> dict[str, Any]:
    canary_present = plan.canary_present

    def path_match() -> dict[str, Any]:
        return {"path": {"type": "PathPrefix", "value": gateway.path}}

    # Weights are shares of their sum (not percentages); stable + canary always sum to 100 here.
    backends = [_backend(owner, spec, "stable", 100 - weight)]
    if canary_present:
        backends.append(_backend(owner, spec, "canary", weight))
    rules: list[dict[str, Any]] = [{"matches": [path_match()], "backendRefs": backends}]
    if canary_present and plan.mirror:
        mirror = {"backendRef": {"name": track_name(owner.name, "canary"), "port": spec.serving.port}}
        rules[0]["filters"] = [{"type": MIRROR_FILTER, "requestMirror": mirror}]
    header = _header(spec, plan)
    if canary_present and header is not None:
        name, value = header
        # A header match is more specific than the plain path match, so this rule wins for tagged requests.
        header_match = {**path_match(), "headers": [{"type": "Exact", "name": name, "value": value}]}
        rules.append({"matches": [header_match], "backendRefs": [_backend(owner, spec, "canary")]})
    return _route("HTTPRoute", owner, spec, gateway, rules)


def _grpc_route(
    owner: Owner, spec: ModelDeploymentSpec, grpc: GrpcGatewayRoute, weight: int, plan: RouterPlan
) -> dict[str, Any]:
    # The same split as the HTTPRoute's, onto the Services' gRPC port, for the OIP service's methods only.
    method = {"type": "Exact", "service": OIP_GRPC_SERVICE}
    backends = [_backend(owner, spec, "stable", 100 - weight, port=GRPC_PORT)]
    if plan.canary_present:
        backends.append(_backend(owner, spec, "canary", weight, port=GRPC_PORT))
    rules: list[dict[str, Any]] = [{"matches": [{"method": method}], "backendRefs": backends}]
    header = _header(spec, plan)
    if plan.canary_present and header is not None:
        name, value = header
        # gRPC metadata keys are lowercase on the wire; Gateway API matches header names case-insensitively.
        header_match = {"method": method, "headers": [{"type": "Exact", "name": name.lower(), "value": value}]}
        rules.append({"matches": [header_match], "backendRefs": [_backend(owner, spec, "canary", port=GRPC_PORT)]})
    return _route("GRPCRoute", owner, spec, grpc, rules)


def _route(
    kind: str,
    owner: Owner,
    spec: ModelDeploymentSpec,
    attachment: GatewayRoute | GrpcGatewayRoute,
    rules: list[dict[str, Any]],
) -> dict[str, Any]:
    """A Gateway API route of `kind` on the attachment's parents and hostnames."""
    route_spec: dict[str, Any] = {"parentRefs": [_parent_ref(ref) for ref in attachment.parent_refs]}
    if attachment.hostnames:
        route_spec["hostnames"] = list(attachment.hostnames)
    route_spec["rules"] = rules
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": kind,
        "metadata": metadata(owner, owner.name, _router_labels(owner, spec)),
        "spec": route_spec,
    }


def _ingress_spec(spec: ModelDeploymentSpec, ingress: IngressRoute, service: str, *, tls: bool) -> dict[str, Any]:
    path = {
        "path": ingress.path,
        "pathType": "Prefix",
        "backend": {"service": {"name": service, "port": {"number": spec.serving.port}}},
    }
    result: dict[str, Any] = {
        "ingressClassName": ingress.class_name,
        "rules": [{"host": ingress.host, "http": {"paths": [path]}}],
    }
    if tls and ingress.tls is not None:
        result["tls"] = [{"hosts": [ingress.host], "secretName": ingress.tls.secret_name}]
    return result


def mirror_target(owner: Owner, spec: ModelDeploymentSpec, ingress: IngressRoute) -> str:
    """The URL ingress-nginx mirrors each request to: the canary's Service by its full DNS name (nginx resolves
    it itself, without the pod's search domains), with the request's own path and query."""
    host = f"{track_name(owner.name, 'canary')}.{owner.namespace}.svc.{ingress.cluster_domain}"
    return f"http://{host}:{spec.serving.port}$request_uri"


def _stable_ingress(owner: Owner, spec: ModelDeploymentSpec, ingress: IngressRoute, *, mirror: bool) -> dict[str, Any]:
    annotations = {MIRROR_TARGET_ANNOTATION: mirror_target(owner, spec, ingress)} if mirror else None
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(owner, owner.name, _router_labels(owner, spec), annotations),
        "spec": _ingress_spec(spec, ingress, track_name(owner.name, "stable"), tls=True),
    }


def _canary_ingress(
    owner: Owner, spec: ModelDeploymentSpec, ingress: IngressRoute, weight: int, header: tuple[str, str] | None
) -> dict[str, Any]:
    # ingress-nginx allows one canary Ingress per host and path; it takes the host's TLS from the main
    # Ingress and evaluates the header before the weight, so the header always reaches the canary.
    annotations = {CANARY_ANNOTATION: "true", CANARY_WEIGHT_ANNOTATION: str(weight)}
    if header is not None:
        # Only the exact value: with canary-by-header alone, "always" from any client would steer traffic.
        annotations[CANARY_HEADER_ANNOTATION], annotations[CANARY_HEADER_VALUE_ANNOTATION] = header
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(owner, canary_ingress_name(owner.name), _router_labels(owner, spec), annotations),
        "spec": _ingress_spec(spec, ingress, track_name(owner.name, "canary"), tls=False),
    }


def _shared_service(owner: Owner, spec: ModelDeploymentSpec, tracks: tuple[Track, ...]) -> dict[str, Any]:
    # Selects the serving pods of both tracks (or of one); each pod gets an equal share, so the ratio of
    # pods is the weight. Unlike a Deployment's, a Service's selector may change, so it follows the weight.
    track: Track | None = tracks[0] if len(set(tracks)) == 1 else None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, owner.name, _router_labels(owner, spec)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(owner.name, track),
            "ports": [{"name": PORT_NAME, "port": spec.serving.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }

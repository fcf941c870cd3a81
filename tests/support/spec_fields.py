"""Every leaf of the ModelDeployment spec, classified: copied into which derived objects (by which builder), with
values those objects' APIs refuse, or not copied and why. The sweep tests (unit and cluster) read this table; a
meta-test fails when the CRD gains a leaf the table does not classify, so the sweep stays complete.

A refused value is refused either by the CRD when the ModelDeployment is applied (`by="crd"`: a schema bound or
CEL rule mirrors Kubernetes' own rule), or — when no rule can say it exactly — by the API server for the derived
object (`by="object"`), which the operator shows as an InvalidSpec condition and one Event. `accepted` values are
the edges the CRD lets through: every object derived from them must be accepted too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.unit.operator.builders.examples import gateway_raw, ingress_raw

Spec = dict[str, Any]
Base = Literal["gateway", "ingress", "keda", "kubeflow"]

SERVING = "builders.serving.build_track"
ROUTING = "builders.routing.build_router"
AUTOSCALER = "builders.autoscaling.build_autoscaler"
TRAINING = "builders.training.build_training_job / build_training_cronjob"
TRAINJOB = "builders.trainjob.build_trainjob"
POD_KINDS = ("Deployment",)
TRAINING_KINDS = ("Job", "CronJob", "TrainJob")


@dataclass(frozen=True)
class Refusal:
    """Values set at dotted paths of a base spec, refused with `reason` (a phrase of the API server's answer).

    `by="object"` names the derived object's kind that the API server refuses."""

    changes: dict[str, Any]
    reason: str
    by: Literal["crd", "object"] = "crd"
    kind: str = ""
    base: Base = "gateway"


@dataclass(frozen=True)
class Accepted:
    """Values at the edge of what the CRD accepts: every derived object must be accepted as well."""

    changes: dict[str, Any]
    base: Base = "gateway"


@dataclass(frozen=True)
class Copied:
    """A leaf whose value lands in derived objects."""

    into: tuple[str, ...]
    builder: str
    refused: tuple[Refusal, ...] = ()
    accepted: tuple[Accepted, ...] = ()


@dataclass(frozen=True)
class NotCopied:
    """A leaf the operator reads itself: no derived object carries it."""

    why: str
    accepted: tuple[Accepted, ...] = field(default=())


Classification = Copied | NotCopied


def base_spec(base: Base) -> Spec:
    """The spec a case starts from: every section the base's builders read is set."""
    if base == "ingress":
        raw = ingress_raw()
        raw["traffic"]["ingress"]["clusterDomain"] = "cluster.local"
        raw["rollout"] = {
            "steps": [10, 100],
            "analysis": {"prometheus": "http://prometheus:9090"},
            "shadow": {"minComparisons": 10},
        }
        return raw
    raw = gateway_raw()
    raw["rollout"]["shadow"] = {"minComparisons": 10}
    raw["training"]["workers"] = 2
    raw["training"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    raw["serving"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    raw["serving"]["podAnnotations"] = {"sidecar.istio.io/inject": "false"}
    raw["serving"]["serviceAccount"] = {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}}
    if base == "keda":
        del raw["serving"]["autoscaling"]["metric"]
        raw["serving"]["autoscaling"]["requestRate"] = {"targetPerReplica": 20, "window": "2m"}
    if base == "kubeflow":
        raw["training"] = {
            "image": "ghcr.io/modelpilot/train:0.1.0",
            "engine": "kubeflow",
            "workers": 2,
            "resources": {"limits": {"nvidia.com/gpu": 1}},
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
        }
    return raw


def apply_changes(base: Base, changes: dict[str, Any]) -> Spec:
    """The base spec with each dotted path set to its value (created along the way; None removes it)."""
    spec = base_spec(base)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = copy.deepcopy(value)
    return spec


def _serving(key: str, value: Any) -> dict[str, Any]:
    return {f"serving.{key}": value}


def _training(key: str, value: Any) -> dict[str, Any]:
    return {f"training.{key}": value}


_LONG_KEY = "a" * 60 + ".example.com/" + "k" * 63
_LONG_VALUE = "v" + "-" * 61 + "v"
_SUBDOMAIN_253 = ".".join(["a" * 63] * 3 + ["b" * 61])
_INGRESS = {"className": "nginx", "host": "fraud.example.com", "tls": {"secretName": "fraud-tls"}}


def _scheduling(section: str, kinds: tuple[str, ...], builder: str) -> dict[str, Classification]:
    """nodeSelector, tolerations, affinity and podAnnotations of serving or training (the same Scheduling model)."""

    def at(key: str, value: Any) -> dict[str, Any]:
        return {f"{section}.{key}": value}

    exists = {"operator": "Exists"}
    return {
        f"{section}.nodeSelector.*": Copied(
            kinds,
            builder,
            refused=(
                Refusal(at("nodeSelector", {"bad key!": "x"}), "qualified name"),
                Refusal(at("nodeSelector", {"disk": "fast ssd"}), "should match"),
                Refusal(at("nodeSelector", {"disk": "x" * 64}), "may not be more than 63"),
            ),
            accepted=(Accepted(at("nodeSelector", {_LONG_KEY: _LONG_VALUE, "empty": ""})),),
        ),
        f"{section}.tolerations[].key": Copied(
            kinds,
            builder,
            refused=(Refusal(at("tolerations", [{"key": "bad key!", **exists}]), "qualified name"),),
            accepted=(Accepted(at("tolerations", [{"key": _LONG_KEY, **exists}])),),
        ),
        f"{section}.tolerations[].operator": Copied(
            kinds,
            builder,
            refused=(Refusal(at("tolerations", [{"operator": "Equal", "value": "x"}]), "needs operator Exists"),),
            accepted=(Accepted(at("tolerations", [exists])),),
        ),
        f"{section}.tolerations[].value": Copied(
            kinds,
            builder,
            refused=(
                Refusal(at("tolerations", [{"key": "k", "operator": "Equal", "value": "a b"}]), "label value"),
                Refusal(at("tolerations", [{"key": "k", "value": "x" * 64}]), "may not be more than 63"),
                Refusal(at("tolerations", [{"key": "k", "operator": "Exists", "value": "x"}]), "takes no value"),
            ),
            accepted=(Accepted(at("tolerations", [{"key": "k", "value": _LONG_VALUE}])),),
        ),
        f"{section}.tolerations[].effect": Copied(
            kinds,
            builder,
            accepted=(Accepted(at("tolerations", [{"key": "k", **exists, "effect": "PreferNoSchedule"}])),),
        ),
        f"{section}.tolerations[].tolerationSeconds": Copied(
            kinds,
            builder,
            refused=(Refusal(at("tolerations", [{"key": "k", **exists, "tolerationSeconds": 5}]), "NoExecute"),),
            accepted=(
                Accepted(at("tolerations", [{"key": "k", **exists, "effect": "NoExecute", "tolerationSeconds": -5}])),
            ),
        ),
        f"{section}.affinity": Copied(
            kinds,
            builder,
            refused=(
                Refusal(
                    at("affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}),
                    "nodeSelectorTerms",
                    by="object",
                    kind=kinds[0],
                ),
            ),
        ),
        f"{section}.podAnnotations.*": Copied(
            kinds,
            builder,
            refused=(
                Refusal(at("podAnnotations", {"a/b/c": "x"}), "qualified name"),
                # The 256 KiB bound is on all of an object's annotations together: left to the InvalidSpec path.
                Refusal(
                    at("podAnnotations", {"big": "x" * 262_144}),
                    "may not be more than 262144 bytes",
                    by="object",
                    kind=kinds[0],
                ),
            ),
            accepted=(Accepted(at("podAnnotations", {_LONG_KEY: "any value: spaces, / and ünïcode"})),),
        ),
    }


def _container(section: str, kinds: tuple[str, ...], builder: str) -> dict[str, Classification]:
    """image, resources and env of serving or training."""

    def at(key: str, value: Any) -> dict[str, Any]:
        return {f"{section}.{key}": value}

    return {
        f"{section}.image": Copied(
            kinds,
            builder,
            refused=(Refusal(at("image", " ghcr.io/modelpilot/x:1"), "whitespace"),),
            accepted=(Accepted(at("image", "registry.example.com:5000/a/b c@sha256:" + "0" * 64)),),
        ),
        f"{section}.resources.requests.*": Copied(
            kinds,
            builder,
            refused=(
                Refusal(at("resources", {"requests": {"cpu": "-1"}}), "should match"),
                Refusal(at("resources", {"requests": {"cpu": -1}}), "should be greater than or equal to 0"),
                Refusal(at("resources", {"requests": {"memory": "lots"}}), "should match"),
                Refusal(at("resources", {"limits": {"nvidia.com/gpu": "0.5"}}), "whole numbers"),
                Refusal(at("resources", {"requests": {"memory": "1" * 64 + "m"}}), "may not be more than 64"),
                # Resource names, and an extended resource's request equal to its limit: the InvalidSpec path.
                Refusal(at("resources", {"requests": {"foo": "1"}}), "standard resource", by="object", kind=kinds[0]),
                Refusal(
                    at("resources", {"requests": {"example.com/fpga": 1}}),
                    "Limit must be set",
                    by="object",
                    kind=kinds[0],
                ),
            ),
            accepted=(Accepted(at("resources", {"requests": {"cpu": ".5", "memory": "1e3", "ephemeral-storage": 0}})),),
        ),
        f"{section}.resources.limits.*": Copied(
            kinds,
            builder,
            refused=(
                Refusal(at("resources", {"limits": {"memory": "2 Gi"}}), "should match"),
                Refusal(at("resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}), "must not exceed"),
                Refusal(
                    at("resources", {"requests": {"example.com/fpga": 1}, "limits": {"example.com/fpga": 2}}),
                    "must be equal to",
                    by="object",
                    kind=kinds[0],
                ),
            ),
            accepted=(
                Accepted(at("resources", {"limits": {"cpu": "+1500m", "memory": "2Gi", "nvidia.com/gpu": "2000m"}})),
                Accepted(at("resources", {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m"}})),
            ),
        ),
        f"{section}.env[].name": Copied(
            kinds,
            builder,
            refused=(
                Refusal(at("env", [{"name": "A=B", "value": "x"}]), "should match"),
                Refusal(at("env", [{"name": "naïve", "value": "x"}]), "should match"),
            ),
            accepted=(Accepted(at("env", [{"name": "1 relaxed.name-x~", "value": "x"}])),),
        ),
        f"{section}.env[].value": Copied(
            kinds, builder, accepted=(Accepted(at("env", [{"name": "X", "value": "multi\nline ü $(NOPE)"}])),)
        ),
    }


FIELDS: dict[str, Classification] = {
    "model.name": Copied(
        ("Deployment", "Service", "HorizontalPodAutoscaler", "ScaledObject", *TRAINING_KINDS),
        f"{SERVING} (labels through label_value, env), {AUTOSCALER} (PromQL, escaped), {TRAINING}",
        accepted=(Accepted({"model.name": 'Fraud Detector/v2 "quoted" ' + "x" * 226}, base="keda"),),
    ),
    "model.alias": Copied(
        TRAINING_KINDS, f"{TRAINING} (env)", accepted=(Accepted({"model.alias": "Champion_" + "x" * 246}),)
    ),
    "model.stage": Copied(TRAINING_KINDS, f"{TRAINING} (env)", accepted=(Accepted({}, base="ingress"),)),
    "model.candidateAlias": Copied(
        TRAINING_KINDS, f"{TRAINING} (env)", accepted=(Accepted({"model.candidateAlias": "x-" * 127 + "y"}),)
    ),
    "model.candidateStage": Copied(TRAINING_KINDS, f"{TRAINING} (env)", accepted=(Accepted({}, base="ingress"),)),
    "registry.trackingUri": Copied(
        ("Deployment", "NetworkPolicy", *TRAINING_KINDS),
        f"{SERVING} (env; its port opens the NetworkPolicy's egress), {TRAINING} (env)",
        refused=(
            Refusal({"registry.trackingUri": "http://mlflow:99999"}, "port"),
            Refusal({"registry.trackingUri": "http://mlflow:http"}, "port"),
        ),
        accepted=(Accepted({"registry.trackingUri": "https://user:pw@[fd00::1]:65535/mlflow?x=1"}),),
    ),
    "registry.credentialsSecret": Copied(
        ("Deployment", *TRAINING_KINDS),
        f"{SERVING} (envFrom), {TRAINING} (envFrom), {TRAINJOB} (secretKeyRef)",
        refused=(Refusal({"registry.credentialsSecret": "MLflow_Auth"}, "should match"),),
        accepted=(Accepted({"registry.credentialsSecret": _SUBDOMAIN_253}, base="kubeflow"),),
    ),
    "registry.pollInterval": NotCopied("the operator's registry poll timer"),
    **_scheduling("serving", POD_KINDS, SERVING),
    **_container("serving", POD_KINDS, SERVING),
    "serving.replicas": Copied(
        ("Deployment",),
        SERVING,
        accepted=(Accepted({"serving.replicas": 1000, "serving.autoscaling": None}), Accepted(_serving("replicas", 0))),
    ),
    "serving.port": Copied(
        ("Deployment", "Service", "NetworkPolicy", "HTTPRoute", "Ingress"),
        f"{SERVING}, {ROUTING}",
        refused=(
            Refusal(_serving("port", 8081), "must not be 8081"),
            Refusal(_serving("port", 9090), "must not be 9090"),
            Refusal(_serving("port", 65536), "should be less than or equal to 65535"),
        ),
        accepted=(Accepted(_serving("port", 65535)), Accepted(_serving("port", 1), base="ingress")),
    ),
    "serving.autoscaling.minReplicas": Copied(
        ("HorizontalPodAutoscaler", "ScaledObject"),
        AUTOSCALER,
        accepted=(Accepted({"serving.autoscaling.minReplicas": 1000, "serving.autoscaling.maxReplicas": 1000}),),
    ),
    "serving.autoscaling.maxReplicas": Copied(
        ("HorizontalPodAutoscaler", "ScaledObject"),
        AUTOSCALER,
        accepted=(Accepted({"serving.autoscaling.minReplicas": 1, "serving.autoscaling.maxReplicas": 1}, "keda"),),
    ),
    "serving.autoscaling.targetCPUUtilization": Copied(
        ("HorizontalPodAutoscaler", "ScaledObject"),
        AUTOSCALER,
        accepted=(Accepted({"serving.autoscaling.targetCPUUtilization": 1}, base="keda"),),
    ),
    "serving.autoscaling.metric.name": Copied(
        ("HorizontalPodAutoscaler",),
        AUTOSCALER,
        refused=(
            Refusal({"serving.autoscaling.metric.name": "requests/second"}, "must not contain '/'"),
            Refusal({"serving.autoscaling.metric.name": ".."}, "must not be '.'"),
        ),
        accepted=(Accepted({"serving.autoscaling.metric.name": 'requests:per second{x="1"}'}),),
    ),
    "serving.autoscaling.metric.targetAverageValue": Copied(
        ("HorizontalPodAutoscaler",),
        AUTOSCALER,
        refused=(
            Refusal({"serving.autoscaling.metric.targetAverageValue": 0}, "greater than 0"),
            Refusal({"serving.autoscaling.metric.targetAverageValue": "fifty"}, "greater than 0"),
        ),
        accepted=(Accepted({"serving.autoscaling.metric.targetAverageValue": "1m"}),),
    ),
    "serving.autoscaling.requestRate.targetPerReplica": Copied(
        ("ScaledObject",),
        AUTOSCALER,
        accepted=(Accepted({"serving.autoscaling.requestRate.targetPerReplica": 0.001}, base="keda"),),
    ),
    "serving.autoscaling.requestRate.window": Copied(
        ("ScaledObject",), AUTOSCALER, accepted=(Accepted({"serving.autoscaling.requestRate.window": "1h30m"}, "keda"),)
    ),
    "serving.autoscaling.requestRate.prometheus": Copied(
        ("ScaledObject",),
        AUTOSCALER,
        accepted=(Accepted({"serving.autoscaling.requestRate.prometheus": "https://p:1/" + "x" * 2000}, "keda"),),
    ),
    "serving.autoscaling.scaleDownStabilization": Copied(
        ("HorizontalPodAutoscaler", "ScaledObject"),
        AUTOSCALER,
        refused=(Refusal({"serving.autoscaling.scaleDownStabilization": "61m"}, "must be at most 1h"),),
        accepted=(
            Accepted({"serving.autoscaling.scaleDownStabilization": "1h"}),
            Accepted({"serving.autoscaling.scaleDownStabilization": "0s"}, "keda"),
        ),
    ),
    "serving.auth.apiKeys.name": Copied(
        ("Deployment",),
        f"{SERVING} (a Secret volume; the Pod API takes any name, but no Secret has one that is no DNS subdomain)",
        refused=(Refusal({"serving.auth.apiKeys.name": "Fraud_Clients"}, "should match"),),
        accepted=(Accepted({"serving.auth.apiKeys.name": _SUBDOMAIN_253}),),
    ),
    "serving.auth.apiKeys.key": Copied(
        ("Deployment",), SERVING, accepted=(Accepted({"serving.auth.apiKeys.key": "-._aZ09" * 36}),)
    ),
    "serving.auth.jwtSecret.name": Copied(
        ("Deployment",),
        SERVING,
        refused=(Refusal({"serving.auth.jwtSecret": {"name": "jwt..secret", "key": "k"}}, "should match"),),
        accepted=(Accepted({"serving.auth.jwtSecret": {"name": _SUBDOMAIN_253, "key": "k"}}),),
    ),
    "serving.auth.jwtSecret.key": Copied(
        ("Deployment",), SERVING, accepted=(Accepted({"serving.auth.jwtSecret": {"name": "s", "key": "." * 253}}),)
    ),
    "serving.auth.jwtAudience": Copied(
        ("Deployment",),
        f"{SERVING} (env)",
        accepted=(
            Accepted({"serving.auth.jwtSecret": {"name": "s", "key": "k"}, "serving.auth.jwtAudience": "é" * 1024}),
        ),
    ),
    "serving.auth.jwtIssuer": Copied(
        ("Deployment",),
        f"{SERVING} (env)",
        accepted=(
            Accepted({"serving.auth.jwtSecret": {"name": "s", "key": "k"}, "serving.auth.jwtIssuer": "\n" * 1024}),
        ),
    ),
    "serving.auth.jwtAllowNoExp": Copied(
        ("Deployment",),
        f"{SERVING} (env)",
        accepted=(Accepted({"serving.auth.jwtSecret": {"name": "s", "key": "k"}, "serving.auth.jwtAllowNoExp": True}),),
    ),
    "serving.gpuPlacement": Copied(
        ("Deployment",),
        "builders.placement.serving_placement",
        accepted=(Accepted(_serving("gpuPlacement", "Spread")), Accepted(_serving("gpuPlacement", "Pack"))),
    ),
    "serving.serviceAccount.annotations.*": Copied(
        ("ServiceAccount",),
        SERVING,
        refused=(Refusal(_serving("serviceAccount", {"annotations": {"-bad": "x"}}), "qualified name"),),
        accepted=(Accepted(_serving("serviceAccount", {"annotations": {_LONG_KEY: "x" * 10_000}})),),
    ),
    "serving.allowPickleDeserialization": Copied(
        ("Deployment",), f"{SERVING} (env)", accepted=(Accepted(_serving("allowPickleDeserialization", True)),)
    ),
    "traffic.router": Copied(
        ("HTTPRoute", "Ingress", "Service"),
        f"{ROUTING} (which objects, not a value)",
        accepted=(Accepted({"traffic": {"router": "replicas"}, "rollout.shadow": None}),),
    ),
    "traffic.gateway.parentRefs[].name": Copied(
        ("HTTPRoute",), ROUTING, accepted=(Accepted({"traffic.gateway.parentRefs": [{"name": "A_Gateway " * 25}]}),)
    ),
    "traffic.gateway.parentRefs[].namespace": Copied(
        ("HTTPRoute",),
        ROUTING,
        refused=(Refusal({"traffic.gateway.parentRefs": [{"name": "g", "namespace": "Gateways"}]}, "should match"),),
        accepted=(Accepted({"traffic.gateway.parentRefs": [{"name": "g", "namespace": "n" * 63}]}),),
    ),
    "traffic.gateway.parentRefs[].sectionName": Copied(
        ("HTTPRoute",),
        ROUTING,
        refused=(Refusal({"traffic.gateway.parentRefs": [{"name": "g", "sectionName": "HTTPS"}]}, "should match"),),
        accepted=(Accepted({"traffic.gateway.parentRefs": [{"name": "g", "sectionName": _SUBDOMAIN_253}]}),),
    ),
    "traffic.gateway.hostnames[]": Copied(
        ("HTTPRoute",),
        ROUTING,
        refused=(
            Refusal({"traffic.gateway.hostnames": ["Fraud.example.com"]}, "should match"),
            Refusal({"traffic.gateway.hostnames": ["fraud.*.com"]}, "should match"),
        ),
        accepted=(Accepted({"traffic.gateway.hostnames": ["*.example.com", _SUBDOMAIN_253, "10.0.0.1"]}),),
    ),
    "traffic.gateway.path": Copied(
        ("HTTPRoute",),
        ROUTING,
        refused=(
            Refusal({"traffic.gateway.path": "/a//b"}, "must not contain '//'"),
            Refusal({"traffic.gateway.path": "/a/.."}, "must not end with '/..'"),
            Refusal({"traffic.gateway.path": "/a#b"}, "must not contain '#'"),
            Refusal({"traffic.gateway.path": "/a b"}, "valid URI path characters"),
            Refusal({"traffic.gateway.path": "/" + "a" * 1024}, "may not be more than 1024"),
        ),
        accepted=(Accepted({"traffic.gateway.path": "/v1/models/fraud%20x;y=1:@~"}),),
    ),
    # The GRPCRoute's own listeners (another section of the HTTPRoute's Gateway `public`, or another Gateway).
    "traffic.gateway.grpc.parentRefs[].name": Copied(
        ("GRPCRoute",),
        ROUTING,
        accepted=(Accepted({"traffic.gateway.grpc": {"parentRefs": [{"name": "A_Gateway " * 25}]}}),),
    ),
    "traffic.gateway.grpc.parentRefs[].namespace": Copied(
        ("GRPCRoute",),
        ROUTING,
        refused=(
            Refusal({"traffic.gateway.grpc": {"parentRefs": [{"name": "g", "namespace": "Gateways"}]}}, "should match"),
        ),
        accepted=(Accepted({"traffic.gateway.grpc": {"parentRefs": [{"name": "g", "namespace": "n" * 63}]}}),),
    ),
    "traffic.gateway.grpc.parentRefs[].sectionName": Copied(
        ("GRPCRoute",),
        ROUTING,
        refused=(
            Refusal({"traffic.gateway.grpc": {"parentRefs": [{"name": "g", "sectionName": "GRPC"}]}}, "should match"),
        ),
        accepted=(
            Accepted(
                {
                    "traffic.gateway.grpc": {
                        "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": _SUBDOMAIN_253}]
                    }
                }
            ),
        ),
    ),
    "traffic.gateway.grpc.hostnames[]": Copied(
        ("GRPCRoute",),
        ROUTING,
        refused=(
            Refusal(
                {"traffic.gateway.grpc": {"parentRefs": [{"name": "g"}], "hostnames": ["Fraud.example.com"]}},
                "should match",
            ),
        ),
        accepted=(
            Accepted(
                {
                    "traffic.gateway.grpc": {
                        "parentRefs": [{"name": "g"}],
                        "hostnames": ["*.example.com", _SUBDOMAIN_253, "10.0.0.1"],
                    }
                }
            ),
        ),
    ),
    "traffic.ingress.className": Copied(
        ("Ingress",),
        ROUTING,
        refused=(
            Refusal({"traffic.ingress": {**_INGRESS, "className": "Nginx_Class"}}, "should match", base="ingress"),
        ),
        accepted=(Accepted({"traffic.ingress": {**_INGRESS, "className": _SUBDOMAIN_253}}, base="ingress"),),
    ),
    "traffic.ingress.host": Copied(
        ("Ingress",),
        ROUTING,
        refused=(
            Refusal({"traffic.ingress": {**_INGRESS, "host": "10.0.0.1"}}, "not an IP address", base="ingress"),
            Refusal({"traffic.ingress": {**_INGRESS, "host": "010.0.0.1"}}, "not an IP address", base="ingress"),
            Refusal({"traffic.ingress": {**_INGRESS, "host": "Fraud.example.com"}}, "should match", base="ingress"),
        ),
        accepted=(
            Accepted({"traffic.ingress": {**_INGRESS, "host": "*.example.com"}}, base="ingress"),
            Accepted({"traffic.ingress": {**_INGRESS, "host": "999.0.0.1"}}, base="ingress"),
        ),
    ),
    "traffic.ingress.path": Copied(
        ("Ingress",),
        ROUTING,
        refused=(
            Refusal({"traffic.ingress": {**_INGRESS, "path": "/a/../b"}}, "must not contain '/../'", base="ingress"),
            Refusal({"traffic.ingress": {**_INGRESS, "path": "/a%2Fb"}}, "must not contain '%2F'", base="ingress"),
        ),
        accepted=(Accepted({"traffic.ingress": {**_INGRESS, "path": "/a b#c"}}, base="ingress"),),
    ),
    "traffic.ingress.tls.secretName": Copied(
        ("Ingress",),
        ROUTING,
        refused=(
            Refusal(
                {"traffic.ingress": {**_INGRESS, "tls": {"secretName": "Fraud_TLS"}}}, "should match", base="ingress"
            ),
        ),
        accepted=(Accepted({"traffic.ingress": {**_INGRESS, "tls": {"secretName": _SUBDOMAIN_253}}}, base="ingress"),),
    ),
    "traffic.ingress.clusterDomain": Copied(
        ("Ingress",),
        f"{ROUTING} (the mirror-target annotation)",
        accepted=(Accepted({"traffic.ingress": {**_INGRESS, "clusterDomain": _SUBDOMAIN_253}}, base="ingress"),),
    ),
    "traffic.replicas.tolerance": Copied(
        ("Deployment", "HorizontalPodAutoscaler"),
        "builders.traffic.plan_traffic (replica counts)",
        accepted=(Accepted({"traffic": {"router": "replicas", "replicas": {"tolerance": 0}}, "rollout.shadow": None}),),
    ),
    "traffic.replicas.maxExtraReplicas": Copied(
        ("Deployment", "HorizontalPodAutoscaler"),
        "builders.traffic.plan_traffic (replica counts)",
        accepted=(
            Accepted(
                {"traffic": {"router": "replicas", "replicas": {"maxExtraReplicas": 100}}, "rollout.shadow": None}
            ),
        ),
    ),
    "traffic.header.name": Copied(
        ("HTTPRoute", "Ingress"),
        f"{ROUTING} (header match, canary-by-header annotation)",
        refused=(Refusal({"traffic.header.name": "x model"}, "should match"),),
        accepted=(
            Accepted({"traffic.header.name": "X-~!#$%&'*+.^_`|" + "x" * 240}),
            Accepted({"traffic.header.name": "x" * 256}, base="ingress"),
        ),
    ),
    "traffic.header.valueFrom.secretKeyRef.name": NotCopied(
        "the operator reads the Secret; its value (checked by the operator) goes into the router"
    ),
    "traffic.header.valueFrom.secretKeyRef.key": NotCopied("the key of that Secret"),
    "rollout.steps[]": Copied(
        ("HTTPRoute", "Ingress", "Deployment"),
        "builders.traffic.plan_traffic (router weights, replica split)",
        accepted=(Accepted({"rollout.steps": [1, 100]}), Accepted({"rollout.steps": [1, 99, 100]}, base="ingress")),
    ),
    "rollout.interval": NotCopied("the rollout machine's step timer"),
    "rollout.canaryReadyTimeout": NotCopied("the rollout machine's timer"),
    "rollout.analysis.prometheus": NotCopied(
        "the operator's analysis queries it (the ScaledObject takes it only through requestRate's fallback)",
        accepted=(Accepted({"rollout.analysis.prometheus": "http://p:1/" + "x" * 2000}, base="keda"),),
    ),
    **{
        f"rollout.analysis.{name}": NotCopied("the operator's analysis of each step")
        for name in (
            "maxErrorRate",
            "maxP99Latency",
            "minRequests",
            "failureLimit",
            "inconclusiveLimit",
            "window",
            "compareWithStable",
            "maxErrorRateIncrease",
            "metrics[].name",
            "metrics[].query",
            "metrics[].min",
            "metrics[].max",
            "minAccuracy",
            "minPrecision",
            "minRecall",
            "positiveClass",
            "minLabels",
        )
    },
    "rollout.shadow.enabled": Copied(
        ("HTTPRoute", "Ingress"),
        f"{ROUTING} (a RequestMirror filter, a mirror-target annotation; not a value)",
        accepted=(Accepted({"rollout.shadow.enabled": True}, base="ingress"),),
    ),
    "rollout.shadow.minComparisons": NotCopied("the operator's shadow verdict"),
    "rollout.shadow.minAgreement": NotCopied("the operator's shadow verdict"),
    "rollout.shadow.maxDuration": NotCopied("the operator's shadow verdict"),
    **_scheduling("training", TRAINING_KINDS, f"{TRAINING}, {TRAINJOB} (podSpecOverrides)"),
    **_container("training", TRAINING_KINDS, f"{TRAINING}, {TRAINJOB}"),
    "training.args[]": Copied(
        TRAINING_KINDS, f"{TRAINING}, {TRAINJOB}", accepted=(Accepted(_training("args", ["$(X)", "ü\n", ""])),)
    ),
    "training.data.uri": Copied(
        TRAINING_KINDS, f"{TRAINING} (env)", accepted=(Accepted(_training("data", {"uri": "s3://b/" + "é" * 2000})),)
    ),
    "training.serviceAccountName": Copied(
        ("Job", "CronJob"),
        TRAINING,
        refused=(Refusal(_training("serviceAccountName", "train..er"), "should match"),),
        accepted=(Accepted(_training("serviceAccountName", _SUBDOMAIN_253)),),
    ),
    "training.schedule": Copied(
        ("CronJob",),
        TRAINING,
        refused=(
            Refusal(_training("schedule", "every sunday"), "should match"),
            # Cron semantics (ranges, names, steps, TZ prefixes) are the CronJob API's: the InvalidSpec path.
            Refusal(_training("schedule", "99 3 * * 0"), "schedule", by="object", kind="CronJob"),
            Refusal(_training("schedule", "CRON_TZ=UTC 0 3 * *"), "TZ", by="object", kind="CronJob"),
        ),
        accepted=(
            Accepted(_training("schedule", "@weekly")),
            Accepted(_training("schedule", "*/5 1-3 * JAN-MAR MON,FRI")),
        ),
    ),
    "training.allowPickleDeserialization": Copied(
        TRAINING_KINDS, f"{TRAINING} (env)", accepted=(Accepted(_training("allowPickleDeserialization", True)),)
    ),
    "training.retrainOnDrift": NotCopied("the operator's drift trigger"),
    "training.backoffLimit": Copied(("Job", "CronJob"), TRAINING, accepted=(Accepted(_training("backoffLimit", 20)),)),
    "training.activeDeadlineSeconds": Copied(
        ("Job", "CronJob"), TRAINING, accepted=(Accepted(_training("activeDeadlineSeconds", 2**63 - 1)),)
    ),
    "training.ttlSecondsAfterFinished": Copied(
        ("Job", "CronJob"),
        TRAINING,
        refused=(Refusal(_training("ttlSecondsAfterFinished", 2**31), "less than or equal to 2147483647"),),
        accepted=(Accepted(_training("ttlSecondsAfterFinished", 2**31 - 1)),),
    ),
    "training.workers": Copied(
        ("Job", "Service", "TrainJob"),
        f"{TRAINING} (Indexed Job, rendezvous Service), {TRAINJOB} (numNodes)",
        accepted=(Accepted(_training("workers", 64)), Accepted(_training("workers", 64), base="kubeflow")),
    ),
    "training.engine": Copied(
        TRAINING_KINDS,
        "builders.trainjob.build_training_run (which kind, not a value)",
        accepted=(Accepted({}, "kubeflow"),),
    ),
    "training.kubeflow.runtime": Copied(
        ("TrainJob",),
        TRAINJOB,
        accepted=(Accepted({"training.kubeflow": {"runtime": "Any Name/" + "x" * 244}}, base="kubeflow"),),
    ),
    "training.kubeflow.runtimeKind": Copied(
        ("TrainJob",),
        TRAINJOB,
        accepted=(Accepted({"training.kubeflow": {"runtimeKind": "TrainingRuntime"}}, base="kubeflow"),),
    ),
    **{
        f"monitoring.drift.{name}": NotCopied("the operator's drift watch")
        for name in ("method", "threshold", "window", "prometheus", "minInputs", "cooldown")
    },
}


def refusals() -> list[tuple[str, Refusal]]:
    """(field, refusal) of every refused value in the table."""
    return [(path, refusal) for path, kind in FIELDS.items() if isinstance(kind, Copied) for refusal in kind.refused]


def acceptances() -> list[tuple[str, Accepted]]:
    """(field, accepted value) of every edge value in the table."""
    return [(path, accepted) for path, kind in FIELDS.items() for accepted in kind.accepted]

"""The objects that serve one track (stable or canary) of a ModelDeployment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from modelpilot.operator.builders.autoscaling import (
    Autoscaler,
    autoscaler_keys,
    build_autoscaler,
    unbuilt_autoscaler_keys,
)
from modelpilot.operator.builders.common import (
    SERVING_COMPONENT,
    ObjectKey,
    Owner,
    Track,
    container_resources,
    container_security_context,
    env_list,
    labels,
    metadata,
    pickle_env,
    pod_security_context,
    scheduling,
    selector,
    tmp_mount,
    tmp_volume,
    track_name,
)
from modelpilot.operator.builders.placement import serving_placement
from modelpilot.operator.spec import ModelDeploymentSpec, SecretKeyRef
from modelpilot.operator.spec.serving import GRPC_PORT, METRICS_PORT

CONTAINER_NAME = "server"
PORT_NAME = "http"
# GET /metrics is on a port of its own: Prometheus scrapes it, the Service and the router never carry it.
METRICS_PORT_NAME = "metrics"
# The Open Inference Protocol's gRPC service of the server (MODELPILOT_GRPC_PORT), beside HTTP on the Service.
GRPC_PORT_NAME = "grpc"
READINESS_PATH = "/readyz"
LIVENESS_PATH = "/healthz"
METRICS_PATH = "/metrics"
# Parsing one maximal JSON body can hold the server's interpreter for about a second, /healthz included.
LIVENESS_TIMEOUT_SECONDS = 5
# /predict_batch keeps an upload's validated rows beyond 16 MiB in a file here (about half the CSV's size;
# uploads are at most 256 MiB by default): room for several large uploads at once, and a bound on what
# uploads can write to the node's disk (past it the kubelet evicts the pod). /tmp stays unbounded: the
# model's files are downloaded there.
SPOOL_VOLUME = "spool"
SPOOL_DIR = "/var/spool/modelpilot"
SPOOL_SIZE_LIMIT = "2Gi"
# Long enough for a large model to download from the artifact store before liveness may restart the pod.
STARTUP_PERIOD_SECONDS = 10
STARTUP_FAILURE_THRESHOLD = 60
# Endpoints are removed asynchronously; a short pause before SIGTERM lets routers stop sending first.
PRE_STOP_SLEEP_SECONDS = 5
TERMINATION_GRACE_PERIOD_SECONDS = 30

# Client authentication (spec.serving.auth): each Secret key is mounted read-only as one file in a directory
# of its own (a Secret volume per key: the two keys may live in different Secrets), readable by the pod's group.
AUTH_DIR = "/etc/modelpilot/auth"
API_KEYS_VOLUME = "auth-api-keys"
JWT_SECRET_VOLUME = "auth-jwt-secret"
AUTH_FILE_NAME = "value"
AUTH_FILE_MODE = 0o440

DNS_PORT = 53
# Artifact stores (S3, GCS, Azure Blob, an HTTP artifact proxy) are reached over HTTPS or HTTP at
# addresses that are not known when the policy is built (and change), so egress is open by port only.
ARTIFACT_STORE_PORTS = (443, 80)
# The serving pods' setting that carries the prediction log's DSN (docs/prediction-log.md).
PREDICTION_LOG_DSN_ENV = "MODELPILOT_PREDLOG_DSN"


@dataclass(frozen=True)
class PredictionLogPlan:
    """Where the serving pods find the prediction log: its DSN in a Secret of the model's namespace, and the
    database's TCP port (opened in the pods' egress policy)."""

    secret: SecretKeyRef
    port: int = 5432


@dataclass(frozen=True)
class TrackPlan:
    """Which version a track serves and how many pods it gets."""

    track: Track
    version: str
    model_uri: str  # models:/<name>/<version>
    replicas: int  # used when spec.serving.autoscaling is None
    min_replicas: int | None = None  # HPA bounds of this track (`traffic.plan_traffic` sizes them by weight);
    max_replicas: int | None = None  # None: the spec's autoscaling bounds
    # CIDRs of the proxies in front of the pods (the Gateway's or ingress controller's pods), whose
    # X-Forwarded-For the server believes; empty: the TCP peer is the client.
    trusted_proxies: str = ""
    autoscaler: Autoscaler = "hpa"  # the operator's autoscaler backend (builders.autoscaling)
    prediction_log: PredictionLogPlan | None = None  # the operator's setting; None: no prediction log


def build_track(owner: Owner, spec: ModelDeploymentSpec, plan: TrackPlan) -> list[dict[str, Any]]:
    """ServiceAccount, Deployment, Service, autoscaler (HPA or KEDA ScaledObject, with autoscaling),
    PodDisruptionBudget and NetworkPolicy of one track, in the order they should be applied (the ServiceAccount
    first, together with the Deployment whose pods use it: `OwnedObjects.apply`)."""
    objects = [
        _service_account(owner, spec, plan),
        _deployment(owner, spec, plan),
        _service(owner, spec, plan),
    ]
    if spec.serving.autoscaling is not None:
        objects.append(
            build_autoscaler(
                owner,
                spec,
                plan.track,
                _track_labels(owner, spec, plan),
                min_replicas=plan.min_replicas,
                max_replicas=plan.max_replicas,
                autoscaler=plan.autoscaler,
            )
        )
    objects.append(_disruption_budget(owner, spec, plan))
    objects.append(_network_policy(owner, spec, plan))
    return objects


def track_object_keys(owner_name: str, track: Track, autoscaler: Autoscaler = "hpa") -> list[ObjectKey]:
    """(apiVersion, kind, name) of every object `build_track` can produce, in the order to delete them:
    the autoscaler before the Deployment it scales, the Service and its policies after the pods."""
    name = track_name(owner_name, track)
    return [
        *autoscaler_keys(name, autoscaler),
        ("apps/v1", "Deployment", name),
        ("policy/v1", "PodDisruptionBudget", name),
        ("networking.k8s.io/v1", "NetworkPolicy", name),
        ("v1", "Service", name),
        ("v1", "ServiceAccount", name),
    ]


def unbuilt_track_keys(
    owner_name: str, spec: ModelDeploymentSpec, track: Track, autoscaler: Autoscaler = "hpa"
) -> list[ObjectKey]:
    """Objects of a track that `build_track` no longer produces for this spec and so must be deleted
    (the autoscaler once autoscaling is switched off, the other kind when the autoscaler kind changes)."""
    return unbuilt_autoscaler_keys(track_name(owner_name, track), spec, autoscaler)


def _track_labels(owner: Owner, spec: ModelDeploymentSpec, plan: TrackPlan) -> dict[str, str]:
    return labels(owner, spec, component=SERVING_COMPONENT, track=plan.track, version=plan.version)


def _service_account(owner: Owner, spec: ModelDeploymentSpec, plan: TrackPlan) -> dict[str, Any]:
    # One account per track, so cloud IAM bindings (IRSA, EKS Pod Identity) can name it exactly; the server
    # never calls the Kubernetes API, so its token stays unmounted (EKS's webhook projects a token of its own,
    # for the audience sts.amazonaws.com, into pods whose account carries a role).
    annotations = dict(spec.serving.service_account.annotations)
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(
            owner, track_name(owner.name, plan.track), _track_labels(owner, spec, plan), annotations or None
        ),
        "automountServiceAccountToken": False,
    }


def _env(owner: Owner, spec: ModelDeploymentSpec, plan: TrackPlan) -> list[dict[str, Any]]:
    fixed = [
        ("MODELPILOT_MODEL_URI", plan.model_uri),
        ("MODELPILOT_MODEL_NAME", spec.model.name),
        ("MODELPILOT_MODEL_VERSION", plan.version),
        ("MODELPILOT_TRACK", plan.track),
        ("MODELPILOT_PORT", str(spec.serving.port)),
        ("MODELPILOT_METRICS_PORT", str(METRICS_PORT)),
        ("MODELPILOT_GRPC_PORT", str(GRPC_PORT)),
        ("MODELPILOT_SPOOL_DIR", SPOOL_DIR),
        ("MLFLOW_TRACKING_URI", spec.registry.tracking_uri),
        pickle_env(spec.serving.allow_pickle_deserialization),
        *_auth_env(spec),
    ]
    overridable = [
        ("MLFLOW_DISABLE_TELEMETRY", "true"),
        ("DO_NOT_TRACK", "true"),
    ]
    if plan.trusted_proxies:
        overridable.append(("MODELPILOT_TRUSTED_PROXIES", plan.trusted_proxies))
    env: list[dict[str, Any]] = [*env_list(fixed, overridable, spec.serving.env)]
    if plan.prediction_log is not None:
        # From the Secret, never a plain value; it wins over a spec entry of the same name.
        secret = plan.prediction_log.secret
        env = [entry for entry in env if entry["name"] != PREDICTION_LOG_DSN_ENV]
        env.append(
            {"name": PREDICTION_LOG_DSN_ENV, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}}
        )
    return env


def _auth_secrets(spec: ModelDeploymentSpec) -> list[tuple[str, str, SecretKeyRef]]:
    """(volume, server setting, Secret key) of each authentication file the spec asks for."""
    auth = spec.serving.auth
    if auth is None:
        return []
    files = [
        (API_KEYS_VOLUME, "MODELPILOT_API_KEYS_FILE", auth.api_keys),
        (JWT_SECRET_VOLUME, "MODELPILOT_JWT_SECRET_FILE", auth.jwt_secret),
    ]
    return [(volume, setting, ref) for volume, setting, ref in files if ref is not None]


def _auth_path(volume: str) -> str:
    return f"{AUTH_DIR}/{volume}"


def _auth_env(spec: ModelDeploymentSpec) -> list[tuple[str, str]]:
    """The server's authentication settings: files of the mounted Secret keys, and the JWT claims to check."""
    auth = spec.serving.auth
    if auth is None:
        return []
    env = [(setting, f"{_auth_path(volume)}/{AUTH_FILE_NAME}") for volume, setting, _ in _auth_secrets(spec)]
    if auth.jwt_secret is not None:
        env += [
            ("MODELPILOT_JWT_AUDIENCE", auth.jwt_audience),
            ("MODELPILOT_JWT_ISSUER", auth.jwt_issuer),
            ("MODELPILOT_JWT_ALLOW_NO_EXP", "true" if auth.jwt_allow_no_exp else "false"),
        ]
    return env


def _auth_mounts(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    return [{"name": volume, "mountPath": _auth_path(volume), "readOnly": True} for volume, _, _ in _auth_secrets(spec)]


def _auth_volumes(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    return [
        {
            "name": volume,
            "secret": {
                "secretName": ref.name,
                "items": [{"key": ref.key, "path": AUTH_FILE_NAME}],
                "defaultMode": AUTH_FILE_MODE,
            },
        }
        for volume, _, ref in _auth_secrets(spec)
    ]


def _http_probe(path: str, *, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _container(owner: Owner, spec: ModelDeploymentSpec, plan: TrackPlan) -> dict[str, Any]:
    serving = spec.serving
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": serving.image,
        "ports": [
            {"name": PORT_NAME, "containerPort": serving.port, "protocol": "TCP"},
            {"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"},
            {"name": GRPC_PORT_NAME, "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "env": _env(owner, spec, plan),
    }
    if spec.registry.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": spec.registry.credentials_secret}}]
    resources = container_resources(serving.resources)
    if resources:
        container["resources"] = resources
    container.update(
        {
            # Ready only once the model is loaded: readiness is what gates traffic and the rollout.
            "readinessProbe": _http_probe(READINESS_PATH, period=5, timeout=2, failures=3),
            # A busy server answers slowly; restart only after a minute of silence.
            "livenessProbe": _http_probe(LIVENESS_PATH, period=10, timeout=LIVENESS_TIMEOUT_SECONDS, failures=6),
            "startupProbe": _http_probe(
                LIVENESS_PATH,
                period=STARTUP_PERIOD_SECONDS,
                timeout=LIVENESS_TIMEOUT_SECONDS,
                failures=STARTUP_FAILURE_THRESHOLD,
            ),
            "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_SECONDS}}},
            "securityContext": container_security_context(),
            "volumeMounts": [tmp_mount(), {"name": SPOOL_VOLUME, "mountPath": SPOOL_DIR}, *_auth_mounts(spec)],
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
    )
    return container


def _deployment(owner: Owner, spec: ModelDeploymentSpec, plan: TrackPlan) -> dict[str, Any]:
    serving = spec.serving
    pod_labels = _track_labels(owner, spec, plan)
    placement = serving_placement(owner.name, spec, plan.track)
    pod_spec: dict[str, Any] = {
        "serviceAccountName": track_name(owner.name, plan.track),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": TERMINATION_GRACE_PERIOD_SECONDS,
        "containers": [_container(owner, spec, plan)],
        "volumes": [
            tmp_volume(),
            {"name": SPOOL_VOLUME, "emptyDir": {"sizeLimit": SPOOL_SIZE_LIMIT}},
            *_auth_volumes(spec),
        ],
        # Spread over nodes, or GPU pods packed (spec.serving.gpuPlacement); never refuse to schedule for it.
        "topologySpreadConstraints": placement.topology_spread_constraints,
        **scheduling(serving.node_selector, serving.tolerations, placement.affinity, serving.resources),
    }
    deployment_spec: dict[str, Any] = {}
    if serving.autoscaling is None:
        # With autoscaling the HPA owns `replicas`; setting it here would make every apply fight it.
        deployment_spec["replicas"] = plan.replicas
    deployment_spec.update(
        {
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector(owner.name, plan.track)},
            # A new pod must be Ready before an old one goes: capacity never drops below the ready count.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        **serving.pod_annotations,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(METRICS_PORT),
                        "prometheus.io/path": METRICS_PATH,
                        "kubectl.kubernetes.io/default-container": CONTAINER_NAME,
                    },
                },
                "spec": pod_spec,
            },
        }
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, track_name(owner.name, plan.track), dict(pod_labels)),
        "spec": deployment_spec,
    }


def _service(owner: Owner, spec: ModelDeploymentSpec, plan: TrackPlan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, track_name(owner.name, plan.track), _track_labels(owner, spec, plan)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(owner.name, plan.track),
            "ports": [
                {"name": PORT_NAME, "port": spec.serving.port, "targetPort": PORT_NAME, "protocol": "TCP"},
                {
                    "name": GRPC_PORT_NAME,
                    "port": GRPC_PORT,
                    "targetPort": GRPC_PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                },
            ],
        },
    }


def _disruption_budget(owner: Owner, spec: ModelDeploymentSpec, plan: TrackPlan) -> dict[str, Any]:
    # maxUnavailable 1 (not a minAvailable count) keeps working as the HPA changes the replica count and
    # never blocks a node drain for good, even with a single replica; unhealthy pods may always be evicted
    # so a crash-looping track cannot hold a drain either.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(owner, track_name(owner.name, plan.track), _track_labels(owner, spec, plan)),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(owner.name, plan.track)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def registry_port(tracking_uri: str) -> int:
    """The TCP port of the MLflow tracking server (the scheme's default when the URI has none)."""
    parts = urlsplit(tracking_uri)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _network_policy(owner: Owner, spec: ModelDeploymentSpec, plan: TrackPlan) -> dict[str, Any]:
    # Ingress: the serving port from anywhere, because the Gateway and ingress controller live in
    # namespaces (or outside the cluster) this policy cannot know; the metrics port from pods of any
    # namespace (Prometheus's is not known either), never from addresses outside the cluster.
    # Egress: DNS; the registry, which hands out the model; and 443/80 for the artifact store the model
    # files come from. Destinations stay open: the registry may be outside the cluster, and artifact
    # store addresses are cloud endpoints with changing IPs.
    # The prediction log's database, when the operator gives the pods one.
    egress_ports = sorted({registry_port(spec.registry.tracking_uri), *ARTIFACT_STORE_PORTS})
    if plan.prediction_log is not None:
        egress_ports = sorted({*egress_ports, plan.prediction_log.port})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(owner, track_name(owner.name, plan.track), _track_labels(owner, spec, plan)),
        "spec": {
            "podSelector": {"matchLabels": selector(owner.name, plan.track)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"ports": [{"protocol": "TCP", "port": spec.serving.port}, {"protocol": "TCP", "port": GRPC_PORT}]},
                {"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": METRICS_PORT}]},
            ],
            "egress": [
                {"ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}]},
                {"ports": [{"protocol": "TCP", "port": port} for port in egress_ports]},
            ],
        },
    }

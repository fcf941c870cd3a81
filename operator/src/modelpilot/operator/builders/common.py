"""Names, labels, owner references and pod-spec pieces shared by every builder."""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from modelpilot.operator.spec import GROUP, KIND, VERSION, EnvVar, ModelDeploymentSpec, Resources, Toleration
from modelpilot.operator.spec.kube import quantity_amount

Track = Literal["stable", "canary"]
TRACKS: tuple[Track, ...] = ("stable", "canary")
ObjectKey = tuple[str, str, str]  # (apiVersion, kind, name)

PART_OF = "modelpilot"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
DEPLOYMENT_LABEL = "modelpilot.io/deployment"
MODEL_LABEL = "modelpilot.io/model"
TRACK_LABEL = "modelpilot.io/track"
VERSION_LABEL = "modelpilot.io/version"
COMPONENT_LABEL = "app.kubernetes.io/component"
SERVING_COMPONENT = "serving"

GPU_RESOURCE = "nvidia.com/gpu"
NONROOT_UID = 10001

_LABEL_VALUE_MAX = 63
_LABEL_INVALID = re.compile(r"[^A-Za-z0-9._-]+")
_LABEL_EDGE = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")
_LABEL_VALID = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns every object built for it."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        """The controller ownerReference: owned objects are garbage-collected with the ModelDeployment."""
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def track_name(owner_name: str, track: Track) -> str:
    """Name of a track's Deployment, Service and the rest: `<name>-stable` or `<name>-canary`."""
    return f"{owner_name}-{track}"


def is_valid_label_value(value: str) -> bool:
    """Whether the API server accepts `value` as a label value."""
    return bool(_LABEL_VALID.match(value))


def label_value(text: str) -> str:
    """`text` as a valid label value: invalid characters become '-', and a value that had to be
    shortened (or had nothing valid left) ends in a short hash, so distinct names stay distinct."""
    if is_valid_label_value(text):
        return text
    cleaned = _LABEL_EDGE.sub("", _LABEL_INVALID.sub("-", text))
    if cleaned and len(cleaned) <= _LABEL_VALUE_MAX:
        return cleaned
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    prefix = _LABEL_EDGE.sub("", cleaned[: _LABEL_VALUE_MAX - len(digest) - 1])
    return f"{prefix}-{digest}" if prefix else digest


def labels(
    owner: Owner,
    spec: ModelDeploymentSpec,
    *,
    component: str,
    track: Track | None = None,
    version: str | None = None,
) -> dict[str, str]:
    """Recommended `app.kubernetes.io/*` labels plus `modelpilot.io/{deployment,model,track,version}`."""
    result = {
        "app.kubernetes.io/name": f"{PART_OF}-{component}",
        "app.kubernetes.io/instance": label_value(owner.name),
        COMPONENT_LABEL: component,
        "app.kubernetes.io/part-of": PART_OF,
        MANAGED_BY_LABEL: PART_OF,
        DEPLOYMENT_LABEL: label_value(owner.name),
        MODEL_LABEL: label_value(spec.model.name),
    }
    if track is not None:
        result[TRACK_LABEL] = track
    if version is not None:
        result[VERSION_LABEL] = label_value(version)
    return result


def selector(owner_name: str, track: Track | None) -> dict[str, str]:
    """Labels that select the serving pods of one track, or of both tracks when `track` is None.

    Deployment selectors are immutable, so this never includes the version. The component is part
    of it so that training pods, which carry the same deployment label, never receive traffic.
    """
    result = {DEPLOYMENT_LABEL: label_value(owner_name), COMPONENT_LABEL: SERVING_COMPONENT}
    if track is not None:
        result[TRACK_LABEL] = track
    return result


def metadata(
    owner: Owner, name: str, object_labels: dict[str, str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """Object metadata in the owner's namespace, with the controller owner reference."""
    result: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": object_labels,
    }
    if annotations:
        result["annotations"] = annotations
    result["ownerReferences"] = [owner.reference()]
    return result


def quantity(value: int | str) -> str:
    """A quantity as the string form the API server returns, so applied and live objects compare equal."""
    return str(value)


def gpu_amount(resources: Resources) -> Decimal:
    """GPUs a container with these resources asks for (its limit, else its request; 0 for none)."""
    amount = resources.limits.get(GPU_RESOURCE, resources.requests.get(GPU_RESOURCE))
    return Decimal(0) if amount is None else quantity_amount(amount)


def requests_gpu(resources: Resources) -> bool:
    """Whether a container with these resources asks for at least one GPU."""
    amounts = [resources.limits.get(GPU_RESOURCE), resources.requests.get(GPU_RESOURCE)]
    return any(amount is not None and quantity_amount(amount) > 0 for amount in amounts)


def container_resources(resources: Resources) -> dict[str, dict[str, str]]:
    """Container resources; a GPU given only as a request is also set as the limit, which the API requires."""
    requests = {name: quantity(amount) for name, amount in resources.requests.items()}
    limits = {name: quantity(amount) for name, amount in resources.limits.items()}
    if GPU_RESOURCE in requests and GPU_RESOURCE not in limits:
        limits[GPU_RESOURCE] = requests[GPU_RESOURCE]
    result: dict[str, dict[str, str]] = {}
    if requests:
        result["requests"] = requests
    if limits:
        result["limits"] = limits
    return result


def _toleration(toleration: Toleration) -> dict[str, Any]:
    return toleration.model_dump(by_alias=True, exclude_none=True)


def _tolerates_gpu_taint(tolerations: list[Toleration]) -> bool:
    for toleration in tolerations:
        if toleration.effect not in {None, "NoSchedule"}:
            continue
        if toleration.key == GPU_RESOURCE or (toleration.key is None and toleration.operator == "Exists"):
            return True
    return False


def pod_tolerations(tolerations: list[Toleration], resources: Resources) -> list[dict[str, Any]]:
    """The spec's tolerations, plus one for the `nvidia.com/gpu` taint GPU node pools carry when the
    container asks for a GPU and no toleration covers that taint yet (the pod would never schedule)."""
    result = [_toleration(toleration) for toleration in tolerations]
    if requests_gpu(resources) and not _tolerates_gpu_taint(tolerations):
        result.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return result


def pod_security_context() -> dict[str, Any]:
    """Pod-level settings of the `restricted` Pod Security Standard."""
    return {
        "runAsNonRoot": True,
        "runAsUser": NONROOT_UID,
        "runAsGroup": NONROOT_UID,
        "fsGroup": NONROOT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Container-level settings of the `restricted` Pod Security Standard, with a read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def tmp_volume() -> dict[str, Any]:
    """A scratch emptyDir: the root filesystem is read-only, and libraries still write temporary files."""
    return {"name": "tmp", "emptyDir": {}}


def tmp_mount() -> dict[str, Any]:
    """Where the scratch volume is mounted."""
    return {"name": "tmp", "mountPath": "/tmp"}


def scheduling(
    node_selector: dict[str, str],
    tolerations: list[Toleration],
    affinity: dict[str, Any] | None,
    resources: Resources,
) -> dict[str, Any]:
    """The pod-spec fields that say where pods may run; empty ones are left out."""
    result: dict[str, Any] = {}
    if node_selector:
        result["nodeSelector"] = dict(node_selector)
    pod_tols = pod_tolerations(tolerations, resources)
    if pod_tols:
        result["tolerations"] = pod_tols
    if affinity:
        result["affinity"] = copy.deepcopy(affinity)  # never hand out the spec's own dict
    return result


PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


def pickle_env(allowed: bool) -> tuple[str, str]:
    """MLflow's switch for unpickling model files: off unless the spec opts in (MLflow's own default is on).

    Always set, so a pod never falls back to MLflow's default; a fixed entry, so `env` cannot flip it."""
    return (PICKLE_ENV, "true" if allowed else "false")


def env_list(
    fixed: list[tuple[str, str]], overridable: list[tuple[str, str]], extra: list[EnvVar]
) -> list[dict[str, str]]:
    """Container env: `fixed` entries always win, `overridable` ones yield to the spec's `extra` entries.

    Names are unique in the result: server-side apply treats env as a map keyed by name and rejects
    duplicates. Order is fixed, then overridable, then the spec's own, so diffs stay quiet.
    """
    fixed_names = {name for name, _ in fixed}
    spec_values: dict[str, str] = {}
    for var in extra:
        if var.name not in fixed_names:
            spec_values[var.name] = var.value
    merged: dict[str, str] = dict(fixed)
    for name, value in overridable:
        merged[name] = spec_values.pop(name, value)
    merged.update(spec_values)
    return [{"name": name, "value": value} for name, value in merged.items()]

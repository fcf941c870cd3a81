"""What the end-to-end modules share about the installation and their ModelDeployments."""

from __future__ import annotations

from typing import Any

from tests.e2e.pods import TRAIN_IMAGE

# The chart's bundled MLflow and the e2e Prometheus, as pods in the cluster reach them.
MLFLOW = "http://modelpilot-mlflow.modelpilot.svc:5000"
PROMETHEUS = "http://prometheus.monitoring.svc:9090"
SMALL_RESOURCES = {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "1536Mi"}}


def training() -> dict[str, Any]:
    """A small CPU training run of the project's training image: a first version in about a minute."""
    return {
        "image": TRAIN_IMAGE,
        "args": ["--rows", "4000", "--epochs", "8", "--stability-seeds", "0"],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "3Gi"}},
        "activeDeadlineSeconds": 900,
    }


def status_of(mdep: dict[str, Any]) -> dict[str, Any]:
    return dict(mdep.get("status") or {})


def condition_of(mdep: dict[str, Any], kind: str) -> str | None:
    return next((c["status"] for c in status_of(mdep).get("conditions", []) if c["type"] == kind), None)


def served_version(mdep: dict[str, Any]) -> str | None:
    """The version the stable track serves once the ModelDeployment is Ready."""
    version = status_of(mdep).get("stable", {}).get("version")
    return str(version) if condition_of(mdep, "Ready") == "True" and version else None


def is_served(mdep: dict[str, Any]) -> bool:
    """Ready, with a version on the stable track."""
    return served_version(mdep) is not None


def infer_body(metadata: dict[str, Any]) -> dict[str, Any]:
    """An OIP v2 request of two rows shaped after a served model's own metadata (`GET /v2/models/<name>`)."""
    tensor = metadata["inputs"][0]
    width = int(tensor["shape"][-1])
    rows = [[0.1 * (i + 1)] * width for i in range(2)]
    return {"inputs": [{"name": tensor["name"], "shape": [2, width], "datatype": tensor["datatype"], "data": rows}]}

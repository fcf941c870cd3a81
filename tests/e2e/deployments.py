"""What the end-to-end modules share about the installation and their ModelDeployments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.e2e.pods import TRAIN_IMAGE, Toolbox

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


def rolled_out_with_env(deployment: dict[str, Any] | None, env: dict[str, str], replicas: int | None = None) -> bool:
    """The Deployment's pod template has `env`, and its controller has rolled every pod (`replicas` of them,
    when given) to that template and sees them Ready."""
    if deployment is None:
        return False
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    values = {item["name"]: item.get("value") for item in container.get("env", [])}
    status = deployment.get("status") or {}
    counts = {status.get("updatedReplicas"), status.get("readyReplicas"), status.get("replicas")}
    return (
        all(values.get(key) == value for key, value in env.items())
        and status.get("observedGeneration") == deployment["metadata"]["generation"]
        and len(counts) == 1
        and (replicas is None or counts == {replicas})
    )


def infer_body(metadata: dict[str, Any]) -> dict[str, Any]:
    """An OIP v2 request of two rows shaped after a served model's own metadata (`GET /v2/models/<name>`)."""
    tensor = metadata["inputs"][0]
    width = int(tensor["shape"][-1])
    rows = [[0.1 * (i + 1)] * width for i in range(2)]
    return {"inputs": [{"name": tensor["name"], "shape": [2, width], "datatype": tensor["datatype"], "data": rows}]}


@dataclass(frozen=True)
class Registry:
    """The bundled MLflow's registry REST API for one model, called from the toolbox pod."""

    toolbox: Toolbox
    model: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{MLFLOW}/api/2.0/mlflow/{path}"
        code, answer = self.toolbox.get(url) if method == "get" else self.toolbox.post(url, body or {})
        assert code == 200, (path, code, answer)
        return dict(answer)

    def alias(self, alias: str) -> str:
        found = self.call("get", f"registered-models/alias?name={self.model}&alias={alias}")
        return str(found["model_version"]["version"])

    def set_alias(self, alias: str, version: str) -> None:
        self.call("post", "registered-models/alias", {"name": self.model, "alias": alias, "version": version})

    def tags(self, version: str) -> dict[str, str]:
        found = self.call("get", f"model-versions/get?name={self.model}&version={version}")["model_version"]
        return {tag["key"]: tag.get("value", "") for tag in found.get("tags", [])}

    def register_copy(self, of: str) -> str:
        """A new version registered from version `of`'s artifacts — what a user (or a pipeline) registers."""
        source = self.call("get", f"model-versions/get?name={self.model}&version={of}")["model_version"]
        copy = {"name": self.model, "source": source["source"], "run_id": source["run_id"]}
        if source["source"].startswith("models:/m-"):  # a logged model (MLflow 3): the version names it too
            copy["model_id"] = source.get("model_id") or source["source"].removeprefix("models:/")
        created = self.call("post", "model-versions/create", copy)
        return str(created["model_version"]["version"])


def registry(toolbox: Toolbox, model: str) -> Registry:
    """The registry of `model`, through the toolbox pod."""
    return Registry(toolbox, model)

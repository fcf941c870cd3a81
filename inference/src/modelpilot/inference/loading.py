"""Resolve a registry URI, download the model once, and pick the fastest runner its flavors allow."""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelpilot.inference.cpus import usable_cpus
from modelpilot.inference.runners import PyfuncRunner, Runner, TorchRunner
from modelpilot.inference.schema import InputSchema, schema_from_signature
from modelpilot.inference.settings import Settings
from modelpilot.inference.validation import Features

log = logging.getLogger("modelpilot.inference")

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))$")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: registry name/version (resolved) and the URI to download."""

    name: str
    version: str
    download_uri: str
    requested_uri: str


@dataclass
class LoadedModel:
    """A runner and what the server needs to know about the model behind it."""

    source: ModelSource
    schema: InputSchema
    runner: Runner
    local_path: Path


def parse_registry_uri(uri: str) -> tuple[str, str | None, str | None]:
    """`models:/name/3` → (name, "3", None); `models:/name@champion` → (name, None, "champion")."""
    match = _REGISTRY_URI.match(uri)
    if match is None:
        raise ValueError(f"model URI {uri!r} is not models:/<name>/<version> or models:/<name>@<alias>")
    return match["name"], match["version"], match["alias"]


def resolve_source(settings: Settings) -> ModelSource:
    """Pin aliases and stages to a version, so what is downloaded is what the metrics say."""
    if not settings.model_uri:
        raise ValueError("MODELPILOT_MODEL_URI is not set")
    if not settings.model_uri.startswith("models:/"):
        name = settings.model_name or "model"
        return ModelSource(name, settings.model_version or "0", settings.model_uri, settings.model_uri)
    from mlflow.tracking import MlflowClient

    name, version, alias = parse_registry_uri(settings.model_uri)
    client = MlflowClient(tracking_uri=settings.tracking_uri or None, registry_uri=settings.tracking_uri or None)
    if alias is not None:
        version = str(client.get_model_version_by_alias(name, alias).version)
    elif version is not None and not version.isdigit():
        latest = client.get_latest_versions(name, stages=[version])
        if not latest:
            raise ValueError(f"model {name!r} has no version in stage {version!r}")
        version = str(latest[0].version)
    assert version is not None
    return ModelSource(name, version, f"models:/{name}/{version}", settings.model_uri)


def torch_device(requested: str) -> str:
    """cuda when asked for or when present under `auto`, else cpu."""
    import torch

    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def configure_torch_threads(requested: int) -> int:
    """Intra-op threads from the CPU limit: more threads than CPUs only adds contention."""
    import torch

    threads = requested or usable_cpus()
    torch.set_num_threads(threads)
    # Fails when already set or once parallel work ran in this process; the first setting stands.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    return threads


def load_model(settings: Settings, download_root: Path | None = None) -> LoadedModel:
    """Download the model and build its runner; raises with a readable reason when it cannot."""
    import mlflow
    from mlflow.models import Model

    if settings.tracking_uri:
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.tracking_uri)
    source = resolve_source(settings)
    root = download_root or Path(tempfile.mkdtemp(prefix="modelpilot-model-"))
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source.download_uri, dst_path=str(root)))
    metadata = Model.load(str(local))
    schema = schema_from_signature(metadata.signature)
    runner = _build_runner(local, metadata, schema, settings)
    log.info(
        "model loaded",
        extra={"fields": {"model": source.name, "version": source.version, "runner": runner.description}},
    )
    return LoadedModel(source=source, schema=schema, runner=runner, local_path=local)


def _build_runner(local: Path, metadata: Any, schema: InputSchema, settings: Settings) -> Runner:
    flavors = metadata.flavors
    if "pytorch" in flavors and schema.numeric:
        import mlflow.pytorch

        data_dir = local / flavors["pytorch"].get("model_data", "data")
        serialization = "pt2" if (data_dir / "model.pt2").exists() else "pickle"
        device = torch_device(settings.device)
        configure_torch_threads(settings.torch_threads)
        module = mlflow.pytorch.load_model(str(local), weights_only=False)
        if serialization == "pickle":
            module.eval()
        if device != "cpu":
            module = module.to(device)
        return TorchRunner(module, device=device, serialization=serialization, column_output=not schema.is_tensor)
    if "python_function" not in flavors:
        raise ValueError(f"the model has flavors {sorted(flavors)} and none this server can run")
    import mlflow.pyfunc

    if "pytorch" in flavors:
        configure_torch_threads(settings.torch_threads)
    model = mlflow.pyfunc.load_model(str(local))
    return PyfuncRunner(model, as_matrix=schema.is_tensor, column_names=schema.column_names)


def warmup_features(schema: InputSchema, rows: int = 2) -> Features:
    """Synthetic rows of the right shape and types; two rows so a fixed batch size of one shows up now."""
    if schema.is_tensor:
        return np.zeros((rows, *schema.row_shape), dtype=schema.tensor_dtype)
    if schema.numeric:
        return np.zeros((rows, schema.width), dtype=np.float32)
    samples = {"float": 0.0, "int": 0, "bool": False, "str": "", "any": ""}
    features: dict[str, np.ndarray[Any, Any]] = {}
    for column in schema.columns:
        array = np.array([samples[column.kind]] * rows)
        features[column.name] = array.astype(column.dtype) if column.dtype is not object else array.astype(object)
    return features

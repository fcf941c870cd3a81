"""The `MLmodel` file of a downloaded model, read with PyYAML instead of `mlflow.models.Model.load`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

MLMODEL_FILE = "MLmodel"


@dataclass(frozen=True)
class MLmodel:
    """What loading needs from an `MLmodel` file: the flavors and the input signature (a JSON string)."""

    flavors: dict[str, dict[str, Any]]
    signature_inputs: str | None
    mlflow_version: str | None = None


def read_mlmodel(model_dir: Path) -> MLmodel:
    """Parse `<model_dir>/MLmodel`; raises with a readable reason when it is missing or malformed."""
    import yaml

    path = model_dir / MLMODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {MLMODEL_FILE} file in {model_dir}; the model URI does not name an MLflow model")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with path.open("rb") as stream:
            document = yaml.load(stream, Loader=loader)
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    flavors = document.get("flavors")
    if not isinstance(flavors, dict) or not all(isinstance(c, dict | None) for c in flavors.values()):
        raise ValueError(f"{path} has no flavors mapping")
    signature = document.get("signature")
    inputs = signature.get("inputs") if isinstance(signature, dict) else None
    if inputs is not None and not isinstance(inputs, str):
        raise ValueError(f"{path}: signature.inputs is not a JSON string")
    version = document.get("mlflow_version")
    return MLmodel(
        flavors={str(name): config or {} for name, config in flavors.items()},
        signature_inputs=inputs or None,
        mlflow_version=str(version) if version is not None else None,
    )

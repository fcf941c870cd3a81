"""Resolve a registry URI, download the model once, and pick the fastest runner its flavors allow.

The common case, a registry on an MLflow server that proxies artifacts and a torch model saved as pt2, needs
neither mlflow nor pandas: the registry answers over REST (`registry_rest`), the files come through the
artifact proxy (`artifacts_rest`), the `MLmodel` file is read with PyYAML (`artifacts_mlmodel`) and the module
with `torch.export.load` (`artifacts_pt2`) in a child process that hands back a flat function (`pt2_child`).
Importing mlflow takes seconds of a cold start, so it is imported only for what needs it: other artifact
stores, pickle-format torch models, every other flavor, and configurations only mlflow's client understands.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import re
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelpilot.inference.artifacts_mlmodel import MLMODEL_FILE, MLmodel, read_mlmodel
from modelpilot.inference.artifacts_pt2 import PT2_FILE, load_exported_module, vouched_pt2_archive
from modelpilot.inference.artifacts_rest import (
    SERVICE_PATH,
    download_tree,
    proxied_artifacts,
    write_registered_model_meta,
)
from modelpilot.inference.cpus import usable_cpus
from modelpilot.inference.gates_program import vouched_gates_archive
from modelpilot.inference.pt2_child import load_flat_programs
from modelpilot.inference.reference import ARTIFACT_DIR as REFERENCE_DIR
from modelpilot.inference.reference import ARTIFACT_FILE as REFERENCE_FILE
from modelpilot.inference.reference import MAX_BYTES as REFERENCE_MAX_BYTES
from modelpilot.inference.reference import FeatureReference, ReferenceError, parse_reference
from modelpilot.inference.registry_rest import RegistryClient, RegistryError, read_bounded, registry_client
from modelpilot.inference.runners import PyfuncRunner, Runner, TorchRunner
from modelpilot.inference.schema import InputSchema, schema_from_inputs_json
from modelpilot.inference.settings import Settings
from modelpilot.inference.validation import Features

log = logging.getLogger("modelpilot.inference")

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))$")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: registry name/version (resolved) and the URI to download.

    `artifact_uri` is where the registry says the version's files are, when it was asked over REST.
    """

    name: str
    version: str
    download_uri: str
    requested_uri: str
    artifact_uri: str | None = None


@dataclass
class LoadedModel:
    """A runner and what the server needs to know about the model behind it."""

    source: ModelSource
    schema: InputSchema
    runner: Runner
    local_path: Path
    # The training reference per feature (for drift bins); empty when the run logged none or it is unusable.
    references: dict[str, FeatureReference] = field(default_factory=dict)


def parse_registry_uri(uri: str) -> tuple[str, str | None, str | None]:
    """`models:/name/3` → (name, "3", None); `models:/name@champion` → (name, None, "champion")."""
    match = _REGISTRY_URI.match(uri)
    if match is None:
        raise ValueError(f"model URI {uri!r} is not models:/<name>/<version> or models:/<name>@<alias>")
    return match["name"], match["version"], match["alias"]


def resolve_source(settings: Settings, registry: RegistryClient | None = None) -> ModelSource:
    """Pin aliases and stages to a version, so what is downloaded is what the metrics say.

    With a `registry` client the registry is asked over REST, otherwise through mlflow's client.
    """
    if not settings.model_uri:
        raise ValueError("MODELPILOT_MODEL_URI is not set")
    if not settings.model_uri.startswith("models:/"):
        name = settings.model_name or "model"
        return ModelSource(name, settings.model_version or "0", settings.model_uri, settings.model_uri)
    name, version, alias = parse_registry_uri(settings.model_uri)
    if registry is not None:
        version = registry.pin_version(name, version, alias)
        artifact_uri = registry.artifact_uri(name, version)
        return ModelSource(name, version, f"models:/{name}/{version}", settings.model_uri, artifact_uri)
    _mlflow(settings)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri or None, registry_uri=settings.tracking_uri or None)
    if alias is not None:
        version = str(client.get_model_version_by_alias(name, alias).version)
    elif version is not None and not version.isdigit():
        # As mlflow reads models:/<name>/<suffix>: `latest` is the newest version of any stage.
        stage = None if version.lower() == "latest" else version
        latest = client.get_latest_versions(name, stages=None if stage is None else [stage])
        if not latest:
            raise ValueError(f"model {name!r} has no version" + ("" if stage is None else f" in stage {stage!r}"))
        version = str(max(int(v.version) for v in latest))
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
    with _COLLECTOR.paused():
        is_registry = settings.model_uri.startswith("models:/")
        registry = registry_client(settings.tracking_uri) if is_registry and settings.tracking_uri else None
        source = resolve_source(settings, registry)
        local, via = fetch_model(source, settings, registry, download_root)
        metadata = read_mlmodel(local)
        schema = schema_from_inputs_json(metadata.signature_inputs)
        runner = _build_runner(local, metadata, schema, settings)
        references = load_references(source, registry, schema.features) if via == "rest" else {}
    log.info(
        "model loaded",
        extra={"fields": {"model": source.name, "version": source.version, "runner": runner.description, "files": via}},
    )
    return LoadedModel(source=source, schema=schema, runner=runner, local_path=local, references=references)


def load_references(
    source: ModelSource, registry: RegistryClient | None, features: tuple[str, ...]
) -> dict[str, FeatureReference]:
    """The training reference of the version's run, read through the artifact proxy; {} when there is none
    or it cannot be used (the reason is logged: the model serves all the same, without drift bins)."""
    if registry is None:
        return {}
    try:
        run_uri = registry.run_artifact_uri(source.name, source.version)
        proxied = proxied_artifacts(f"{run_uri}/{REFERENCE_DIR}", registry.connection) if run_uri else None
        if proxied is None:
            return {}
        path = f"{SERVICE_PATH}/{urllib.parse.quote(proxied.root)}/{REFERENCE_FILE}"
        return parse_reference(read_bounded(proxied.connection, path, REFERENCE_MAX_BYTES), features)
    except (RegistryError, ReferenceError) as error:
        log.warning("no training reference for drift bins: %s", error)
        return {}


def fetch_model(
    source: ModelSource, settings: Settings, registry: RegistryClient | None, download_root: Path | None = None
) -> tuple[Path, str]:
    """The model's directory and how it got there: `local` (read in place), `rest` (artifact proxy) or `mlflow`."""
    local = local_model_dir(source.download_uri)
    if local is not None:
        return local, "local"
    proxied = None
    if registry is not None and source.artifact_uri is not None:
        proxied = proxied_artifacts(source.artifact_uri, registry.connection)
    root = download_root or Path(tempfile.mkdtemp(prefix="modelpilot-model-"))
    if proxied is not None:
        download_tree(proxied, root, on_file=_import_torch_early_for(root))
        write_registered_model_meta(root, source.name, source.version)
        return root, "rest"
    mlflow = _mlflow(settings)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=source.download_uri, dst_path=str(root))), "mlflow"


def _import_torch_early_for(model_dir: Path) -> Callable[[str], None]:
    """Once `MLmodel` is in and names the pytorch flavor, import torch in a thread while the rest downloads.

    The import is CPU work and the download mostly waiting, so on one CPU they overlap; the loading thread's
    own `import torch` later waits for this one to finish.
    """

    def on_file(relative: str) -> None:
        if relative != MLMODEL_FILE:
            return
        try:
            needs_torch = "pytorch" in read_mlmodel(model_dir).flavors
        except (OSError, ValueError):
            return  # reported by the read after the download
        if needs_torch and "torch" not in sys.modules:
            threading.Thread(target=_import_torch, name="import-torch", daemon=True).start()

    return on_file


def _import_torch() -> None:
    with contextlib.suppress(Exception):  # the loading thread's own import reports any failure
        import torch  # noqa: F401


def local_model_dir(uri: str) -> Path | None:
    """A plain path or `file://` URI as a directory read in place (as mlflow does); None for other URIs."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme == "file" and parsed.netloc in {"", "localhost"} and not parsed.query:
        path = Path(urllib.request.url2pathname(parsed.path))
    elif not parsed.scheme:
        path = Path(uri).expanduser()
    else:
        return None
    if not path.exists():
        raise FileNotFoundError(f"the model path {uri} does not exist")
    return path.resolve() if path.is_dir() else None


def _build_runner(local: Path, metadata: MLmodel, schema: InputSchema, settings: Settings) -> Runner:
    flavors = metadata.flavors
    if "pytorch" in flavors and schema.numeric:
        config = flavors["pytorch"]
        data_dir = local / str(config.get("model_data") or "data")
        serialization = "pt2" if (data_dir / PT2_FILE).exists() else "pickle"
        device = torch_device(settings.device)
        configure_torch_threads(settings.torch_threads)
        candidates = [warmup_features(schema), *(_random_rows(schema, rows) for rows in (3, 5))]
        samples = [s for s in candidates if isinstance(s, np.ndarray)]
        module, gates = None, None
        if serialization == "pt2":
            module, gates = load_pt2_programs(local, config, device, samples, settings)
        if module is None:
            _mlflow(settings)
            import mlflow.pytorch

            module = mlflow.pytorch.load_model(str(local), weights_only=False)
        if serialization == "pickle":
            module.eval()
        if device != "cpu":
            module = module.to(device)
            gates = None if gates is None else gates.to(device)
        return TorchRunner(
            module,
            device=device,
            serialization=serialization,
            column_output=not schema.is_tensor,
            samples=samples,
            gates=gates,
        )
    if "python_function" not in flavors:
        raise ValueError(f"the model has flavors {sorted(flavors)} and none this server can run")
    _mlflow(settings)
    import mlflow.pyfunc

    if "pytorch" in flavors:
        configure_torch_threads(settings.torch_threads)
    model = mlflow.pyfunc.load_model(str(local))
    return PyfuncRunner(model, as_matrix=schema.is_tensor, column_names=schema.column_names)


def load_pt2_programs(
    model_dir: Path, config: dict[str, Any], device: str, samples: list[np.ndarray[Any, Any]], settings: Settings
) -> tuple[Any | None, Any | None]:
    """The model's forward and its gates program (see `gates_program`), each None when absent or left to mlflow.

    On CPU both are deserialised in a child process and served as flat programs (`pt2_child`), so that this
    process never imports torch.export's deserialiser; a program the child cannot flatten, every program on
    another device, and all with `pt2_loader` set to `server` are `torch.export.load`ed here.
    """
    archive = vouched_pt2_archive(model_dir / str(config.get("model_data") or "data"), config)
    gates_archive = vouched_gates_archive(model_dir, config)
    archives = {name: path for name, path in (("model", archive), ("gates", gates_archive)) if path is not None}
    flat: dict[str, Any] = {}
    if archives and samples and device == "cpu" and settings.pt2_loader != "server":
        flat = load_flat_programs(archives, samples, settings.load_timeout_seconds, settings.pt2_loader)
    module = flat.get("model") or (None if archive is None else load_exported_module(archive))
    gates = flat.get("gates") or (None if gates_archive is None else load_exported_module(gates_archive))
    return module, gates


def _mlflow(settings: Settings) -> Any:
    """mlflow with the tracking and registry URIs from the settings; imported on first need only."""
    import mlflow
    import mlflow.artifacts

    if settings.tracking_uri:
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.tracking_uri)
    return mlflow


class _CollectorPause:
    """The cyclic garbage collector off while a model loads, then the survivors frozen.

    Importing torch and `torch.export.load` allocate ~600k long-lived objects; with the collector on, its
    full passes over them cost about a second of a one-CPU cold start, and the first pass after re-enabling
    it another 0.3 s. Frozen objects are never scanned again (`gc.freeze`); the price is that the cyclic
    garbage those imports leave (~10k objects, ~10 MB for the torch stack) stays for the life of the process,
    as collecting it first would cost that 0.3 s again. They are unfrozen at exit so that interpreter
    shutdown still finalises them. Loads may overlap (tests load several models at once):
    the first one in turns the collector off, the last one out turns it back on if it was on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._was_enabled = False
        self._unfreeze_registered = False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self._lock:
            if self._active == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._active += 1
        loaded = False
        try:
            yield
            loaded = True
        finally:
            with self._lock:
                self._active -= 1
                if loaded:
                    gc.freeze()
                    if not self._unfreeze_registered:
                        atexit.register(gc.unfreeze)
                        self._unfreeze_registered = True
                if self._active == 0 and self._was_enabled:
                    gc.enable()


_COLLECTOR = _CollectorPause()


def _random_rows(schema: InputSchema, rows: int) -> np.ndarray[Any, Any]:
    """Rows of a numeric schema with varied values (fixed seed), for checking a faster forward against the module."""
    shape = (rows, *schema.row_shape) if schema.is_tensor else (rows, schema.width)
    dtype = np.dtype(schema.tensor_dtype if schema.is_tensor else np.float32)
    values = np.random.default_rng(rows).normal(scale=3.0, size=shape)
    if dtype.kind == "b":
        return values > 0
    return np.abs(values).astype(dtype) if dtype.kind == "u" else values.astype(dtype)


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

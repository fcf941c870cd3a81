"""The mlflow-free loading path against a real `mlflow server`: registry REST, artifact proxy, pt2, fallbacks."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow import MlflowClient
from mlflow import pytorch as mlflow_pytorch
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException
from starlette.testclient import TestClient

from modelpilot.inference.app import create_app
from modelpilot.inference.artifacts_mlmodel import read_mlmodel
from modelpilot.inference.artifacts_pt2 import load_pt2_module, unvouched_record
from modelpilot.inference.loading import fetch_model, load_model, resolve_source
from modelpilot.inference.model import ServedModel
from modelpilot.inference.registry_rest import RegistryClient, registry_client
from modelpilot.inference.settings import Settings
from tests.api.inference.conftest import settings_for
from tests.api.inference.models import LoggedModels, sample_rows
from tests.support.mlflow_server import MlflowServer
from tests.support.processes import free_port

PINNED = "loading-pins"


@pytest.fixture(scope="module")
def client(mlflow: MlflowServer, logged: LoggedModels) -> MlflowClient:
    """MLflow's own client on the test server."""
    return MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url)


@pytest.fixture(scope="module")
def registry(mlflow: MlflowServer, logged: LoggedModels) -> RegistryClient:
    """The REST client loading uses."""
    rest = registry_client(mlflow.url)
    assert rest is not None
    return rest


@pytest.fixture(scope="module")
def pinned(client: MlflowClient, logged: LoggedModels) -> str:
    """A registered model with versions 1-3 of the pt2 MoE: alias `champion` → 2, stage Staging → 1."""
    source = client.get_model_version(logged.moe_pt2, "1").source
    run_id = client.get_model_version(logged.moe_pt2, "1").run_id
    assert source is not None
    assert source.startswith("models:/m-")
    client.create_registered_model(PINNED)
    for _ in range(3):
        client.create_model_version(PINNED, source, run_id=run_id, model_id=source.removeprefix("models:/"))
    client.set_registered_model_alias(PINNED, "champion", "2")
    client.transition_model_version_stage(PINNED, "1", "Staging")
    return PINNED


@pytest.fixture
def pickle_disallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pickle deserialization turned off, so pt2 archives are checked (mlflow's default is to allow it)."""
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _forward(module: Any, rows: int = 8) -> torch.Tensor:
    with torch.inference_mode():
        return module(torch.from_numpy(sample_rows(rows)))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("suffix", "version"), [("/3", "3"), ("@champion", "2"), ("/Staging", "1"), ("/staging", "1"), ("/latest", "3")]
)
def test_rest_registry_pins_versions_aliases_and_stages_like_mlflow(
    mlflow: MlflowServer, client: MlflowClient, registry: RegistryClient, pinned: str, suffix: str, version: str
) -> None:
    source = resolve_source(Settings(model_uri=f"models:/{pinned}{suffix}", tracking_uri=mlflow.url), registry)
    through_mlflow = resolve_source(Settings(model_uri=f"models:/{pinned}{suffix}", tracking_uri=mlflow.url))
    assert (source.name, source.version, source.download_uri) == (pinned, version, f"models:/{pinned}/{version}")
    assert (through_mlflow.name, through_mlflow.version) == (pinned, version)
    assert source.artifact_uri == client.get_model_version_download_uri(pinned, version)
    assert source.artifact_uri is not None
    assert source.artifact_uri.startswith("mlflow-artifacts:/")


def test_rest_download_is_the_same_files_as_mlflows(
    mlflow: MlflowServer, registry: RegistryClient, logged: LoggedModels, tmp_path: Path
) -> None:
    for name in (logged.moe_pt2, logged.moe_pickle, logged.rules_pyfunc):
        settings = settings_for(mlflow, name)
        ours, via = fetch_model(resolve_source(settings, registry), settings, registry, tmp_path / name / "rest")
        theirs = mlflow_download(f"models:/{name}/1", tmp_path / name / "mlflow", mlflow.url)
        assert via == "rest"
        assert _tree(ours) == _tree(theirs)
        assert "MLmodel" in _tree(ours)


def mlflow_download(uri: str, destination: Path, tracking_uri: str) -> Path:
    """What `mlflow.artifacts.download_artifacts` makes of `uri`."""
    destination.mkdir(parents=True)
    path = download_artifacts(
        artifact_uri=uri, dst_path=str(destination), tracking_uri=tracking_uri, registry_uri=tracking_uri
    )
    return Path(path)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("models:/moe-pt2@nope", "RegistryError: model 'moe-pt2' has no alias 'nope'"),
        ("models:/no-such-model@champion", "RegistryError: model 'no-such-model' is not in the registry at http"),
        ("models:/moe-pt2/99", "RegistryError: model 'moe-pt2' has no version 99 in the registry at http"),
        ("models:/no-such-model/1", "RegistryError: model 'no-such-model' is not in the registry at http"),
        ("models:/moe-pt2/Production", "RegistryError: model 'moe-pt2' has no version in stage 'Production'"),
        ("models:/moe-pt2/Bogus", "RegistryHttpError: the MLflow server at http"),
    ],
)
def test_registry_failures_read_as_reasons(mlflow: MlflowServer, logged: LoggedModels, uri: str, reason: str) -> None:
    model = ServedModel(Settings(model_uri=uri, tracking_uri=mlflow.url))
    with pytest.raises(RuntimeError, match=reason.split(": ", 1)[1]):
        model.load()
    assert model.state == "failed"
    assert model.reason.startswith(reason), model.reason
    assert "mlflow" not in model.reason.split(":")[0].lower()


def test_an_unreachable_registry_reads_as_a_reason() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    model = ServedModel(Settings(model_uri="models:/moe-pt2/1", tracking_uri=url))
    with pytest.raises(RuntimeError, match="unreachable"):
        model.load()
    assert model.reason.startswith(f"RegistryError: the MLflow server at {url} is unreachable"), model.reason


@pytest.fixture(scope="module")
def local_sources(
    mlflow: MlflowServer, client: MlflowClient, logged: LoggedModels, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """`local-source` versions 1 (file:// URI) and 2 (plain path): files in a run of a local artifact store."""
    model = mlflow_download(f"models:/{logged.moe_pt2}/1", tmp_path_factory.mktemp("copy") / "m", mlflow.url)
    store = tmp_path_factory.mktemp("local-store")
    experiment = client.create_experiment("local-artifacts", artifact_location=store.as_uri())
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(model), artifact_path="model")
    client.set_terminated(run.info.run_id)
    source = f"{run.info.artifact_uri}/model"
    client.create_registered_model("local-source")
    client.create_model_version("local-source", source, run_id=run.info.run_id)
    client.create_model_version("local-source", source.removeprefix("file://"), run_id=run.info.run_id)
    return "local-source"


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_source_the_proxy_does_not_serve_loads_through_mlflow(
    mlflow: MlflowServer, registry: RegistryClient, local_sources: str, version: str, tmp_path: Path
) -> None:
    settings = settings_for(mlflow, local_sources, model_uri=f"models:/{local_sources}/{version}")
    source = resolve_source(settings, registry)
    assert source.artifact_uri is not None
    assert not source.artifact_uri.startswith("mlflow-artifacts:")
    local, via = fetch_model(source, settings, registry, tmp_path / "fetched")
    assert via == "mlflow"
    assert (local / "data" / "model.pt2").is_file()
    loaded = load_model(settings)
    assert (loaded.source.name, loaded.source.version) == (local_sources, version)
    assert loaded.runner.description == "pytorch (pt2) on cpu, flat graph"
    reference = mlflow_pytorch.load_model(f"models:/{local_sources}/{version}")
    assert torch.equal(_forward(loaded.runner.module), _forward(reference))  # type: ignore[attr-defined]


@pytest.mark.parametrize("allow_pickle", [None, "false"])
def test_loading_a_pt2_model_imports_neither_mlflow_nor_the_export_deserialiser(
    mlflow: MlflowServer, logged: LoggedModels, allow_pickle: str | None
) -> None:
    code = (
        "import json, sys\n"
        "from modelpilot.inference.loading import load_model, warmup_features\n"
        "from modelpilot.inference.settings import Settings\n"
        f"loaded = load_model(Settings(model_uri='models:/{logged.moe_pt2}@champion', tracking_uri='{mlflow.url}'))\n"
        "loaded.runner.run(warmup_features(loaded.schema), want_gates=False, params=None)\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'pandas', 'pyarrow', 'sklearn', 'sympy',"
        " 'networkx'} | {'torch._dynamo'} & set(sys.modules))\n"
        "print(json.dumps({'heavy': heavy, 'runner': loaded.runner.description, 'version': loaded.source.version}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"}
    if allow_pickle is not None:  # false: the archive is checked first
        env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = allow_pickle
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {"heavy": [], "runner": "pytorch (pt2) on cpu, flat graph", "version": "1"}


@pytest.fixture(scope="module")
def pt2_model(mlflow: MlflowServer, logged: LoggedModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pt2 MoE as mlflow downloads it."""
    return mlflow_download(f"models:/{logged.moe_pt2}/1", tmp_path_factory.mktemp("pt2") / "m", mlflow.url)


@pytest.mark.usefixtures("pickle_disallowed")
def test_the_pt2_module_is_what_mlflow_pytorch_loads(pt2_model: Path) -> None:
    config = read_mlmodel(pt2_model).flavors["pytorch"]
    ours = load_pt2_module(pt2_model / "data", config)
    theirs = mlflow_pytorch.load_model(str(pt2_model))
    assert ours is not None
    assert isinstance(ours, torch.fx.GraphModule)
    assert isinstance(theirs, torch.fx.GraphModule)
    assert str(ours.graph) == str(theirs.graph)
    assert torch.equal(_forward(ours), _forward(theirs))
    assert torch.equal(_forward(ours, 1), _forward(theirs, 1)[:1])


def _rewrite_pt2(model: Path, destination: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """A copy of the model directory whose pt2 archive's records went through `change`."""
    copy = destination / "model"
    for path in model.rglob("*"):
        if path.is_file():
            target = copy / path.relative_to(model)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    archive = copy / "data" / "model.pt2"
    with zipfile.ZipFile(archive) as source:
        records = {info.filename: source.read(info) for info in source.infolist()}
    change(records)
    with zipfile.ZipFile(archive, "w") as rewritten:
        for name, content in records.items():
            rewritten.writestr(name, content)
    return copy


def _pickle_first_weight(records: dict[str, bytes], payload: object) -> None:
    """Mark weight_0 as pickled and store `payload`, torch.save'd, in its place."""
    config_name = next(n for n in records if n.endswith("data/weights/model_weights_config.json"))
    config = json.loads(records[config_name])
    entry = next(e for e in config["config"].values() if e["path_name"] == "weight_0")
    entry["use_pickle"] = True
    records[config_name] = json.dumps(config).encode()
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    records[config_name.replace("model_weights_config.json", "weight_0")] = buffer.getvalue()


@pytest.mark.usefixtures("pickle_disallowed")
def test_the_pt2_check_accepts_and_refuses_what_mlflows_does(pt2_model: Path, tmp_path: Path) -> None:
    from mlflow.pytorch import _validate_pt2_archive_is_pickle_free

    def weight_0(records: dict[str, bytes]) -> torch.Tensor:
        config_name = next(n for n in records if n.endswith("model_weights_config.json"))
        raw = records[config_name.replace("model_weights_config.json", "weight_0")]
        return torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(16, 20).clone()

    with zipfile.ZipFile(pt2_model / "data" / "model.pt2") as archive:
        original = weight_0({i.filename: archive.read(i) for i in archive.infolist()})
    tensor_pickle = _rewrite_pt2(
        pt2_model, tmp_path / "tensor", lambda records: _pickle_first_weight(records, torch.nn.Parameter(original))
    )
    foreign_pickle = _rewrite_pt2(
        pt2_model, tmp_path / "foreign", lambda records: _pickle_first_weight(records, Fraction(1, 3))
    )

    for accepted in (pt2_model, tensor_pickle):
        _validate_pt2_archive_is_pickle_free(str(accepted / "data" / "model.pt2"))
        assert unvouched_record(accepted / "data" / "model.pt2", torch) is None
    # A pickled tensor is loaded by the fast path and gives the same module.
    config = read_mlmodel(tensor_pickle).flavors["pytorch"]
    module = load_pt2_module(tensor_pickle / "data", config)
    assert module is not None
    assert torch.equal(_forward(module), _forward(mlflow_pytorch.load_model(str(pt2_model))))

    refused = foreign_pickle / "data" / "model.pt2"
    with pytest.raises(MlflowException, match="weight_0"):
        _validate_pt2_archive_is_pickle_free(str(refused))
    assert unvouched_record(refused, torch) == "model/data/weights/weight_0"
    assert load_pt2_module(foreign_pickle / "data", read_mlmodel(foreign_pickle).flavors["pytorch"]) is None
    # The whole load leaves the archive to mlflow, which refuses it with its own reason.
    with pytest.raises(MlflowException, match="pickle"):
        load_model(Settings(model_uri=str(foreign_pickle)))


def test_a_local_model_directory_is_read_in_place(pt2_model: Path) -> None:
    loaded = load_model(Settings(model_uri=str(pt2_model), model_name="local-moe"))
    assert loaded.local_path == pt2_model.resolve()
    assert (loaded.source.name, loaded.runner.description) == ("local-moe", "pytorch (pt2) on cpu, flat graph")


def test_a_broken_pt2_archive_keeps_the_server_unready_with_the_reason(pt2_model: Path, tmp_path: Path) -> None:
    broken = _rewrite_pt2(pt2_model, tmp_path, lambda records: records.clear())
    (broken / "data" / "model.pt2").write_bytes(b"not a zip archive")
    settings = Settings(model_uri=str(broken), load_retry_seconds=60, metrics_port=0, grpc_port=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 120
        while client.get("/readyz").json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "failed"
        assert ready.json()["reason"].startswith("ChildLoadError: model.pt2 could not be loaded: ")
        assert client.get("/healthz").status_code == 200

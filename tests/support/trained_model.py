"""A small mixture-of-experts model trained by the real `modelpilot-train`, and `modelpilot-serve` serving it as a
process: what the gates tests and the dashboard's try-it page run against."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from mlflow import MlflowClient

from modelpilot.training.data import FEATURES, generate_flows
from modelpilot.training.model import MixtureOfExperts
from tests.api.training.runner import ROWS, TrainRunner
from tests.support.processes import free_port, running

# Short: one epoch and no stability retraining are enough for a model whose gates are checked, not its quality.
QUICK = ("--rows", ROWS, "--epochs", "1", "--stability-seeds", "0")


@dataclass(frozen=True)
class TrainedModel:
    """A registered version trained by modelpilot-train, and how its experts are shaped."""

    name: str
    version: str
    experts: int
    hidden_units: int


def train_small_model(tracking_uri: str, name: str, folder: Path) -> TrainedModel:
    """Run modelpilot-train once for `name` on generated flows; the version it registered."""
    cache = Path.home() / ".cache" / "modelpilot" / "pycache"
    cache.mkdir(parents=True, exist_ok=True)
    run = TrainRunner(tracking_uri, cache, folder)("--model-name", name, *QUICK)
    assert run.returncode in (0, 3), run.stderr[-3000:]  # 3: registered but gated out, still a model
    result = run.last_stdout_line
    params = MlflowClient(tracking_uri).get_run(result["run_id"]).data.params
    return TrainedModel(name, str(result["version"]), int(params["experts"]), int(params["hidden_units"]))


def sample_flows(rows: int, seed: int = 99) -> np.ndarray:
    """Feature rows from the training data's generator, float32, in the model's feature order."""
    return np.ascontiguousarray(generate_flows(rows, seed=seed)[FEATURES].to_numpy(), dtype=np.float32)


def eager_module(model: TrainedModel, tracking_uri: str) -> MixtureOfExperts:
    """The eager module the registered version was exported from: its weights read from the pt2 program."""
    exported = torch.export.load(str(model_dir(model, tracking_uri) / "data" / "model.pt2")).module()
    eager = MixtureOfExperts(len(FEATURES), n_experts=model.experts, hidden_units=model.hidden_units)
    eager.load_state_dict(exported.state_dict())
    return eager.eval()


def model_dir(model: TrainedModel, tracking_uri: str) -> Path:
    """The registered version's files, downloaded."""
    import mlflow.artifacts

    registry = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    uri = registry.get_model_version_download_uri(model.name, model.version)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=tracking_uri))


@dataclass(frozen=True)
class ServingProcess:
    """A running `modelpilot-serve`."""

    url: str
    host: str
    port: int


@contextmanager
def serving_process(
    tracking_uri: str, model: TrainedModel, log: Path, host: str = "127.0.0.1"
) -> Iterator[ServingProcess]:
    """`modelpilot-serve` for the model on `host` and a free port, as the pod runs it; stopped on exit."""
    port = free_port()
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MODELPILOT_MODEL_URI": f"models:/{model.name}/{model.version}",
        "MODELPILOT_HOST": host,
        "MODELPILOT_PORT": str(port),
        "MODELPILOT_METRICS_PORT": str(free_port()),
        "MODELPILOT_GRPC_PORT": str(free_port()),
    }
    serve = str(Path(sys.executable).parent / "modelpilot-serve")
    url = f"http://{host}:{port}"
    with running([serve], log=log, env=env, ready_url=f"{url}/readyz", timeout=180):
        yield ServingProcess(url, host, port)


def torch_gates(module: MixtureOfExperts, rows: np.ndarray) -> np.ndarray:
    """The eager module's gating weights for `rows`."""
    with torch.inference_mode():
        gates: np.ndarray = module.gates(torch.from_numpy(rows)).numpy()
    return gates

"""pt2 models deserialised in a child process: the server gets flat programs that answer exactly as the exported
programs, never imports torch.export's deserialiser, and reports a broken archive or a slow load as a failed load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from modelpilot.inference.flatgraph import FlatPlan, compile_plan, flat_plan
from modelpilot.inference.flatplan_files import UnsupportedPlanError, read_plan, write_plan
from modelpilot.inference.loading import load_model
from modelpilot.inference.model import ServedModel
from modelpilot.inference.pt2_child import ChildLoadError, load_flat_programs
from modelpilot.inference.settings import Settings
from modelpilot.training.model import GatingView, MixtureOfExperts
from tests.unit.inference.test_runners import Reshaping

ROOT = Path(__file__).parents[3]
SOURCES = os.pathsep.join(str(ROOT / part / "src") for part in ("inference", "training"))
WIDTH = 20
HEAVY = ("sympy", "torch._dynamo", "networkx")


def _rows(count: int, seed: int = 7) -> np.ndarray[Any, Any]:
    return (np.random.default_rng(seed).normal(size=(count, WIDTH)) * 3).astype(np.float32)


@pytest.fixture(scope="module")
def moe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pt2 MoE model directory as the training entrypoint logs it: the model and its gates program."""
    torch.manual_seed(0)
    model = MixtureOfExperts(WIDTH)
    model.fit_normalisation(torch.from_numpy(_rows(256, seed=3)))
    model.eval()
    directory = tmp_path_factory.mktemp("moe")
    (directory / "data").mkdir()
    (directory / "extra_files").mkdir()
    example = (torch.from_numpy(_rows(4)),)
    dynamic = ({0: torch.export.Dim.AUTO},)
    torch.export.save(torch.export.export(model, example, dynamic_shapes=dynamic), directory / "data" / "model.pt2")
    gates = torch.export.export(GatingView(model), example, dynamic_shapes=dynamic)
    torch.export.save(gates, directory / "extra_files" / "gates.pt2")
    spec = [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, WIDTH]}}]
    mlmodel = {
        "flavors": {
            "pytorch": {
                "model_data": "data",
                "pytorch_version": str(torch.__version__),
                "extra_files": [{"path": "extra_files/gates.pt2"}],
            },
            "python_function": {"loader_module": "mlflow.pytorch", "data": "data"},
        },
        "signature": {"inputs": json.dumps(spec)},
    }
    (directory / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return directory


def _exported_answers(directory: Path, rows: np.ndarray[Any, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """What the exported programs themselves answer (the path the server took before)."""
    model = torch.export.load(directory / "data" / "model.pt2").module()
    gates = torch.export.load(directory / "extra_files" / "gates.pt2").module()
    with torch.inference_mode():
        return model(torch.from_numpy(rows)), gates(torch.from_numpy(rows))


@pytest.mark.parametrize("loader", ["fork", "spawn", "server"])
def test_every_loader_serves_exactly_what_the_exported_programs_answer(moe_dir: Path, loader: str) -> None:
    loaded = load_model(Settings(model_uri=str(moe_dir), pt2_loader=loader))
    assert loaded.runner.description == "pytorch (pt2) on cpu, flat graph, gates program"
    rows = _rows(37, seed=11)
    expected, expected_gates = _exported_answers(moe_dir, rows)
    answer = loaded.runner.run(rows, want_gates=True, params=None)
    assert answer.gates is not None
    assert torch.equal(torch.from_numpy(answer.values), expected)
    assert torch.equal(torch.from_numpy(answer.gates), expected_gates)


def test_a_server_loading_a_pt2_model_never_imports_the_export_deserialiser(moe_dir: Path) -> None:
    code = f"""
import json, sys, threading
import numpy as np
from modelpilot.inference.model import ServedModel
from modelpilot.inference.settings import Settings
model = ServedModel(Settings(model_uri={str(moe_dir)!r}))
# As the server does: the load runs in a worker thread, beside the event loop's.
worker = threading.Thread(target=model.load)
worker.start()
worker.join()
rows = np.asarray({_rows(5, seed=2).tolist()!r}, dtype=np.float32)
answer = model.predict(rows, want_gates=True)
print(json.dumps({{"state": model.state, "heavy": [m for m in {HEAVY!r} if m in sys.modules],
    "values": answer.values.tolist(), "gates": answer.gates.tolist()}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": SOURCES},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["state"], result["heavy"]) == ("ready", [])
    expected, expected_gates = _exported_answers(moe_dir, _rows(5, seed=2))
    # JSON carries float32 values exactly (as doubles).
    assert torch.equal(torch.tensor(result["values"], dtype=torch.float32), expected)
    assert torch.equal(torch.tensor(result["gates"], dtype=torch.float32), expected_gates)


def _copy_with_archive(source: Path, destination: Path, content: bytes) -> Path:
    for path in source.rglob("*"):
        if path.is_file():
            target = destination / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    (destination / "data" / "model.pt2").write_bytes(content)
    return destination


@pytest.mark.parametrize("loader", ["fork", "spawn"])
def test_a_broken_archive_fails_the_load_with_the_reason(moe_dir: Path, tmp_path: Path, loader: str) -> None:
    broken = _copy_with_archive(moe_dir, tmp_path / "broken", b"PK\x03\x04 not a zip archive")
    model = ServedModel(Settings(model_uri=str(broken), pt2_loader=loader))
    with pytest.raises(ChildLoadError, match=r"model\.pt2 could not be loaded: "):
        model.load()
    assert model.state == "failed"
    assert model.reason.startswith("ChildLoadError: model.pt2 could not be loaded: ")
    assert not model.ready


@pytest.mark.parametrize("loader", ["fork", "spawn"])
def test_a_load_slower_than_the_timeout_is_stopped(moe_dir: Path, loader: str) -> None:
    settings = Settings(model_uri=str(moe_dir), pt2_loader=loader, load_timeout_seconds=0.05)
    with pytest.raises(ChildLoadError, match=r"took more than 0\.05 s \(MODELPILOT_LOAD_TIMEOUT_SECONDS\)"):
        load_model(settings)


class TwoInputs(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


def test_a_program_without_a_flat_plan_is_left_to_the_server(tmp_path: Path) -> None:
    archive = tmp_path / "two.pt2"
    torch.export.save(torch.export.export(TwoInputs(), (torch.ones(2, 3), torch.ones(2, 3))), archive)
    assert load_flat_programs({"model": archive}, [np.ones((2, 3), dtype=np.float32)], timeout=120) == {"model": None}


def test_a_plan_read_back_from_its_files_answers_as_the_module(tmp_path: Path) -> None:
    batch = torch.export.Dim("batch")
    module = torch.export.export(Reshaping().eval(), (torch.randn(4, 3),), dynamic_shapes=({0: batch},)).module()
    plan = flat_plan(module)
    assert plan is not None
    write_plan(plan, tmp_path, "reshaping")
    flat = compile_plan(read_plan(tmp_path, "reshaping"))
    with torch.inference_mode():
        for rows in (2, 5):
            sample = torch.randn(rows, 3) * 3
            for got, expected in zip(flat(sample), module(sample), strict=True):
                assert torch.equal(got, expected)
        with pytest.raises(Exception, match="Guard failed"):
            flat(torch.zeros(2, 4))


def test_constants_torch_alone_cannot_read_back_are_refused(tmp_path: Path) -> None:
    offset = 2.0

    def closure(x: Any) -> Any:
        return x + offset

    def uses_a_foreign_global(x: Any) -> Any:
        return np.add(x, 1)

    for constant, reason in [
        (closure, "closure"),
        (uses_a_foreign_global, "uses np"),
        (object(), "object"),
        (Path("x"), "PosixPath"),
    ]:
        plan = FlatPlan(source="def flat_forward(x):\n    return _c0(x)", constants={"_c0": constant})
        with pytest.raises(UnsupportedPlanError, match=reason):
            write_plan(plan, tmp_path, "refused")

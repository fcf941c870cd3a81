"""What a ready server does not hold: modules only some paths need stay unimported (each check runs in a fresh
interpreter, as the pod's process starts)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).parents[3]
# This checkout's packages, whatever checkout the environment's editable install points at.
SOURCES = os.pathsep.join(str(ROOT / part / "src") for part in ("inference", "training"))


def _run(code: str) -> dict[str, object]:
    """Run `code` in a fresh interpreter; it prints one JSON object last."""
    env = {**os.environ, "PYTHONPATH": SOURCES}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_server_without_a_prediction_log_never_imports_psycopg() -> None:
    code = """
import json, sys
from modelpilot.inference.app import create_app
from modelpilot.inference.settings import Settings
app = create_app(Settings(model_uri="models:/m/1"))
print(json.dumps({"psycopg": "psycopg" in sys.modules, "labels": any(
    getattr(route, "path", "") == "/v1/labels" for route in app.app.routes)}))
"""
    assert _run(code) == {"psycopg": False, "labels": False}


class _Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x))


def test_loading_an_exported_program_leaves_triton_unimported_and_importable(tmp_path: Path) -> None:
    archive = tmp_path / "model.pt2"
    torch.manual_seed(0)
    model = _Small().eval()
    torch.export.save(torch.export.export(model, (torch.randn(3, 4),)), str(archive))
    code = f"""
import json, sys, torch
from modelpilot.inference.artifacts_pt2 import load_exported_module
module = load_exported_module(__import__("pathlib").Path({str(archive)!r}))
x = torch.ones(3, 4)
loaded = "triton" in sys.modules
try:
    import triton
    importable = True
except ImportError:
    importable = False
print(json.dumps({{"triton_loaded": loaded, "importable": importable, "out": module(x).tolist()}}))
"""
    result = _run(code)
    assert result["triton_loaded"] is False
    with torch.inference_mode():
        assert result["out"] == model(torch.ones(3, 4)).tolist()
    # Whoever needs triton later still gets it (when it is installed at all).
    assert result["importable"] is (importlib.util.find_spec("triton") is not None)
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed here: only the first half is shown")

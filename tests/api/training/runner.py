"""Run the `modelpilot-train` console script as the operator's Job does: a process, env vars, a result file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The generated data set the end-to-end runs train on: small enough for well under a minute per run on a CPU.
ROWS = "4000"


@dataclass(frozen=True)
class TrainRun:
    """What one `modelpilot-train` process left behind."""

    returncode: int
    stdout: str
    stderr: str
    result_file: Path

    @property
    def last_stdout_line(self) -> dict[str, Any]:
        """The result JSON the entrypoint prints last."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert lines, f"no stdout; stderr:\n{self.stderr[-3000:]}"
        parsed: dict[str, Any] = json.loads(lines[-1])
        return parsed

    @property
    def written_result(self) -> dict[str, Any]:
        """The result JSON written to MODELPILOT_RESULT_FILE."""
        parsed: dict[str, Any] = json.loads(self.result_file.read_text())
        return parsed

    @property
    def error_line(self) -> str:
        """The last stderr line."""
        return self.stderr.strip().splitlines()[-1]


Train = Callable[..., TrainRun]


@dataclass
class TrainRunner:
    """Starts modelpilot-train processes against one MLflow server, each with its own result file."""

    tracking_uri: str
    bytecode_cache: Path
    folder: Path
    runs: int = 0

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600.0) -> TrainRun:
        """Run modelpilot-train with `args` and extra `env`; what it left behind."""
        return self._run([self._entrypoint(), *args], env, timeout)

    def distributed(
        self, workers: int, *args: str, env: dict[str, str] | None = None, timeout: float = 900.0
    ) -> TrainRun:
        """Run modelpilot-train as `workers` ranks on this machine (gloo over loopback), through the launcher
        the training Job uses; what they left behind."""
        launcher = [sys.executable, "-m", "modelpilot.training.launch", "--standalone"]
        command = [*launcher, f"--nproc-per-node={workers}", "--no-python", self._entrypoint(), *args]
        return self._run(command, env, timeout)

    @staticmethod
    def _entrypoint() -> str:
        executable = shutil.which("modelpilot-train", path=str(Path(sys.executable).parent))
        assert executable, "the modelpilot-train console script is not installed in this environment"
        return executable

    def _run(self, command: list[str], env: dict[str, str] | None, timeout: float) -> TrainRun:
        self.runs += 1
        result_file = self.folder / f"result-{self.runs}.json"
        environment = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        environment.update(
            MLFLOW_TRACKING_URI=self.tracking_uri,
            MODELPILOT_RESULT_FILE=str(result_file),
            PYTHONPYCACHEPREFIX=str(self.bytecode_cache),
        )
        environment.update(env or {})
        completed = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=timeout, check=False
        )
        return TrainRun(completed.returncode, completed.stdout, completed.stderr, result_file)

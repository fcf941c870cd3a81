"""`modelpilot-train`: train, log, register and gate one model version.

The last stdout line is the result JSON `{"run_id", "version", "gate", "reason"}` (also written to
MODELPILOT_RESULT_FILE, by default Kubernetes' /dev/termination-log inside a pod). Exit codes:
0 gate passed, 3 gate failed, 4 unusable data, 5 MLflow unreachable, 6 training diverged,
2 bad settings, 1 anything else. On an error the result file gets `{"error", "reason"}` and stderr
one line saying what went wrong.

Started by torchrun with several ranks, rank 0 does all of the above; the other ranks train with it, write
no result and exit with rank 0's exit code once it has one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pydantic import ValidationError

if TYPE_CHECKING:
    from modelpilot.training.distributed import Workers
    from modelpilot.training.settings import TrainSettings


class ExitCode(IntEnum):
    """Process exit codes, one per outcome a caller may act on differently."""

    GATE_PASSED = 0
    ERROR = 1
    BAD_SETTINGS = 2
    GATE_FAILED = 3
    DATA_ERROR = 4
    REGISTRY_UNREACHABLE = 5
    TRAINING_DIVERGED = 6


def quiet_mlflow_defaults() -> None:
    """MLflow client defaults suited to a batch job, unless the environment already chose."""
    # The client's own HTTP retries would otherwise wait minutes before an error surfaces;
    # reachability is checked up front with our own bounded retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    # The job's working directory is not the model's environment: do not ship a uv project found there.
    os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")
    os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def write_result(result: dict[str, str], result_file: str | None) -> None:
    """Write the result JSON to the result file, if any; a failure to write is reported, not fatal."""
    if not result_file:
        return
    try:
        Path(result_file).write_text(json.dumps(result) + "\n")
    except OSError as error:
        logging.getLogger(__name__).warning("cannot write the result to %s: %s", result_file, error)


def fail(code: ExitCode, kind: str, message: str, result_file: str | None) -> int:
    """Report an error on one stderr line and in the result file; the exit code."""
    one_line = " ".join(message.split())
    print(f"modelpilot-train: error: {one_line}", file=sys.stderr, flush=True)
    write_result({"error": kind, "reason": one_line}, result_file)
    return int(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the training entrypoint with `argv` (default: the command line); the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    quiet_mlflow_defaults()

    from modelpilot.training.settings import default_result_file, parse_settings

    try:
        settings = parse_settings(argv)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors())
        result_file = os.environ.get("MODELPILOT_RESULT_FILE") or default_result_file()
        return fail(ExitCode.BAD_SETTINGS, "BadSettings", f"invalid settings: {problems}", result_file)

    # Heavy imports (torch, mlflow) after the settings, so --help and bad flags answer at once.
    from modelpilot.training.distributed import LeaderFailedError, leader_exit_code, leave, workers_from_env

    workers = workers_from_env()
    # Only the leader reports: a follower's result would race the leader's in a shared result file.
    result_file = settings.result_file if workers.is_leader else None
    try:
        try:
            code = run_and_report(settings, workers, result_file)
        except LeaderFailedError:
            code = leader_exit_code(workers, int(ExitCode.ERROR))
        else:
            # Outcomes every rank reached together end with the leader's exit code on every rank. A follower
            # that failed alone (its data) just exits: the others' next collective then fails, so they stop too.
            if workers.is_leader or code in (ExitCode.GATE_PASSED, ExitCode.TRAINING_DIVERGED):
                code = leader_exit_code(workers, code)
    finally:
        leave()
    if workers.distributed:
        exit_without_teardown(code)
    return code


def exit_without_teardown(code: int) -> NoReturn:
    """End a rank of a distributed run with `code`, skipping the interpreter's teardown. The ranks have agreed on
    the code and left the process group; what remains is finalization, where torch's native threads (the process
    group's, the rendezvous store client's) can abort the process ("terminate called without an active
    exception"). The launcher would take that SIGABRT for the rank's outcome and stop the others with SIGTERM,
    so a failed gate (3) would end as 143."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_and_report(settings: TrainSettings, workers: Workers, result_file: str | None) -> int:
    """Run the pipeline as `workers` says; report its outcome (the leader's) and return the exit code."""
    from mlflow.exceptions import MlflowException

    from modelpilot.training.fit import TrainingDivergedError
    from modelpilot.training.pipeline import run
    from modelpilot.training.registry import RegistryUnreachableError
    from modelpilot.training.sources import DataError

    try:
        outcome = run(settings, workers)
    except DataError as error:
        return fail(ExitCode.DATA_ERROR, "DataError", str(error), result_file)
    except RegistryUnreachableError as error:
        return fail(ExitCode.REGISTRY_UNREACHABLE, "RegistryUnreachable", str(error), result_file)
    except TrainingDivergedError as error:
        return fail(ExitCode.TRAINING_DIVERGED, "TrainingDiverged", f"training diverged: {error}", result_file)
    except MlflowException as error:
        return fail(ExitCode.ERROR, "RegistryError", f"MLflow request failed: {error.message}", result_file)

    if outcome is None:  # a follower: the leader reports
        return int(ExitCode.GATE_PASSED)
    result = outcome.as_result()
    print(json.dumps(result), flush=True)
    write_result(result, result_file)
    if not outcome.gate_passed:
        print(f"modelpilot-train: quality gate failed for version {outcome.version}: {outcome.reason}",
              file=sys.stderr, flush=True)  # fmt: skip
        return int(ExitCode.GATE_FAILED)
    return int(ExitCode.GATE_PASSED)


if __name__ == "__main__":
    sys.exit(main())

"""A model's exported programs deserialised in a short-lived child process; the server compiles their flat plans.

`torch.export.load` imports sympy, torch._dynamo and, through torch._functorch, networkx: about 100 MiB resident
for the life of a server that only ever calls aten operators. So the server does not deserialise pt2 archives
itself: a child process loads each one, makes its flat plan (`flatgraph`), writes it (`flatplan_files`), reads
the files back and checks that the function compiled from them answers exactly (`torch.equal`) as the exported
module on the server's sample inputs. The server then compiles the same files with torch alone. A program the
child cannot flatten is reported with the reason and the server loads that one itself, as before. A child that
fails reports why and one that outlives the timeout is killed: either way the load fails with that reason (the
pod is not Ready) rather than hang.

The child is forked by default (`os.fork`, not multiprocessing, whose bootstrap in a process forked from a
worker thread of the server ends with exit code 1): it starts with torch imported, so the load costs about
the CPU it cost in the server, where a spawned child imports torch again (measured: 2.0-2.5 s of CPU in a
forked child, 6.6-6.8 s in a spawned one). The forked child drops the server's signal wake-up descriptor and
handlers, runs torch on one thread, never returns into the server's code and leaves with `os._exit`, so that
nothing it inherited from the server's other threads is used. `spawn` (a fresh interpreter running this
module) is there for platforms where forking a threaded process is not wanted; `server` loads in the server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from modelpilot.inference.flatgraph import FlatProgram

log = logging.getLogger("modelpilot.inference")

Pt2Loader = Literal["fork", "spawn", "server"]
REQUEST_FILE = "request.json"
RESULT_FILE = "result.json"
SAMPLES_FILE = "samples.pt"
_STDERR_TAIL = 2000


class ChildLoadError(RuntimeError):
    """The child process could not load an exported program (the message says why), or was too slow."""


def load_flat_programs(
    archives: dict[str, Path], samples: Sequence[np.ndarray[Any, Any]], timeout: float, how: Pt2Loader = "fork"
) -> dict[str, FlatProgram | None]:
    """For each named pt2 archive, its flat program, or None where the server has to load the program itself.

    Raises ChildLoadError when an archive cannot be loaded, or the child does not finish within `timeout` s.
    """
    import torch

    from modelpilot.inference.flatgraph import compile_plan
    from modelpilot.inference.flatplan_files import read_plan

    workdir = Path(tempfile.mkdtemp(prefix="modelpilot-pt2-"))
    try:
        torch.save([torch.from_numpy(np.ascontiguousarray(s)) for s in samples], workdir / SAMPLES_FILE)
        request = {"programs": {name: str(path) for name, path in archives.items()}}
        (workdir / REQUEST_FILE).write_text(json.dumps(request), encoding="utf-8")
        begin = time.perf_counter()
        result = _run_spawned(workdir, timeout) if how == "spawn" else _run_forked(workdir, timeout)
        if "error" in result:
            raise ChildLoadError(f"loading the exported programs failed: {result['error']}")
        programs: dict[str, FlatProgram | None] = {}
        for name, archive in archives.items():
            outcome = result["programs"].get(name) or {}
            if "error" in outcome:
                raise ChildLoadError(f"{archive.name} could not be loaded: {outcome['error']}")
            if not outcome.get("flat"):
                reason = outcome.get("reason", "no answer")
                log.info("exported program loaded in the server", extra={"fields": {"program": name, "why": reason}})
                programs[name] = None
                continue
            programs[name] = FlatProgram(compile_plan(read_plan(workdir, name)))
        seconds = round(time.perf_counter() - begin, 2)
        log.info("exported programs loaded in a child process", extra={"fields": {"seconds": seconds, "how": how}})
        return programs
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_forked(workdir: Path, timeout: float) -> dict[str, Any]:
    # What the server's streams hold would otherwise be written a second time by a child that logs.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the server's code
        code = 1
        try:
            _child(workdir, forked=True)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return _result(workdir, os.waitstatus_to_exitcode(status), "")
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise _too_slow(timeout)
        time.sleep(0.05)


def _run_spawned(workdir: Path, timeout: float) -> dict[str, Any]:
    # The child runs this package, wherever it is, whatever the interpreter's own path says.
    package_root = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "modelpilot.inference.pt2_child", str(workdir)]
    environment = {**os.environ, "PYTHONPATH": pythonpath}
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False, env=environment)
    except subprocess.TimeoutExpired as error:
        raise _too_slow(timeout) from error
    return _result(workdir, done.returncode, done.stderr.decode("utf-8", "replace"))


def _too_slow(timeout: float) -> ChildLoadError:
    return ChildLoadError(
        f"loading the exported programs took more than {timeout:g} s (MODELPILOT_LOAD_TIMEOUT_SECONDS); "
        "the loading process was stopped"
    )


def _result(workdir: Path, exit_code: int | None, stderr: str) -> dict[str, Any]:
    result_file = workdir / RESULT_FILE
    if exit_code != 0 or not result_file.is_file():
        tail = stderr.strip()[-_STDERR_TAIL:]
        raise ChildLoadError(
            f"the process loading the exported programs exited with code {exit_code}" + (f": {tail}" if tail else "")
        )
    result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
    return result


def _child(workdir: Path, forked: bool) -> None:
    """Load, flatten, write, re-read and check each program of the request; write what came of each."""
    if forked:
        # A signal to this process must not wake the server's event loop through the descriptor it inherited.
        signal.set_wakeup_fd(-1)
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_DFL)
    result: dict[str, Any] = {"programs": {}}
    try:
        _load_programs(workdir, result["programs"])
    except Exception as error:
        result["error"] = f"{type(error).__name__}: {error}"
    (workdir / RESULT_FILE).write_text(json.dumps(result), encoding="utf-8")


def _load_programs(workdir: Path, outcomes: dict[str, dict[str, Any]]) -> None:
    import torch

    from modelpilot.inference.artifacts_pt2 import load_exported_module
    from modelpilot.inference.flatgraph import compile_plan, flat_plan, same_results
    from modelpilot.inference.flatplan_files import UnsupportedPlanError, read_plan, write_plan
    from modelpilot.inference.runners import graph_forward

    # One thread: a forked child must not use the thread pool of the process it was forked from.
    torch.set_num_threads(1)
    request = json.loads((workdir / REQUEST_FILE).read_text(encoding="utf-8"))
    samples = torch.load(workdir / SAMPLES_FILE, weights_only=True)
    for name, archive in request["programs"].items():
        try:
            module = load_exported_module(Path(archive))
        except Exception as error:
            outcomes[name] = {"error": f"{type(error).__name__}: {error}"}
            return
        plan = flat_plan(module)
        if plan is None:
            outcomes[name] = {"flat": False, "reason": "the graph has calls a flat function cannot make"}
            continue
        try:
            write_plan(plan, workdir, name)
        except UnsupportedPlanError as error:
            outcomes[name] = {"flat": False, "reason": str(error)}
            continue
        if not same_results(compile_plan(read_plan(workdir, name)), graph_forward(module) or module, samples):
            outcomes[name] = {"flat": False, "reason": "the flat function does not answer as the module"}
            continue
        outcomes[name] = {"flat": True}


if __name__ == "__main__":
    _child(Path(sys.argv[1]), forked=False)

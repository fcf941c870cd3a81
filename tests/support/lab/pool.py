"""Warm inference-server processes, so a Deployment's server is up seconds after the Deployment appears."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import stop

WARM_SERVE = Path(__file__).with_name("warm_serve.py")


@dataclass(frozen=True)
class ServerProcess:
    """A started inference server process and the file its output goes to."""

    process: subprocess.Popen[bytes]
    log: Path


class WarmServerPool:
    """Keeps `size` interpreters that have imported the inference server and wait for their environment.

    `take(env)` hands the environment to the oldest spare (which may still be importing) and starts
    a replacement; the spare becomes the server. Thread-safe; `close()` stops the spares.
    """

    def __init__(self, root: Path, size: int = 2) -> None:
        self.root = root
        self.size = size
        self._spares: deque[ServerProcess] = deque()
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False
        root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._fill()

    def _spawn(self) -> ServerProcess:
        log = self.root / f"server-{next(self._numbers):03d}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, str(WARM_SERVE)],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # `stop` signals the whole group
            )
        return ServerProcess(process, log)

    def _fill(self) -> None:
        while not self._closed and len(self._spares) < self.size:
            self._spares.append(self._spawn())

    def take(self, env: Mapping[str, str]) -> ServerProcess:
        """A process that now serves with `env` added to its environment."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the server pool is closed")
            while self._spares and self._spares[0].process.poll() is not None:
                self._spares.popleft()  # died while waiting (e.g. killed from outside): skip it
            taken = self._spares.popleft() if self._spares else self._spawn()
            self._fill()
        assert taken.process.stdin is not None
        taken.process.stdin.write(json.dumps(dict(env)).encode() + b"\n")
        taken.process.stdin.close()
        return taken

    def close(self) -> None:
        """Stop the spares (idempotent); servers already taken belong to whoever took them."""
        with self._lock:
            self._closed = True
            spares, self._spares = list(self._spares), deque()
        for spare in spares:
            if spare.process.stdin is not None:
                spare.process.stdin.close()  # an empty line: the spare exits by itself
            stop(spare.process, grace=5.0)

"""A `modelpilot-serve` process that imports first and learns its settings later.

Importing torch and MLflow, and the modules torch.export loads lazily on the first exported
program, take most of an inference server's start-up: over fifteen seconds on a busy two-core
machine, against a quarter of a second to load the lab's model once they are in. The lab keeps a few
of these processes warm: each imports the server and round-trips a tiny exported program, then
blocks on stdin until it is given its environment as one JSON line, and from then on is exactly
`modelpilot-serve` with that environment.
"""

from __future__ import annotations

import io
import json
import os
import sys

import mlflow.pytorch  # noqa: F401 - the slow imports happen before the settings are known
import torch

from modelpilot.inference.__main__ import main


def load_export_machinery() -> None:
    """Export, save and load a one-layer module, so the first real pt2 model loads without import delays."""
    module = torch.nn.Linear(4, 2).eval()
    example = (torch.zeros(2, 4),)
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(module, example), buffer)
    buffer.seek(0)
    torch.export.load(buffer).module()(*example)


def serve_when_told() -> None:
    """Read the environment (a JSON object on one line) from stdin, then serve until SIGTERM."""
    line = sys.stdin.readline()
    if not line.strip():
        return  # the pool closed without using this process
    os.environ.update({str(key): str(value) for key, value in json.loads(line).items()})
    main()


if __name__ == "__main__":
    load_export_machinery()
    serve_when_told()

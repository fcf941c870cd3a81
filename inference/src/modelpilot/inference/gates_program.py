"""The gating weights of a pt2 mixture-of-experts model: a second exported program saved inside the model.

A torch.export program keeps only `forward`, so a pt2 model loses `gates(x)`. The training entrypoint exports
the gates as a program of their own and logs it as an extra file of the model (`extra_files/gates.pt2`, listed
in the pytorch flavor's `extra_files`), so it travels with every copy of the model. This module finds it and
loads it after the same safety check as the model's own archive. A pt2 model without it has no gates: the
server answers `return_gates` with a 422 that says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from modelpilot.inference.artifacts_pt2 import pickle_deserialization_allowed, unvouched_record

log = logging.getLogger("modelpilot.inference")

GATES_FILE = "gates.pt2"


def gates_archive(model_dir: Path, flavor: dict[str, Any]) -> Path | None:
    """The gates program the pytorch flavor lists among its extra files, if it is inside the model directory."""
    root = model_dir.resolve()
    for entry in flavor.get("extra_files") or []:
        relative = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(relative, str) or Path(relative).name != GATES_FILE:
            continue
        archive = (root / relative).resolve()
        if archive.is_relative_to(root) and archive.is_file():
            return archive
    return None


def vouched_gates_archive(model_dir: Path, flavor: dict[str, Any]) -> Path | None:
    """The gates program's archive; None when the model has no gates program, or one this server cannot vouch
    for while pickle deserialization is not allowed (the model then serves without gates; the reason is logged)."""
    archive = gates_archive(model_dir, flavor)
    if archive is None:
        return None
    import torch

    if not pickle_deserialization_allowed():
        record = unvouched_record(archive, torch)
        if record is not None:
            log.warning("gates program not loaded: a record is not vouched for", extra={"fields": {"record": record}})
            return None
    return archive


def answers_gates(gates: Any, samples: list[Any]) -> bool:
    """True when `gates` gives one row of weights per input row, for each sample batch."""
    import torch

    try:
        with torch.inference_mode():
            for sample in samples:
                weights = gates(sample)
                if not isinstance(weights, torch.Tensor) or weights.dim() != 2 or len(weights) != len(sample):
                    return False
    except Exception as error:
        log.warning("gates program not used: %s: %s", type(error).__name__, error)
        return False
    return True

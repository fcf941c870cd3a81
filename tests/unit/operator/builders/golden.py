"""Golden YAML files: built objects are compared with a reviewed file; UPDATE_GOLDEN=1 rewrites them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

GOLDEN_DIR = Path(__file__).parent / "golden"


def assert_matches_golden(name: str, objects: list[dict[str, Any]]) -> None:
    """`objects` rendered as multi-document YAML must equal `golden/<name>.yaml`."""
    rendered = yaml.safe_dump_all(objects, sort_keys=False, width=120)
    path = GOLDEN_DIR / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(rendered)
        return
    assert path.exists(), f"{path} is missing: run the tests once with UPDATE_GOLDEN=1 and review the file"
    assert rendered == path.read_text(), f"{path.name} differs; if the change is intended, rerun with UPDATE_GOLDEN=1"

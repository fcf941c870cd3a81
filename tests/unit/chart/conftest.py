"""Render the Helm chart with the real helm binary and hand the objects to the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "modelpilot"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.34.0"

Manifest = dict[str, Any]
Render = Callable[..., list[Manifest]]


def cache_root() -> Path:
    """Where the hack/ scripts keep built tools (same rule as hack/lib.sh)."""
    if os.environ.get("MODELPILOT_CACHE"):
        return Path(os.environ["MODELPILOT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelpilot"


def helm_binary() -> str:
    """The helm that hack/build-tools builds, else one on PATH; a clear failure when there is none."""
    built = cache_root() / "bin" / "current" / "helm"
    if built.is_file():
        return str(built)
    found = shutil.which("helm")
    if found:
        return found
    pytest.fail(f"helm is needed to render the chart: run hack/build-tools (expected {built})", pytrace=False)


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run helm with the chart's kube version and return the completed process (never raises)."""
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, check=False, timeout=120)


def render_chart(*values_files: Path, namespace: str = "modelpilot", **set_values: str) -> list[Manifest]:
    """`helm template` of the chart as a list of objects; fails the test with helm's message on error."""
    args = ["template", "mp", str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    for values_file in values_files:
        args += ["--values", str(values_file)]
    for key, value in set_values.items():
        args += ["--set", f"{key.replace('__', '.')}={value}"]
    result = run_helm(*args)
    if result.returncode != 0:
        pytest.fail(f"helm template failed: {result.stderr}", pytrace=False)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def render() -> Render:
    """The chart renderer: `render(values_file..., namespace=..., some__key="value")`."""
    return render_chart


@pytest.fixture(scope="session", params=CI_VALUES, ids=[path.stem for path in CI_VALUES])
def ci_manifests(request: pytest.FixtureRequest) -> list[Manifest]:
    """The chart rendered with each ci/*-values.yaml variant."""
    return render_chart(request.param)


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    """Every pod spec the manifests create, with a name saying where it comes from."""
    for manifest in manifests:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        if kind == "Pod":
            yield f"{kind}/{name}", manifest["spec"]
        elif kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield f"{kind}/{name}", manifest["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield f"{kind}/{name}", manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    """The objects of one kind."""
    return [manifest for manifest in manifests if manifest["kind"] == kind]

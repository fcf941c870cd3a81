"""KEDA's CRDs (ScaledObject) on the cluster, from hack/keda-crds."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.support.cluster import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
FIELD_MANAGER = "modelpilot-tests"


def _crd_documents() -> list[dict[str, Any]]:
    script = REPO_ROOT / "hack" / "keda-crds"
    output = subprocess.run([str(script)], check=True, capture_output=True, text=True, timeout=600).stdout
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(output, Loader=loader) if doc]


def _established(extensions: client.ApiextensionsV1Api, name: str) -> bool:
    crd = extensions.read_custom_resource_definition(name)
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def install_keda_crds(api_client: client.ApiClient, timeout: float = 60.0) -> list[str]:
    """Server-side apply KEDA's CRDs (the same version applies as a no-op) and wait until Established."""
    extensions = client.ApiextensionsV1Api(api_client)
    names = []
    for crd in _crd_documents():
        names.append(crd["metadata"]["name"])
        extensions.patch_custom_resource_definition(
            crd["metadata"]["name"],
            crd,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    for name in names:
        wait_until(lambda: _established(extensions, name), timeout=timeout, description=f"CRD {name} Established")  # noqa: B023
    return names

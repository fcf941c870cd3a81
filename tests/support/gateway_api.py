"""The Gateway API CRDs (HTTPRoute) on the cluster, from hack/gateway-api-crds."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLE_ANNOTATION = "gateway.networking.k8s.io/bundle-version"
FIELD_MANAGER = "modelpilot-tests"


def _crd_documents() -> list[dict[str, Any]]:
    script = REPO_ROOT / "hack" / "gateway-api-crds"
    output = subprocess.run([str(script)], check=True, capture_output=True, text=True, timeout=600).stdout
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml parses the 1 MB of schemas much faster
    return [doc for doc in yaml.load_all(output, Loader=loader) if doc]


def _established(crd: Any) -> bool:
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _installed_bundle(extensions: client.ApiextensionsV1Api, name: str) -> str | None:
    try:
        crd = extensions.read_custom_resource_definition(name)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    annotations = (crd.metadata.annotations if crd.metadata else None) or {}
    return str(annotations.get(BUNDLE_ANNOTATION)) if _established(crd) else None


def install_gateway_api_crds(api_client: client.ApiClient, timeout: float = 60.0) -> list[str]:
    """Install the standard-channel CRDs unless the same bundle is there; wait until Established."""
    extensions = client.ApiextensionsV1Api(api_client)
    names = []
    for crd in _crd_documents():
        name = crd["metadata"]["name"]
        names.append(name)
        if _installed_bundle(extensions, name) == crd["metadata"]["annotations"][BUNDLE_ANNOTATION]:
            continue
        extensions.patch_custom_resource_definition(
            name, crd, field_manager=FIELD_MANAGER, force=True, _content_type="application/apply-patch+yaml"
        )
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        pending = {name for name in pending if not _established(extensions.read_custom_resource_definition(name))}
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"CRDs not Established within {timeout}s: {sorted(pending)}")
        time.sleep(0.2 if pending else 0)
    return names

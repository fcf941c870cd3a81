"""Third-party CRDs on the cluster, printed by one of the project's `hack/*-crds` scripts (each takes them from
a Go module of the proxy), applied server-side and waited for until Established."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml
from kubernetes import client

from tests.support.cluster import FIELD_MANAGER, REPO_ROOT, wait_until


def crd_documents(script: str) -> list[dict[str, Any]]:
    """The CRDs `hack/<script>` prints."""
    output = subprocess.run(
        [str(REPO_ROOT / "hack" / script)], check=True, capture_output=True, text=True, timeout=600
    ).stdout
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(output, Loader=loader) if doc]


def established(extensions: client.ApiextensionsV1Api, name: str) -> bool:
    crd = extensions.read_custom_resource_definition(name)
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def install_crds(api_client: client.ApiClient, script: str, timeout: float = 60.0) -> list[str]:
    """Server-side apply the CRDs of `hack/<script>` (the same version applies as a no-op) and wait until
    every one is Established; their names."""
    extensions = client.ApiextensionsV1Api(api_client)
    names = []
    for crd in crd_documents(script):
        name = crd["metadata"]["name"]
        names.append(name)
        extensions.patch_custom_resource_definition(
            name, crd, field_manager=FIELD_MANAGER, force=True, _content_type="application/apply-patch+yaml"
        )
    wait_until(
        lambda: all(established(extensions, name) for name in names),
        timeout=timeout,
        description=f"CRDs of hack/{script} Established",
    )
    return names

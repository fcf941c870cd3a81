"""The Kubeflow Trainer CRDs (TrainJob and its runtimes) on the cluster, from hack/kubeflow-trainer-crds.

Only the CRDs: Trainer's controller does not run here, so a test writes a TrainJob's status itself, as the
controller would, through the status subresource.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import yaml
from kubernetes import client

from tests.support.gateway_api import REPO_ROOT

FIELD_MANAGER = "modelpilot-tests"
TRAINER_GROUP = "trainer.kubeflow.org"
TRAINER_VERSION = "v1alpha1"


def _crd_documents() -> list[dict[str, Any]]:
    script = REPO_ROOT / "hack" / "kubeflow-trainer-crds"
    output = subprocess.run([str(script)], check=True, capture_output=True, text=True, timeout=600).stdout
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(output, Loader=loader) if doc]


def _established(extensions: client.ApiextensionsV1Api, name: str) -> bool:
    crd = extensions.read_custom_resource_definition(name)
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def install_kubeflow_trainer_crds(api_client: client.ApiClient, timeout: float = 60.0) -> list[str]:
    """Install (server-side apply) the Trainer CRDs and wait until they are Established; their names."""
    extensions = client.ApiextensionsV1Api(api_client)
    names = []
    for crd in _crd_documents():
        name = crd["metadata"]["name"]
        names.append(name)
        extensions.patch_custom_resource_definition(
            name, crd, field_manager=FIELD_MANAGER, force=True, _content_type="application/apply-patch+yaml"
        )
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        pending = {name for name in pending if not _established(extensions, name)}
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"CRDs not Established within {timeout}s: {sorted(pending)}")
        time.sleep(0.2 if pending else 0)
    return names


def set_trainjob_condition(
    api_client: client.ApiClient, namespace: str, name: str, type_: str, reason: str, message: str
) -> dict[str, Any]:
    """Write a condition into a TrainJob's status as Trainer's controller does when the run ends."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "conditions": [
            {"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now}
        ],
        "jobsStatus": [{"name": "node", "active": 0, "ready": 0, "succeeded": 2 if type_ == "Complete" else 0,
                        "failed": 0 if type_ == "Complete" else 1, "suspended": 0}],
    }  # fmt: skip
    result = client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        TRAINER_GROUP, TRAINER_VERSION, namespace, "trainjobs", name, {"status": status}
    )
    assert isinstance(result, dict)
    return result

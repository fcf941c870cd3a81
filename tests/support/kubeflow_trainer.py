"""The Kubeflow Trainer CRDs (TrainJob and its runtimes) on the cluster, from hack/kubeflow-trainer-crds.

Only the CRDs: Trainer's controller does not run here, so a test writes a TrainJob's status itself, as the
controller would, through the status subresource.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from tests.support.crds import install_crds

TRAINER_GROUP = "trainer.kubeflow.org"
TRAINER_VERSION = "v1alpha1"


def install_kubeflow_trainer_crds(api_client: client.ApiClient, timeout: float = 60.0) -> list[str]:
    """Install (server-side apply) the Trainer CRDs and wait until they are Established; their names."""
    return install_crds(api_client, "kubeflow-trainer-crds", timeout)


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

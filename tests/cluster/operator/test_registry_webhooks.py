"""A real MLflow server's registry webhook wakes the real operator process: the alias moves, the stable
track follows within seconds, although the resource polls the registry only once an hour."""

from __future__ import annotations

import secrets
import time
import uuid
from pathlib import Path

from tests.cluster.operator.conftest import RegisteredModel, is_ready_with, model_deployment, template_version
from tests.support.cluster import Cluster
from tests.support.namespace_objects import Resources
from tests.support.operator_process import operator_process
from tests.support.processes import free_port

WEBHOOK_PATH = "/webhooks/mlflow"


def test_an_mlflow_webhook_wakes_the_operator_long_before_its_poll(
    cluster: Cluster, namespace: str, resources: Resources, model: RegisteredModel, tmp_path: Path
) -> None:
    first, second, third = model.add_version(), model.add_version(), model.add_version()
    model.set_alias("champion", first)
    port, secret = free_port(), secrets.token_hex(16)
    receiver = {"webhook_port": str(port), "webhook_secret": secret, "webhook_host": "127.0.0.1"}
    with operator_process(cluster.kubeconfig, namespace, tmp_path / "operator.log", **receiver):
        manifest = model_deployment("woken", model)
        manifest["spec"]["registry"]["pollInterval"] = "1h"
        resources.apply(manifest)
        resources.wait_mdep("woken", is_ready_with(first), "Ready with the first version")

        # No webhook yet: a moved alias waits for the hourly poll.
        model.set_alias("champion", second)
        time.sleep(4.0)
        assert template_version(resources.deployment("woken-stable")) == first

        # The MLflow server (SQL store, http and private addresses allowed by the test environment)
        # delivers alias events, signed with the secret, to the operator's receiver.
        webhook = model.client.create_webhook(
            name=f"modelpilot-{uuid.uuid4().hex[:8]}",
            url=f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
            events=["model_version_alias.created"],
            secret=secret,
        )
        try:
            time.sleep(1.5)  # the server caches its webhook list for MLFLOW_WEBHOOK_CACHE_TTL (1 s in tests)
            moved = time.monotonic()
            model.set_alias("champion", third)
            resources.wait_mdep("woken", is_ready_with(third), "Ready with the version the webhook named", timeout=20)
            woken_after = time.monotonic() - moved
        finally:
            model.client.delete_webhook(webhook.webhook_id)
    assert woken_after < 15.0
    assert template_version(resources.deployment("woken-stable")) == third
    resources.wait_event("woken", "StableVersionChanged")

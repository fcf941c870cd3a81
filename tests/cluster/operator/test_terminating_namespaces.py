"""A namespace deleted while no operator serves it still goes once the operator starts: Kopf does not serve a
namespace that is already being deleted, so the operator drops Kopf's finalizer from the ModelDeployments
there itself; those of namespaces it does not serve, and those its own handlers serve, it leaves alone.
Real API server, a real operator process for the restart, the module itself for the rest."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelpilot.operator.handlers import terminating
from modelpilot.operator.handlers.lifecycle import FINALIZER
from modelpilot.operator.handlers.terminating import release_stranded
from modelpilot.operator.kubeapi import KubeApi
from modelpilot.operator.settings import OperatorSettings
from modelpilot.operator.spec import GROUP, PLURAL, VERSION
from tests.cluster.operator.conftest import RegisteredModel, model_deployment
from tests.support.cluster import (
    Cluster,
    create_namespace,
    delete_namespace,
    release_model_deployments,
    wait_until,
)
from tests.support.operator_process import operator_process

OTHER_FINALIZER = "example.com/keep"


@pytest.fixture
def namespaces(cluster: Cluster, modelpilot_crd: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """A fresh prefix, a namespace whose name matches it and one that does not; both released at the end."""
    prefix = f"ending-{secrets.token_hex(3)}"
    names = (create_namespace(cluster.api_client, prefix), create_namespace(cluster.api_client, "test"))
    yield prefix, *names
    for name in names:
        release_model_deployments(cluster.api_client, name)
        delete_namespace(cluster.api_client, name)


def _create(cluster: Cluster, namespace: str, body: dict[str, Any], finalizers: list[str] | None = None) -> None:
    if finalizers is not None:
        body = {**body, "metadata": {**body["metadata"], "finalizers": finalizers}}
    client.CustomObjectsApi(cluster.api_client).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def _finalizers(cluster: Cluster, namespace: str, name: str) -> list[str] | None:
    """The resource's finalizers, None once it is gone."""
    try:
        found = client.CustomObjectsApi(cluster.api_client).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    assert isinstance(found, dict)
    return list(found["metadata"].get("finalizers") or [])


def _delete_and_wait_terminating(cluster: Cluster, namespace: str, *names: str) -> None:
    delete_namespace(cluster.api_client, namespace)
    custom = client.CustomObjectsApi(cluster.api_client)

    def marked(name: str) -> bool:
        found = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        assert isinstance(found, dict)
        return bool(found["metadata"].get("deletionTimestamp"))

    for name in names:
        wait_until(
            partial(marked, name),
            timeout=30,
            description=f"{namespace}/{name} marked for deletion with its namespace",
        )


def _namespace_gone(cluster: Cluster, name: str) -> bool:
    try:
        client.CoreV1Api(cluster.api_client).read_namespace(name)
    except client.ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def test_a_namespace_deleted_while_no_operator_ran_goes_when_the_operator_starts(
    cluster: Cluster, namespaces: tuple[str, str, str], model: RegisteredModel, tmp_path: Path
) -> None:
    prefix, served, other = namespaces
    model.set_alias("champion", model.add_version())
    pattern = f"{prefix}-*"
    _create(cluster, served, model_deployment("left", model))
    with operator_process(cluster.kubeconfig, pattern, tmp_path / "first.log"):
        wait_until(
            lambda: FINALIZER in (_finalizers(cluster, served, "left") or []),
            timeout=60,
            description="the operator's finalizer on the resource it serves",
        )
    # Another installation's resource, in a namespace this operator does not serve, being deleted too.
    _create(cluster, other, model_deployment("theirs", model), finalizers=[FINALIZER])
    _delete_and_wait_terminating(cluster, served, "left")
    _delete_and_wait_terminating(cluster, other, "theirs")
    assert _finalizers(cluster, served, "left") == [FINALIZER]  # nothing else lets it go

    with operator_process(cluster.kubeconfig, pattern, tmp_path / "second.log"):
        wait_until(lambda: _namespace_gone(cluster, served), timeout=60, description=f"namespace {served} gone")
        assert _finalizers(cluster, other, "theirs") == [FINALIZER]
    assert "released" in (tmp_path / "second.log").read_text()


async def test_only_the_finalizer_of_resources_no_handler_serves_in_served_namespaces_being_deleted_is_dropped(
    cluster: Cluster, namespaces: tuple[str, str, str], model: RegisteredModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix, served, _ = namespaces
    both = [OTHER_FINALIZER, FINALIZER]
    for name in ("stranded", "handled"):
        _create(cluster, served, model_deployment(name, model), finalizers=both)
    _delete_and_wait_terminating(cluster, served, "stranded", "handled")
    kube = KubeApi(cluster.api_client)

    whole_cluster = OperatorSettings(namespaces="")  # Kopf watches every namespace: nothing to release
    assert await release_stranded(kube, whole_cluster, FINALIZER) == []
    not_this_one = OperatorSettings(namespaces=f"{prefix}-*,!{served}")
    assert await release_stranded(kube, not_this_one, FINALIZER) == []
    assert _finalizers(cluster, served, "stranded") == both

    settings = OperatorSettings(namespaces=f"{prefix}-*")
    released = await release_stranded(kube, settings, FINALIZER, served={(served, "handled")})
    assert released == [(served, "stranded")]
    assert _finalizers(cluster, served, "stranded") == [OTHER_FINALIZER]  # only its own entry
    assert _finalizers(cluster, served, "handled") == both
    assert await release_stranded(kube, settings, FINALIZER, served={(served, "handled")}) == []

    # The second look, once this process's handlers no longer serve it either.
    monkeypatch.setattr(terminating, "SECOND_LOOK_SECONDS", 0.0)
    await terminating.second_look(kube, settings, FINALIZER, served=set())
    assert _finalizers(cluster, served, "handled") == [OTHER_FINALIZER]

"""A namespace deleted while no operator serves it still goes once the operator starts: Kopf does not serve a
namespace that is already being deleted, so the operator drops Kopf's finalizer from the ModelDeployments there
itself; those of namespaces it does not serve, and those its own handlers serve, it leaves alone. One deleted while
the operator serves it goes too. Real API server, a real operator process, the module itself for the rest."""

from __future__ import annotations

import asyncio
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
from modelpilot.operator.runtime import Runtime
from modelpilot.operator.settings import OperatorSettings
from modelpilot.operator.spec import GROUP, PLURAL, VERSION
from tests.cluster.operator.conftest import RegisteredModel, model_deployment
from tests.support.cluster import (
    Cluster,
    create_namespace,
    delete_namespace,
    get_object,
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


def _resource(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    return get_object(cluster.api_client, f"{GROUP}/{VERSION}", "ModelDeployment", name, namespace)


def _finalizers(cluster: Cluster, namespace: str, name: str) -> list[str] | None:
    """The resource's finalizers, None once it is gone."""
    found = _resource(cluster, namespace, name)
    return None if found is None else list(found["metadata"].get("finalizers") or [])


def _delete_and_wait_terminating(cluster: Cluster, namespace: str, *names: str) -> None:
    delete_namespace(cluster.api_client, namespace)

    def marked(name: str) -> bool:
        found = _resource(cluster, namespace, name)
        return found is None or bool(found["metadata"].get("deletionTimestamp"))  # None: marked, and gone already

    for name in names:
        wait_until(
            partial(marked, name),
            # The namespace controller deletes nothing while an aggregated API is unavailable (KEDA's, while
            # the end-to-end tests beside these reinstall it).
            timeout=120,
            description=f"{namespace}/{name} marked for deletion with its namespace",
        )


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
        wait_until(lambda: _finalizers(cluster, served, "left") is None, timeout=60, description="the resource gone")
        assert _finalizers(cluster, other, "theirs") == [FINALIZER]
    assert "released" in (tmp_path / "second.log").read_text()


async def test_the_finalizer_of_resources_being_deleted_in_served_namespaces_being_deleted_is_dropped(
    cluster: Cluster, namespaces: tuple[str, str, str], model: RegisteredModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix, served, _ = namespaces
    both = [OTHER_FINALIZER, FINALIZER]
    for name in ("stranded", "swept"):
        _create(cluster, served, model_deployment(name, model), finalizers=both)
    _delete_and_wait_terminating(cluster, served, "stranded", "swept")
    kube = KubeApi(cluster.api_client)

    whole_cluster = OperatorSettings(namespaces="")  # Kopf watches every namespace: nothing to release
    assert await release_stranded(kube, whole_cluster, FINALIZER) == []
    not_this_one = OperatorSettings(namespaces=f"{prefix}-*,!{served}")
    assert await release_stranded(kube, not_this_one, FINALIZER) == []
    assert _finalizers(cluster, served, "stranded") == both

    settings = OperatorSettings(namespaces=f"{prefix}-*")
    released = await release_stranded(kube, settings, FINALIZER)
    assert sorted(released) == [(served, "stranded"), (served, "swept")]
    assert _finalizers(cluster, served, "stranded") == [OTHER_FINALIZER]  # only its own entry
    assert await release_stranded(kube, settings, FINALIZER) == []


async def test_the_sweep_ends_the_reconcile_loop_of_a_resource_it_released(
    cluster: Cluster, namespaces: tuple[str, str, str], model: RegisteredModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix, served, _ = namespaces
    _create(cluster, served, model_deployment("looping", model), finalizers=[OTHER_FINALIZER, FINALIZER])
    _delete_and_wait_terminating(cluster, served, "looping")
    monkeypatch.setattr(terminating, "SWEEP_SECONDS", 0.05)
    runtime = Runtime(settings=OperatorSettings(namespaces=f"{prefix}-*"), kube=KubeApi(cluster.api_client))
    runtime.wake(served, "looping")
    sweeping = asyncio.create_task(terminating.keep_releasing(runtime, FINALIZER))
    try:
        for _ in range(100):
            if runtime.is_released(served, "looping"):
                break
            await asyncio.sleep(0.1)
        assert runtime.is_released(served, "looping")
        assert _finalizers(cluster, served, "looping") == [OTHER_FINALIZER]
        assert (served, "looping") not in runtime.wakeups  # its state forgotten
    finally:
        sweeping.cancel()


def test_a_namespace_deleted_while_the_operator_serves_it_goes(
    cluster: Cluster, namespaces: tuple[str, str, str], model: RegisteredModel, tmp_path: Path
) -> None:
    # Kopf mostly drops the namespace as soon as it is marked, before the ModelDeployment in it is; the sweep then
    # releases it (else Kopf does).
    prefix, served, _ = namespaces
    model.set_alias("champion", model.add_version())
    with operator_process(cluster.kubeconfig, f"{prefix}-*", tmp_path / "operator.log"):
        _create(cluster, served, model_deployment("running", model))
        wait_until(
            lambda: FINALIZER in (_finalizers(cluster, served, "running") or []),
            timeout=60,
            description="the operator's finalizer on the resource it serves",
        )
        _delete_and_wait_terminating(cluster, served, "running")
        wait_until(
            lambda: _finalizers(cluster, served, "running") is None,
            timeout=terminating.SWEEP_SECONDS + 30,
            description="the resource gone",
        )

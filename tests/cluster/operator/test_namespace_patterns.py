"""An operator serving the whole cluster can be narrowed to namespaces whose names match globs
(MODELPILOT_NAMESPACES, the chart's `operator.namespacePatterns`): it acts in a matching namespace created
after it started and leaves every other namespace's ModelDeployments untouched. Real operator process."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client

from modelpilot.operator.spec import GROUP, VERSION
from tests.cluster.operator.conftest import RegisteredModel, is_ready_with, model_deployment
from tests.support.cluster import Cluster, create_namespace, delete_namespace, release_model_deployments
from tests.support.namespace_objects import Resources
from tests.support.operator_process import operator_process


@pytest.fixture
def two_namespaces(cluster: Cluster, modelpilot_crd: dict[str, Any]) -> Iterator[tuple[str, tuple[str, str]]]:
    """A namespace whose name matches a fresh prefix and one that does not."""
    prefix = f"pattern-{secrets.token_hex(3)}"
    names = (create_namespace(cluster.api_client, prefix), create_namespace(cluster.api_client, "test"))
    yield prefix, names
    for name in names:
        release_model_deployments(cluster.api_client, name)
        delete_namespace(cluster.api_client, name)


def test_the_operator_acts_only_in_namespaces_matching_its_patterns(
    cluster: Cluster, two_namespaces: tuple[str, tuple[str, str]], model: RegisteredModel, tmp_path: Path
) -> None:
    prefix, (matching, other) = two_namespaces
    model.set_alias("champion", model.add_version())
    served, ignored = Resources(cluster, matching), Resources(cluster, other)
    # A pattern with an exclusion that names nothing here: the rightmost matching glob decides.
    with operator_process(cluster.kubeconfig, f"{prefix}-*,!{prefix}-excluded", tmp_path / "operator.log"):
        ignored.apply(model_deployment("left-alone", model))
        served.apply(model_deployment("served", model))
        served.wait_mdep("served", is_ready_with("1"), "served in the matching namespace", timeout=90)
        time.sleep(3)  # the same operator had as long to act on the other one
        untouched = ignored.get(f"{GROUP}/{VERSION}", "ModelDeployment", "left-alone")
        assert untouched is not None
        assert not untouched.get("status"), untouched.get("status")
        assert not untouched["metadata"].get("finalizers")
        apps = client.AppsV1Api(cluster.api_client)
        assert not apps.list_namespaced_deployment(other).items


@pytest.fixture
def cluster_peering(cluster: Cluster) -> Iterator[str]:
    """A ClusterKopfPeering of its own (the chart creates one per installation)."""
    name = f"patterns-{secrets.token_hex(3)}"
    api = client.CustomObjectsApi(cluster.api_client)
    api.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", {
        "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name},
    })  # fmt: skip
    yield name
    api.delete_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)


def test_serving_globs_the_replicas_peer_through_the_clusters_peering(
    cluster: Cluster,
    two_namespaces: tuple[str, tuple[str, str]],
    cluster_peering: str,
    model: RegisteredModel,
    tmp_path: Path,
) -> None:
    prefix, (matching, _) = two_namespaces
    model.set_alias("champion", model.add_version())
    served = Resources(cluster, matching)
    custom = client.CustomObjectsApi(cluster.api_client)
    with operator_process(cluster.kubeconfig, f"{prefix}-*", tmp_path / "operator.log", peering=cluster_peering):
        served.apply(model_deployment("served", model))
        served.wait_mdep("served", is_ready_with("1"), "served under the cluster's peering", timeout=90)
        peering = cast(
            dict[str, Any], custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", cluster_peering)
        )
        assert peering.get("status"), "the operator announced itself in the ClusterKopfPeering"
        in_namespace = cast(
            dict[str, Any], custom.list_namespaced_custom_object("kopf.dev", "v1", matching, "kopfpeerings")
        )
        assert not in_namespace["items"], "no KopfPeering in the served namespace"

"""Fixtures for tests on the local control plane (hack/cluster): the cluster, an API client, a namespace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.support.cluster import Cluster, create_namespace, delete_namespace, release_model_deployments, start_cluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The control plane, started by `hack/cluster up` if needed and left running for the next session."""
    running = start_cluster()
    yield running
    running.api_client.close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def api_client(cluster: Cluster) -> client.ApiClient:
    """An ApiClient bound to the cluster's admin kubeconfig."""
    return cluster.api_client


@pytest.fixture
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test, deleted (in the background) afterwards. A test's operator stops
    before this teardown, so the ModelDeployments it leaves are released first."""
    name = create_namespace(api_client)
    yield name
    release_model_deployments(api_client, name)
    delete_namespace(api_client, name)
